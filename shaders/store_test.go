//go:build cgo && !js

package shaders_test

import (
	"context"
	"math"
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// TestDeviceStore runs a "device" store end to end on the WebGPU backend:
// values on gpu(0) and gpu(1) (both on this backend), 2bit compression,
// Adam on the store, several rounds of push and pull, and compares every
// pulled value with the same run on the CPU backend.
func TestDeviceStore(t *testing.T) {
	b := newBackend(t, nil)
	r := seeded(t)
	ctx := context.Background()
	const n, rounds = 1027, 3
	init := randData(r, n)
	grads := make([][2][]float32, rounds)
	for i := range grads {
		grads[i] = [2][]float32{randData(r, n), randData(r, n)}
	}
	run := func(be compute.Backend) [][]float32 {
		s, err := kvcore.Create(ctx, "device", &kvcore.Options{Backend: be})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.Backend().Name() != be.Name() {
			t.Fatalf("store runs on %q, want %q", s.Backend().Name(), be.Name())
		}
		if err := s.SetGradientCompression(ctx, compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetOptimizer(ctx, optimizer.Adam(0.01)); err != nil {
			t.Fatal(err)
		}
		a, err := kvcore.FromSlice(kvcore.GPU(0, be), init)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Init(ctx, kvcore.IntKey(3), a); err != nil {
			t.Fatal(err)
		}
		var pulled [][]float32
		for _, g := range grads {
			g0, err := kvcore.FromSlice(kvcore.GPU(0, be), g[0])
			if err != nil {
				t.Fatal(err)
			}
			g1, err := kvcore.FromSlice(kvcore.GPU(1, be), g[1])
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Push(kvcore.IntKey(3), g0, g1); err != nil {
				t.Fatal(err)
			}
			out, err := kvcore.NewArray(kvcore.GPU(1, be), n)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Pull(kvcore.IntKey(3), out); err != nil {
				t.Fatal(err)
			}
			v, err := out.ToSlice(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pulled = append(pulled, v)
		}
		if err := s.WaitAll(ctx); err != nil {
			t.Fatal(err)
		}
		return pulled
	}
	got, want := run(b), run(compute.NewCPU(nil))
	moved := 0
	for i := range init {
		if want[rounds-1][i] != init[i] {
			moved++
		}
	}
	if moved < n/2 {
		t.Fatalf("only %d of %d weights changed in %d rounds: the updates did not run", moved, n, rounds)
	}
	for round := range want {
		for i := range want[round] {
			g, w := float64(got[round][i]), float64(want[round][i])
			if d := math.Abs(g - w); !(d <= 1e-6+1e-5*math.Abs(w)) {
				t.Fatalf("round %d, element %d: webgpu store pulled %v, cpu store %v", round, i, g, w)
			}
		}
	}
}
