package compute

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestQuantizeRangeChunks: chunks aligned to 32 values, as runParallel
// makes them, give the same words, residuals and values as one
// whole call.
func TestQuantizeRangeChunks(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 7))
	for _, c := range []Compression{{Compress2Bit, 0.5}, {Compress1Bit, 0.25}} {
		for _, n := range []int{1, 31, 32, 33, 100, 1023, 4096 + 17} {
			g := make([]float32, n)
			r := make([]float32, n)
			for i := range g {
				g[i], r[i] = rng.Float32()*2-1, rng.Float32()-0.5
			}
			r2 := append([]float32(nil), r...)
			want := make([]float32, c.Kind.PackedLen(n))
			got := make([]float32, len(want))
			quantizeRange(c, want, g, r, 0, n)
			for lo := 0; lo < n; {
				hi := min(n, lo+32*(1+rng.IntN(4)))
				quantizeRange(c, got, g, r2, lo, hi)
				lo = hi
			}
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%v n=%d: word %d differs", c, n, i)
				}
			}
			for i := range r {
				if math.Float32bits(r[i]) != math.Float32bits(r2[i]) {
					t.Fatalf("%v n=%d: residual %d differs", c, n, i)
				}
			}
			d1, d2 := make([]float32, n), make([]float32, n)
			dequantizeRange(c, d1, want, 0, n)
			for lo := 0; lo < n; {
				hi := min(n, lo+32*(1+rng.IntN(4)))
				dequantizeRange(c, d2, want, lo, hi)
				lo = hi
			}
			for i := range d1 {
				if d1[i] != d2[i] {
					t.Fatalf("%v n=%d: value %d differs", c, n, i)
				}
			}
		}
	}
}
