//go:build cgo && !js

package shaders_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
	"github.com/webkv/webkv/kvcore/storetest"
)

// TestStoreConformance runs kvcore's store conformance suite on "device"
// stores whose backend is this package's, with arrays on gpu(0) and gpu(1)
// of that backend (so arrays on two GPU devices meet in one push): with
// the arrays on the host, on the GPU, and mixed. The suite's arrays are
// small (at most 1000 values), so it runs in about a second even on
// lavapipe. Optimizer results get float32 tolerance
// (WGSL division and sqrt, fused multiply-add, LAMB's norm order); every
// other check is exact.
func TestStoreConformance(t *testing.T) {
	b := newBackend(t, nil)
	newStore := func(t *testing.T) *kvcore.Store {
		s, err := kvcore.Create(t.Context(), "device", &kvcore.Options{Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		if s.Backend() != compute.Backend(b) {
			s.Close()
			t.Fatalf("device store runs on %q, want the WebGPU backend", s.Backend().Name())
		}
		return s
	}
	cpu, gpu0, gpu1 := kvcore.CPU(0), kvcore.GPU(0, b), kvcore.GPU(1, b)
	for _, c := range []struct {
		name    string
		in, out []kvcore.Device
	}{
		{"CPUArrays", []kvcore.Device{cpu}, []kvcore.Device{cpu}},
		{"GPUArrays", []kvcore.Device{gpu0, gpu1}, []kvcore.Device{gpu1, gpu0}},
		{"Mixed", []kvcore.Device{gpu0, cpu}, []kvcore.Device{cpu, gpu1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			storetest.Run(t, newStore, &storetest.Options{In: c.in, Out: c.out, RTol: 1e-5, ATol: 1e-6})
		})
	}
}

// TestDistDeviceStoreConformance runs the suite on two dist_device_sync
// workers (over psm/inproc pipes) that reduce their devices' values and
// compress on this backend, with arrays on the GPU.
func TestDistDeviceStoreConformance(t *testing.T) {
	b := newBackend(t, nil)
	srv := inproc.New(psm.Config{Heartbeat: 20 * time.Millisecond, Timeout: 10 * time.Second})
	t.Cleanup(srv.Close)
	const n = 2
	job := 0
	newWorkers := func(t *testing.T) []*kvcore.Store {
		job++
		id := fmt.Sprintf("job%d", job)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws := make([]*kvcore.Store, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				ws[i], errs[i] = kvcore.Create(ctx, "dist_device_sync", &kvcore.Options{Backend: b, Transport: srv.Connect(id, n)})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				for _, s := range ws {
					if s != nil {
						s.Close()
					}
				}
				t.Fatalf("worker %d: %v", i, err)
			}
			if ws[i].Backend() != compute.Backend(b) {
				t.Fatalf("worker %d runs on %q, want the WebGPU backend", i, ws[i].Backend().Name())
			}
		}
		return ws
	}
	gpu := []kvcore.Device{kvcore.GPU(0, b)}
	storetest.RunWorkers(t, n, newWorkers, &storetest.Options{In: gpu, Out: gpu, RTol: 1e-5, ATol: 1e-6})
}

// plainBackend hides the optional capabilities (ReduceStep, Flush) of the
// backend it wraps: a store on it reduces into a merge buffer and then
// steps, and submits only when something reads.
type plainBackend struct{ compute.Backend }

// flushOnlyBackend hides ReduceStep but keeps Flush.
type flushOnlyBackend struct {
	compute.Backend
	f compute.Flusher
}

func (b flushOnlyBackend) Flush() error { return b.f.Flush() }

// BenchmarkDeviceStoreStep: one training step of a "device" store on this
// backend, 64 keys of 16384 values, each pushed from its own 4 GPU arrays
// under Adam (PushList, then WaitAll and Sync), with the store using the
// fused ReduceStep and Flush against the same store on a wrapper that hides
// both (x-vs-unfused = that time / fused time) and on one that hides only
// ReduceStep (x-vs-flush-only).
func BenchmarkDeviceStoreStep(b *testing.B) {
	g := newBackend(b, nil)
	b.Logf("adapter: %s", g.Name())
	const keys, n, devs = 64, 16384, 4
	d := benchData(n)
	setup := func(be compute.Backend) (func() error, func()) {
		s, err := kvcore.Create(context.Background(), "device", &kvcore.Options{Backend: be})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := s.SetOptimizer(ctx, optimizer.Adam(1e-3)); err != nil {
			b.Fatal(err)
		}
		ks := make([]kvcore.Key, keys)
		vals := make([][]*kvcore.Array, keys)
		var grads []*kvcore.Array
		for i := range ks {
			for range devs {
				a, err := kvcore.FromSlice(kvcore.GPU(0, be), d)
				if err != nil {
					b.Fatal(err)
				}
				vals[i] = append(vals[i], a)
				grads = append(grads, a)
			}
			ks[i] = kvcore.IntKey(i)
			w, err := kvcore.FromSlice(kvcore.GPU(0, be), d)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Init(ctx, ks[i], w); err != nil {
				b.Fatal(err)
			}
			if err := w.Release(ctx); err != nil {
				b.Fatal(err)
			}
		}
		step := func() error {
			if err := s.PushList(ks, vals, 0); err != nil {
				return err
			}
			if err := s.WaitAll(ctx); err != nil {
				return err
			}
			return be.Sync()
		}
		return step, func() {
			if err := s.Close(); err != nil {
				b.Error(err)
			}
			for _, a := range grads {
				if err := a.Release(ctx); err != nil {
					b.Error(err)
				}
			}
		}
	}
	unfused, done := setup(plainBackend{g})
	if err := unfused(); err != nil {
		b.Fatal(err)
	}
	base, err := timeCPU(5, unfused)
	if err != nil {
		b.Fatal(err)
	}
	done()
	flushOnly, done := setup(flushOnlyBackend{g, g})
	base2, err := timeCPU(5, flushOnly)
	if err != nil {
		b.Fatal(err)
	}
	done()
	fused, done := setup(g)
	defer done()
	per := timeB(b, fused)
	b.ReportMetric(float64(per.Microseconds())/keys, "µs/key")
	b.ReportMetric(base.Seconds()/per.Seconds(), "x-vs-unfused")
	b.ReportMetric(base2.Seconds()/per.Seconds(), "x-vs-flush-only")
}

// TestStorePullIntoAppBuffer: a native app pulls into its own wgpu buffer
// (wrapped, no copy), waits for the array, then reads the buffer with its
// own commands on the device's queue, without calling the backend. That
// works only because the store flushes after a pull into the backend's
// arrays (compute.Flusher): the copy recorded by the pull is submitted
// before the app's commands.
func TestStorePullIntoAppBuffer(t *testing.T) {
	b := newBackend(t, nil)
	r := seeded(t)
	ctx := context.Background()
	const n = 1029
	dev := b.Device()
	appBuf, err := dev.CreateBuffer(&wgpu.BufferDescriptor{Size: n * 4,
		Usage: wgpu.BufferUsageStorage | wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst})
	if err != nil {
		t.Fatal(err)
	}
	defer appBuf.Release()
	mapBuf, err := dev.CreateBuffer(&wgpu.BufferDescriptor{Size: n * 4, Usage: wgpu.BufferUsageMapRead | wgpu.BufferUsageCopyDst})
	if err != nil {
		t.Fatal(err)
	}
	defer mapBuf.Release()
	wrapped, err := b.WrapBuffer(appBuf, n)
	if err != nil {
		t.Fatal(err)
	}
	out, err := kvcore.WrapBuffer(kvcore.GPU(0, b), wrapped, n)
	if err != nil {
		t.Fatal(err)
	}
	s, err := kvcore.Create(ctx, "device", &kvcore.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Small integers: the sum is exact whatever the backend.
	ints := func() []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(r.IntN(200) - 100)
		}
		return d
	}
	x, y, z := ints(), ints(), ints()
	init, _ := kvcore.FromSlice(kvcore.GPU(0, b), x)
	g1, _ := kvcore.FromSlice(kvcore.GPU(0, b), y)
	g2, _ := kvcore.FromSlice(kvcore.GPU(0, b), z)
	if err := s.Init(ctx, kvcore.IntKey(0), init); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		if err := s.Push(kvcore.IntKey(0), g1, g2); err != nil {
			t.Fatal(err)
		}
		if err := s.Pull(kvcore.IntKey(0), out); err != nil {
			t.Fatal(err)
		}
		if err := out.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		// The app's own read of its buffer.
		enc, err := dev.CreateCommandEncoder(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := enc.CopyBufferToBuffer(appBuf, 0, mapBuf, 0, n*4); err != nil {
			t.Fatal(err)
		}
		cmd, err := enc.Finish(nil)
		enc.Release()
		if err != nil {
			t.Fatal(err)
		}
		dev.GetQueue().Submit(cmd)
		cmd.Release()
		done := false
		if err := mapBuf.MapAsync(wgpu.MapModeRead, 0, n*4, func(wgpu.BufferMapAsyncStatus) { done = true }); err != nil {
			t.Fatal(err)
		}
		for i := 0; !done && i < 1000; i++ {
			dev.Poll(true, nil)
		}
		if !done {
			t.Fatal("the app's readback buffer never mapped")
		}
		raw := mapBuf.GetMappedRange(0, n*4)
		got := append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(raw))), n)...)
		if err := mapBuf.Unmap(); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if want := y[i] + z[i]; got[i] != want {
				t.Fatalf("round %d: the app read %v at %d from its buffer after the pull, want %v (the pull's copy was not submitted)", round, got[i], i, want)
			}
		}
		// Change the inputs so a stale buffer cannot pass the next round.
		y, z = ints(), ints()
		if err := g1.CopyFrom(ctx, y); err != nil {
			t.Fatal(err)
		}
		if err := g2.CopyFrom(ctx, z); err != nil {
			t.Fatal(err)
		}
	}
}
