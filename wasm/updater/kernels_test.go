package updater

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// Every kernel equals its plain loop bit for bit, on lengths around the
// unrolled width.
func TestKernels(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	for _, n := range []int{0, 1, 31, 32, 33, 64, 100, 1000} {
		a, b := float32(r.NormFloat64()), float32(r.NormFloat64())
		x, y0 := vec(n+3), vec(n) // x may be longer than y
		cases := []struct {
			name string
			fast func(y []float32)
			ref  func(i int, y []float32)
		}{
			{"Axpy", func(y []float32) { Axpy(a, x, y) }, func(i int, y []float32) { y[i] += a * x[i] }},
			{"Axpby", func(y []float32) { Axpby(a, x, b, y) }, func(i int, y []float32) { y[i] = float32(a*x[i]) + float32(b*y[i]) }},
			{"Add", func(y []float32) { Add(x, y) }, func(i int, y []float32) { y[i] += x[i] }},
			{"Sub", func(y []float32) { Sub(x, y) }, func(i int, y []float32) { y[i] -= x[i] }},
			{"Mul", func(y []float32) { Mul(x, y) }, func(i int, y []float32) { y[i] *= x[i] }},
			{"Scale", func(y []float32) { Scale(a, y) }, func(i int, y []float32) { y[i] *= a }},
			{"Fill", func(y []float32) { Fill(a, y) }, func(i int, y []float32) { y[i] = a }},
			{"Clip", func(y []float32) { Clip(-0.5, 0.25, y) }, func(i int, y []float32) { y[i] = min(max(y[i], -0.5), 0.25) }},
		}
		var sums [8]float64
		for i := range y0 {
			sums[i%8] += float64(x[i]) * float64(y0[i])
		}
		want := sums[0] + sums[1] + sums[2] + sums[3] + sums[4] + sums[5] + sums[6] + sums[7]
		if got := Dot(x, y0); got != want {
			t.Errorf("Dot n=%d = %v, want %v", n, got, want)
		}
		for _, c := range cases {
			got, want := slices.Clone(y0), slices.Clone(y0)
			c.fast(got)
			for i := range want {
				c.ref(i, want)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s n=%d differs from its loop", c.name, n)
			}
		}
	}
}
