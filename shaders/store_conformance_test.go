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
