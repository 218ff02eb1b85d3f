package psm

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
	"time"
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

// BenchmarkNonFinite is the check every float32 push gets, on 16 MiB of
// finite values; x_copy is its speed over copy() of the same bytes.
func BenchmarkNonFinite(b *testing.B) {
	data := make([]byte, 16<<20)
	for i := 0; i < len(data); i += 4 {
		binary.LittleEndian.PutUint32(data[i:], math.Float32bits(float32(i%1000)-500))
	}
	dst := make([]byte, len(data))
	copy(dst, data) // touch it first
	start := time.Now()
	for range 20 {
		copy(dst, data)
	}
	perCopy := time.Since(start) / 20
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if nonFinite(data) >= 0 {
			b.Fatal("found a non-finite value")
		}
	}
	b.ReportMetric(perCopy.Seconds()/(b.Elapsed().Seconds()/float64(b.N)), "x_copy")
}
