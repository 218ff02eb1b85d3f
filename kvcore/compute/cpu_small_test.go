package compute

import (
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/webkv/webkv/kvcore/internal/kernels"
)

// TestCPUSmallBuffer: a small buffer's words lie right after its header
// (one allocation, see newCPUBuffer), zeroed, with no spare capacity; a
// big one is a plain slice.
func TestCPUSmallBuffer(t *testing.T) {
	c := NewCPU(nil)
	for n := 1; n <= 40; n++ {
		b, err := c.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		cb := b.(*CPUBuffer)
		d := cb.Float32s()
		if len(d) != n || cap(d) != n {
			t.Fatalf("n %d: len %d cap %d", n, len(d), cap(d))
		}
		for i, v := range d {
			if v != 0 {
				t.Fatalf("n %d: word %d is %v", n, i, v)
			}
		}
		gap := uintptr(unsafe.Pointer(&d[0])) - uintptr(unsafe.Pointer(cb))
		if small := n <= 32; small != (gap == unsafe.Sizeof(CPUBuffer{})) {
			t.Errorf("n %d: words at %d bytes from the header", n, int64(gap))
		}
		for i := range d {
			d[i] = float32(i + 1)
		}
		c.Free(b)
		again, _ := c.Alloc(n) // the pooled buffer, zeroed again
		for i, v := range again.(*CPUBuffer).Float32s() {
			if v != 0 {
				t.Fatalf("n %d: reused buffer's word %d is %v", n, i, v)
			}
		}
	}
}

// TestCPUReduceSmall checks Reduce of arrays too small to split, with 1
// to reduceSmallSrcs+2 inputs (on the stack, then in a pooled job),
// against the kernels' loop on seeded random values, bit for bit, and its
// errors: an input of another length, an input other than the first
// aliasing the output, a buffer of another backend.
func TestCPUReduceSmall(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	c := NewCPU(nil)
	alloc := func(n int) Buffer {
		b, err := c.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for trial := range 300 {
		n := 1 + r.IntN(100)
		if trial%50 == 0 {
			n = parallelMin - 1
		}
		srcs := make([]Buffer, 1+r.IntN(reduceSmallSrcs+2))
		ref := make([][]float32, len(srcs))
		for i := range srcs {
			srcs[i] = alloc(n)
			ref[i] = srcs[i].(*CPUBuffer).Float32s()
			for x := range ref[i] {
				ref[i][x] = float32(r.NormFloat64() * 100)
			}
		}
		scale := float32(r.NormFloat64())
		want := make([]float32, n)
		kernels.ReduceRange(want, ref, scale, 0, n)
		dst := alloc(n)
		if r.IntN(4) == 0 {
			dst = srcs[0] // the output may alias the first input
		}
		if err := c.Reduce(dst, srcs, scale); err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		for x, v := range dst.(*CPUBuffer).Float32s() {
			if math.Float32bits(v) != math.Float32bits(want[x]) {
				t.Fatalf("trial %d (n %d, %d inputs): word %d is %v, want %v", trial, n, len(srcs), x, v, want[x])
			}
		}
	}
	a, b := alloc(16), alloc(16)
	if err := c.Reduce(a, []Buffer{b, alloc(15)}, 1); err == nil {
		t.Error("an input of another length: no error")
	}
	if err := c.Reduce(a, []Buffer{b, a}, 1); err == nil {
		t.Error("the output aliasing input 1: no error")
	}
	if err := c.Reduce(a, []Buffer{b, foreignBuffer{}}, 1); err == nil {
		t.Error("a buffer of another backend: no error")
	}
}

// foreignBuffer is a Buffer that no CPU backend made.
type foreignBuffer struct{}

func (foreignBuffer) Len() int { return 16 }
