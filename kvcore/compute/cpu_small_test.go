package compute

import (
	"testing"
	"unsafe"
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
