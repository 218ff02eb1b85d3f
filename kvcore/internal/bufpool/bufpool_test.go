package bufpool

import "testing"

func TestPool(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 256, 257, 1000, 1 << 20} {
		p := Get(n)
		if cap(*p) < n || len(*p) != 0 {
			t.Fatalf("Get(%d): len %d cap %d", n, len(*p), cap(*p))
		}
		*p = append(*p, make([]byte, n)...)
		Put(p)
	}
	Put(nil)
	grown := make([]byte, 0, 300) // not a size class: dropped, not pooled
	Put(&grown)
}
