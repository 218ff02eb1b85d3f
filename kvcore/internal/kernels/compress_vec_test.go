package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// The vector quantization loops must give the reference word loops' bits:
// the packed words, the residuals (NaN stays NaN) and the dequantized
// values, for every length around the word sizes, every alignment, random
// gradients with special values (±0, subnormals, ±threshold exactly and one
// ulp either side, ±Inf, NaN), and thresholds the kernels take (2bit: > 0
// as validated, and <= 0 and NaN as a caller might pass; 1bit: any).

func TestQuantizeVecBitExact(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(seedFor(t), 13))
	var lens []int
	for n := range 100 {
		lens = append(lens, n)
	}
	lens = append(lens, 1000, 4096+17)
	thresholds := []float32{0.5, 1e-30, 3, 0, -0.25, float32(math.NaN())}
	for _, kind := range []int{2, 1} {
		for _, th := range thresholds {
			sp := []float32{0, float32(math.Copysign(0, -1)), math.Float32frombits(1), -math.Float32frombits(1),
				th, -th, math.Nextafter32(th, 10), math.Nextafter32(th, -10), math.Nextafter32(-th, 10), math.Nextafter32(-th, -10),
				1, -1, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())}
			for _, n := range lens {
				for off := range 3 {
					for _, every := range []int{0, 3} {
						what := fmt.Sprintf("%dbit threshold %v n=%d off=%d specials=1/%d", kind, th, n, off, every)
						g := vecInput(r, n+off, 0.7, false, sp, every)[off:]
						r0 := vecInput(r, n+off, 0.3, false, sp, every)[off:]
						r1 := append([]float32(nil), r0...)
						r2 := append([]float32(nil), r0...)
						var o1, o2 []float32
						if kind == 2 {
							o1, o2 = make([]float32, Packed2Bit(n)+off)[off:], make([]float32, Packed2Bit(n))
							Quantize2Bit(o1, g, r1, th)
							quantize2Rest(o2, g, r2, th, -1*th, 0)
						} else {
							o1, o2 = make([]float32, Packed1Bit(n)+off)[off:], make([]float32, Packed1Bit(n))
							Quantize1Bit(o1, g, r1, th)
							quantize1Rest(o2, g, r2, th, 0)
						}
						for i := range o1 {
							if math.Float32bits(o1[i]) != math.Float32bits(o2[i]) {
								t.Fatalf("%s: word %d = %#08x, reference %#08x", what, i, math.Float32bits(o1[i]), math.Float32bits(o2[i]))
							}
						}
						for i := range r1 {
							if !sameBits(r1[i], r2[i]) {
								t.Fatalf("%s: residual %d = %v, reference %v", what, i, r1[i], r2[i])
							}
						}
					}
				}
			}
		}
	}
}

// TestDequantizeVecBitExact: random words (every bit pattern, NaN words
// included) unpack to the reference's values, also past ntMin, where an
// aligned output is written with non-temporal stores.
func TestDequantizeVecBitExact(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(seedFor(t), 14))
	var lens []int
	for n := range 200 {
		lens = append(lens, n)
	}
	lens = append(lens, 1<<20+77) // past ntMin on amd64
	for _, kind := range []int{2, 1} {
		for _, n := range lens {
			for off := range 3 {
				var words int
				if kind == 2 {
					words = Packed2Bit(n)
				} else {
					words = Packed1Bit(n)
				}
				in := make([]float32, words+off)[off:]
				for i := range in {
					in[i] = math.Float32frombits(r.Uint32())
				}
				d1, d2 := make([]float32, n+off)[off:], make([]float32, n)
				th := float32(r.NormFloat64())
				if kind == 2 {
					Dequantize2Bit(d1, in, th)
					dequantize2Rest(d2, in, &[4]float32{0, 0, -1 * th, th}, 0)
				} else {
					Dequantize1Bit(d1, in, th)
					dequantize1Rest(d2, in, &[2]float32{-1, 1}, 0)
				}
				for i := range d1 {
					if math.Float32bits(d1[i]) != math.Float32bits(d2[i]) {
						t.Fatalf("%dbit n=%d off=%d: value %d = %v, reference %v", kind, n, off, i, d1[i], d2[i])
					}
				}
			}
		}
	}
}
