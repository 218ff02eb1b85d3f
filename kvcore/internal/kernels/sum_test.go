package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// sum2s, sum3s and sum4s (AVX2 with plain or non-temporal stores on amd64,
// the generated unrolled loops on wasm, scalar elsewhere) give the bits of
// the plain left-to-right loop for every length and alignment, including
// chunks past ntMin.
func TestSumsBitExact(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 4))
	const big = 1<<20 + 77
	in := make([][]float32, 4)
	for i := range in {
		in[i] = make([]float32, big+8)
		for j := range in[i] {
			in[i][j] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(6)-3)))
		}
	}
	for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 33, 1000, 4096, big} {
		for _, off := range []int{0, 1, 3, 8} {
			for _, s := range []float32{1, 0.25, -3.5} {
				d := make([]float32, n+off)[off:]
				a, b, c, e := in[0][off:off+n], in[1][off:off+n], in[2][off:off+n], in[3][off:off+n]
				for k, run := range []func(){
					func() { sum2s(d, a, b, s) },
					func() { sum3s(d, a, b, c, s) },
					func() { sum4s(d, a, b, c, e, s) },
				} {
					run()
					for i := range d {
						want := a[i] + b[i]
						if k >= 1 {
							want += c[i]
						}
						if k >= 2 {
							want += e[i]
						}
						want *= s
						if math.Float32bits(d[i]) != math.Float32bits(want) {
							t.Fatalf("%d inputs, n=%d off=%d s=%v: element %d = %v, want %v", k+2, n, off, s, i, d[i], want)
						}
					}
				}
			}
		}
	}
}
