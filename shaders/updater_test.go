//go:build cgo && !js

package shaders_test

import (
	"context"
	"slices"
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/wasm/sandbox"
	"github.com/webkv/webkv/wasm/updater/updatertest"
)

// TestWasmUpdaterDeviceStore: a "device" store on the WebGPU backend runs
// a custom updater module (the FedProx-style example, with states) on
// values that live on the GPU: the store reads the merged push and the
// stored value back, the module updates them on the CPU, the store writes
// the result to the GPU. Every pulled value equals the same run on the CPU
// backend bit for bit (the merged sum of two pushes is one float32 add on
// either backend).
func TestWasmUpdaterDeviceStore(t *testing.T) {
	b := newBackend(t, nil)
	r := seeded(t)
	ctx := context.Background()
	host, err := sandbox.New(&sandbox.Options{CacheDir: updatertest.CacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	mod := &updater.Module{Code: updatertest.Build(t, "fedprox"), Config: []byte("lr=0.1,mu=0.05,momentum=0.9,period=2")}
	const n, rounds = 1027, 4
	init := randData(r, n)
	grads := make([][2][]float32, rounds)
	for i := range grads {
		grads[i] = [2][]float32{randData(r, n), randData(r, n)}
	}
	run := func(be compute.Backend) [][]float32 {
		s, err := kvcore.Create(ctx, "device", &kvcore.Options{Backend: be, Updaters: host})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		dev := kvcore.GPU(0, be)
		if _, cpu := be.(*compute.CPU); cpu {
			dev = kvcore.CPU(0)
		}
		a, err := kvcore.FromSlice(dev, init)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Init(ctx, kvcore.IntKey(0), a); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUpdaterModule(ctx, mod); err != nil {
			t.Fatal(err)
		}
		var pulled [][]float32
		for _, g := range grads {
			g0, err := kvcore.FromSlice(dev, g[0])
			if err != nil {
				t.Fatal(err)
			}
			g1, err := kvcore.FromSlice(dev, g[1])
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Push(kvcore.IntKey(0), g0, g1); err != nil {
				t.Fatal(err)
			}
			out, err := kvcore.NewArray(dev, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Pull(kvcore.IntKey(0), out); err != nil {
				t.Fatal(err)
			}
			v, err := out.ToSlice(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pulled = append(pulled, v)
		}
		return pulled
	}
	gpu, cpu := run(b), run(compute.NewCPU(nil))
	for i := range gpu {
		if !slices.Equal(gpu[i], cpu[i]) {
			t.Fatalf("round %d: the device store on %s differs from the CPU backend", i, b.Name())
		}
	}
}
