package kvcore

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// Issue 11, problem 10: the compression residuals were not saved with the
// optimizer states, so a run restored from a states file lost what 2bit
// quantization had held back and went another way than the uninterrupted
// run. Now a store started from the saved weights and states file
// continues bit for bit (a device store: one residual per device).
func TestSaveLoadStatesKeepsResiduals(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 11))
	const n = 37
	k := IntKey(3)
	grad := func() []float32 {
		g := make([]float32, n)
		for i := range g {
			g[i] = float32(r.NormFloat64()) * 0.4
		}
		return g
	}
	mk := func(init []float32) *Store {
		s, err := Create(bg, "device", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if err := s.SetGradientCompression(bg, compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}); err != nil {
			t.Fatal(err)
		}
		v, _ := FromSlice(CPU(0), init, n)
		if err := s.Init(bg, k, v); err != nil {
			t.Fatal(err)
		}
		if err := s.SetOptimizer(bg, optimizer.Adam(0.01)); err != nil {
			t.Fatal(err)
		}
		return s
	}
	push := func(s *Store, g0, g1 []float32) {
		a0, _ := FromSlice(CPU(0), g0, n)
		a1, _ := FromSlice(CPU(1), g1, n)
		if err := s.Push(k, a0, a1); err != nil {
			t.Fatal(err)
		}
	}
	value := func(s *Store) []float32 {
		out := full(t, 0, n)
		if err := s.Pull(k, out); err != nil {
			t.Fatal(err)
		}
		v, err := out.ToSlice(bg)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ones := make([]float32, n)
	for i := range ones {
		ones[i] = 1
	}
	a := mk(ones)
	for range 3 {
		push(a, grad(), grad())
	}
	var file bytes.Buffer
	if err := a.SaveOptimizerStates(bg, &file, true); err != nil {
		t.Fatal(err)
	}
	// The restarted run: a's weights and the states file.
	b := mk(value(a))
	if err := b.LoadOptimizerStates(bg, bytes.NewReader(file.Bytes())); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		g0, g1 := grad(), grad()
		push(a, g0, g1)
		push(b, g0, g1)
	}
	va, vb := value(a), value(b)
	for i := range va {
		if math.Float32bits(va[i]) != math.Float32bits(vb[i]) {
			t.Fatalf("element %d: uninterrupted run %v, restored run %v (residuals lost?)", i, va[i], vb[i])
		}
	}
}
