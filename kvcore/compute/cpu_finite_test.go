package compute_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
)

// TestCPUWriteFinite checks WriteFinite against Write and a scan for the
// first NaN or ±Inf, on seeded random values with none, one or several
// planted at random places (in one chunk of the parallel copy or several),
// at sizes below and above the size the CPU backend splits over cores, and
// at an offset into the buffer.
func TestCPUWriteFinite(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	c := compute.NewCPU(nil)
	bad := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}
	for _, n := range []int{0, 1, 31, 1000, 1 << 16, 1<<18 + 7} {
		for trial := range 6 {
			src := make([]float32, n)
			for i := range src {
				src[i] = float32(r.NormFloat64())
			}
			want := -1
			for range trial % 3 { // 0, 1 or 2 planted values
				if n == 0 {
					break
				}
				i := r.IntN(n)
				src[i] = bad[r.IntN(len(bad))]
				if want < 0 || i < want {
					want = i
				}
			}
			buf, err := c.Alloc(n + 5)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.WriteFinite(buf, 5, src)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("n %d trial %d: WriteFinite = %d, want %d", n, trial, got, want)
			}
			if want < 0 {
				out := make([]float32, n)
				if err := c.Read(buf, 5, out); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(out, src) {
					t.Fatalf("n %d trial %d: the written values differ from src", n, trial)
				}
			}
		}
	}
	buf, _ := c.Alloc(4)
	if _, err := c.WriteFinite(buf, 2, make([]float32, 3)); err == nil {
		t.Error("WriteFinite past the buffer's end: no error")
	}
}
