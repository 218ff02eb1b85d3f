package psm

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// TestNonFiniteMatchesMath checks the bit test against math.IsNaN/IsInf on
// seeded random words with NaN, ±Inf, ±MaxFloat32 and denormals planted at
// random places, for odd and even lengths.
func TestNonFiniteMatchesMath(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	special := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 0}
	for trial := 0; trial < 2000; trial++ {
		n := r.IntN(67)
		vals := make([]float32, n)
		for i := range vals {
			vals[i] = float32(r.NormFloat64() * 1e3)
			if r.IntN(8) == 0 {
				vals[i] = special[r.IntN(len(special))]
			}
		}
		data := make([]byte, 4*n)
		want := -1
		for i, v := range vals {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
			if want < 0 && (math.IsNaN(float64(v)) || math.IsInf(float64(v), 0)) {
				want = i
			}
		}
		if got := nonFinite(data); got != want {
			t.Fatalf("trial %d: nonFinite(%v) = %d, want %d", trial, vals, got, want)
		}
	}
}
