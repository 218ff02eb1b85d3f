//go:build cgo && !js

package shaders_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
	"github.com/webkv/webkv/kvcore/storetest"
)

// TestStoreConformance runs kvcore's store conformance suite on "device"
// stores whose backend is this package's, attached to gpu(0) (and gpu(1),
// the same backend, so arrays on two GPU contexts meet in one push): with
// the arrays on the host, on the GPU, and mixed. The suite's arrays are
// small (at most 1000 values), so it runs in about a second even on
// lavapipe. Optimizer results get float32 tolerance
// (WGSL division and sqrt, fused multiply-add, LAMB's norm order); every
// other check is exact.
func TestStoreConformance(t *testing.T) {
	b := newBackend(t, nil)
	kvcore.AttachGPU(0, b)
	kvcore.AttachGPU(1, b)
	t.Cleanup(func() {
		kvcore.AttachGPU(0, nil)
		kvcore.AttachGPU(1, nil)
	})
	newStore := func(t *testing.T) *kvcore.Store {
		s, err := kvcore.Create("device")
		if err != nil {
			t.Fatal(err)
		}
		if s.Backend() != kvcore.Backend(b) {
			s.Close()
			t.Fatalf("device store runs on %q, want the WebGPU backend attached to gpu(0)", s.Backend().Name())
		}
		return s
	}
	cpu, gpu0, gpu1 := kvcore.OnCPU(0), kvcore.OnGPU(0), kvcore.OnGPU(1)
	for _, c := range []struct {
		name    string
		in, out []kvcore.Ctx
	}{
		{"CPUArrays", []kvcore.Ctx{cpu}, []kvcore.Ctx{cpu}},
		{"GPUArrays", []kvcore.Ctx{gpu0, gpu1}, []kvcore.Ctx{gpu1, gpu0}},
		{"Mixed", []kvcore.Ctx{gpu0, cpu}, []kvcore.Ctx{cpu, gpu1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			storetest.Run(t, newStore, storetest.Contexts(c.in, c.out), storetest.Tolerance(1e-5, 1e-6))
		})
	}
}

// TestDistDeviceStoreConformance runs the suite on two dist_device_sync
// workers (over psm/inproc pipes) that reduce their devices' values and
// compress on this backend, with arrays on the GPU.
func TestDistDeviceStoreConformance(t *testing.T) {
	b := newBackend(t, nil)
	kvcore.AttachGPU(0, b)
	t.Cleanup(func() { kvcore.AttachGPU(0, nil) })
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
				ws[i], errs[i] = kvcore.Create("dist_device_sync", kvcore.WithTransport(srv.Connect(id, n)), kvcore.WithContext(ctx))
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
			if ws[i].Backend() != kvcore.Backend(b) {
				t.Fatalf("worker %d runs on %q, want the WebGPU backend", i, ws[i].Backend().Name())
			}
		}
		return ws
	}
	gpu := []kvcore.Ctx{kvcore.OnGPU(0)}
	storetest.RunWorkers(t, n, newWorkers, storetest.Contexts(gpu, gpu), storetest.Tolerance(1e-5, 1e-6))
}

// plainBackend hides the optional capabilities (ReduceStep, Flush) of the
// backend it wraps: a store on it reduces into a merge buffer and then
// steps, and submits only when something reads.
type plainBackend struct{ kvcore.Backend }

// flushOnlyBackend hides ReduceStep but keeps Flush.
type flushOnlyBackend struct {
	kvcore.Backend
	f kvcore.Flusher
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
	setup := func(be kvcore.Backend) (func() error, func()) {
		kvcore.AttachGPU(0, be)
		s, err := kvcore.Create("device", kvcore.WithBackend(be))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := s.SetOptimizer(ctx, kvcore.Adam(1e-3)); err != nil {
			b.Fatal(err)
		}
		ks := make([]kvcore.Key, keys)
		vals := make([][]*kvcore.Array, keys)
		var grads []*kvcore.Array
		for i := range ks {
			for range devs {
				a, err := kvcore.FromSlice(kvcore.OnGPU(0), d)
				if err != nil {
					b.Fatal(err)
				}
				vals[i] = append(vals[i], a)
				grads = append(grads, a)
			}
			ks[i] = kvcore.IntKey(i)
			w, err := kvcore.FromSlice(kvcore.OnGPU(0), d)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Init(ctx, ks[i], w); err != nil {
				b.Fatal(err)
			}
			w.Release()
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
			s.Close()
			for _, a := range grads {
				a.Release()
			}
			kvcore.AttachGPU(0, nil)
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
	if err := fused(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := fused(); err != nil {
			b.Fatal(err)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	b.ReportMetric(float64(per.Microseconds())/keys, "µs/key")
	b.ReportMetric(base.Seconds()/per.Seconds(), "x-vs-unfused")
	b.ReportMetric(base2.Seconds()/per.Seconds(), "x-vs-flush-only")
}
