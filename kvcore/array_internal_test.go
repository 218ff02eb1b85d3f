package kvcore

import (
	"testing"
	"unsafe"

	"github.com/webkv/webkv/kvcore/compute"
)

// TestArrayLayout keeps what a list call reads of every array (buffer,
// host words, size, variable, shape) in its first cache line, and the
// Array in the 128-byte size class, whose objects start on a cache line
// (see Array): a field added before them, or the Array grown past 128
// bytes or shrunk into the 112-byte class, shows here.
func TestArrayLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the layout is planned for 64-bit pointers")
	}
	var a Array
	if size := unsafe.Sizeof(a); size <= 112 || size > 128 {
		t.Errorf("Array is %d bytes, want 113 to 128 (the 128-byte size class)", size)
	}
	for _, f := range []struct {
		name     string
		off, end uintptr
	}{
		{"buf", unsafe.Offsetof(a.buf), unsafe.Offsetof(a.buf) + unsafe.Sizeof(a.buf)},
		{"host", unsafe.Offsetof(a.host), unsafe.Offsetof(a.host) + unsafe.Sizeof(a.host)},
		{"n", unsafe.Offsetof(a.n), unsafe.Offsetof(a.n) + unsafe.Sizeof(a.n)},
		{"v", unsafe.Offsetof(a.v), unsafe.Offsetof(a.v) + unsafe.Sizeof(a.v)},
		{"shape", unsafe.Offsetof(a.shape), unsafe.Offsetof(a.shape) + unsafe.Sizeof(a.shape)},
	} {
		if f.end > 64 {
			t.Errorf("Array.%s ends at byte %d, outside the first cache line", f.name, f.end)
		}
	}
}

// fakeGPU is a backend that is not a *compute.CPU but hands out CPU
// buffers (as a test double of a GPU backend might).
type fakeGPU struct{ *compute.CPU }

// An array's host words are its CPU buffer's, for arrays of a CPU backend
// only, and go with the buffer; an answer still goes straight into a CPU
// buffer of another backend (hostOut), as before host existed.
func TestArrayHostWords(t *testing.T) {
	ctx := t.Context()
	a, err := FromSlice(CPU(1), []float32{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if a.host == nil {
		t.Fatal("an array of the CPU backend has no host words")
	}
	w := a.hostOut(a.n)
	if len(w) != 3 || w[2] != 3 || &w[0] != &a.buf.(*compute.CPUBuffer).Float32s()[0] {
		t.Fatalf("host words %v are not the buffer's", w)
	}
	if got := a.hostOut(3); &got[0] != &w[0] {
		t.Fatal("hostOut is not the host words")
	}

	// A wrapped CPU buffer longer than the shape: its first words.
	b := compute.NewCPU(nil)
	buf, err := b.Alloc(8)
	if err != nil {
		t.Fatal(err)
	}
	wa, err := WrapBuffer(GPU(0, b), buf, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if wa.host == nil {
		t.Fatal("a wrapped CPU buffer has no host words")
	}
	if w := wa.hostOut(wa.n); len(w) != 4 || &w[0] != &buf.(*compute.CPUBuffer).Float32s()[0] {
		t.Fatalf("wrapped buffer's host words: %d of them, or not the buffer's", len(w))
	}

	// More words than the array has are never made from its host
	// pointer: the wrapped buffer's slice answers (it has 8), and past
	// the buffer its bounds check panics.
	if w := wa.hostOut(8); len(w) != 8 || &w[0] != &buf.(*compute.CPUBuffer).Float32s()[0] {
		t.Fatalf("hostOut(8) of a 4-word array on an 8-word buffer: %d words", len(w))
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("hostOut(9) of an 8-word buffer did not panic")
			}
		}()
		wa.hostOut(9)
	}()

	// Another backend's CPU buffer: no host words (the store's backend
	// must match it), but a pull may still answer straight into it.
	g := fakeGPU{compute.NewCPU(nil)}
	ga, err := NewArray(GPU(1, g), 5)
	if err != nil {
		t.Fatal(err)
	}
	if ga.host != nil {
		t.Fatal("an array of a non-CPU backend has host words")
	}
	if got := ga.hostOut(5); len(got) != 5 {
		t.Fatalf("hostOut of a CPU buffer of another backend: %d values, want 5", len(got))
	}

	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if a.host != nil || a.hostOut(a.n) != nil {
		t.Fatal("a released array keeps its host words")
	}
}
