package kernels

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkKernel times each kernel over 1M elements on one goroutine: the
// exported kernel (the vector path where there is one: AVX2 on amd64,
// unrolled on wasm) and the reference loop alone, alternately on the same
// fresh inputs in each iteration, so both see the same machine load. It
// reports the fastest iteration of each in ns per element (vec_ns/elem,
// ref_ns/elem) and their ratio (x_ref, ref time over vec time): the
// arithmetic's cost without the CPU backend's split over cores. Under
// GOOS=wasip1 or js it times Go's wasm code. The optimizers run with weight
// decay on and no clipping.
func BenchmarkKernel(b *testing.B) {
	const n = 1 << 20
	r := rand.New(rand.NewPCG(1, 2))
	w0, g := vecInput(r, n, 1, false, nil, 0), vecInput(r, n, 1, false, nil, 0)
	st0 := [][]float32{vecInput(r, n, 0.1, true, nil, 0), vecInput(r, n, 0.1, true, nil, 0), vecInput(r, n, 0.1, true, nil, 0)}
	w := make([]float32, n)
	st := [][]float32{make([]float32, n), make([]float32, n), make([]float32, n)}
	fresh := func() {
		copy(w, w0)
		for i := range st {
			copy(st[i], st0[i])
		}
	}
	out2, out1 := make([]float32, Packed2Bit(n)), make([]float32, Packed1Bit(n))
	Quantize2Bit(out2, g, make([]float32, n), 0.5)
	Quantize1Bit(out1, g, make([]float32, n), 0.5)
	type pair struct {
		name     string
		vec, ref func()
	}
	var pairs []pair
	for _, k := range vecKernels() {
		p := k.params[6] // weight decay on, no clipping, rescale 1
		if p.WD == 0 || p.ClipGradient >= 0 || p.RescaleGrad != 1 {
			b.Fatalf("%s: params[6] is %+v", k.name, p)
		}
		pairs = append(pairs, pair{k.name,
			func() { k.run(&p, w, g, st) },
			func() { k.ref(&p, w, g, st) }})
	}
	pairs = append(pairs,
		pair{"quantize2bit", func() { Quantize2Bit(out2, g, st[0], 0.5) }, func() { quantize2Rest(out2, g, st[0], 0.5, -0.5, 0) }},
		pair{"quantize1bit", func() { Quantize1Bit(out1, g, st[0], 0.5) }, func() { quantize1Rest(out1, g, st[0], 0.5, 0) }},
		pair{"dequantize2bit", func() { Dequantize2Bit(w, out2, 0.5) }, func() { dequantize2Rest(w, out2, &[4]float32{0, 0, -0.5, 0.5}, 0) }},
		pair{"dequantize1bit", func() { Dequantize1Bit(w, out1, 0.5) }, func() { dequantize1Rest(w, out1, &[2]float32{-1, 1}, 0) }},
	)
	for _, pr := range pairs {
		b.Run(pr.name, func(b *testing.B) {
			var vec, ref time.Duration
			timed := func(f func(), best *time.Duration) {
				b.StopTimer()
				fresh()
				b.StartTimer()
				t0 := time.Now()
				f()
				if d := time.Since(t0); *best == 0 || d < *best {
					*best = d
				}
			}
			for b.Loop() {
				timed(pr.vec, &vec)
				timed(pr.ref, &ref)
			}
			b.ReportMetric(float64(vec.Nanoseconds())/n, "vec_ns/elem")
			b.ReportMetric(float64(ref.Nanoseconds())/n, "ref_ns/elem")
			b.ReportMetric(float64(ref)/float64(vec), "x_ref")
		})
	}
}
