package storetest_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
	"github.com/webkv/webkv/kvcore/storetest"
)

func create(t *testing.T, typ string, opts ...kvcore.Option) *kvcore.Store {
	t.Helper()
	s, err := kvcore.Create(typ, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLocal(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *kvcore.Store { return create(t, "local") })
}

// The device type on the CPU fallback (no GPU is attached in kvcore's
// tests; package shaders runs the suite on its WebGPU backend).
func TestDeviceCPUFallback(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *kvcore.Store {
		s := create(t, "device", kvcore.WithCPUFallback())
		if s.Backend() != kvcore.CPU() {
			t.Fatalf("device store without GPU runs on %q, want the CPU fallback", s.Backend().Name())
		}
		return s
	})
}

var jobs atomic.Int64

// distWorld returns a maker of n dist_sync workers of a fresh job on srv.
func distWorld(srv *inproc.Server, typ string, n int) func(t *testing.T) []*kvcore.Store {
	return func(t *testing.T) []*kvcore.Store {
		t.Helper()
		job := fmt.Sprintf("job%d", jobs.Add(1))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws := make([]*kvcore.Store, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				opts := []kvcore.Option{kvcore.WithTransport(srv.Connect(job, n)), kvcore.WithContext(ctx)}
				if typ == "dist_device_sync" {
					opts = append(opts, kvcore.WithCPUFallback())
				}
				ws[i], errs[i] = kvcore.Create(typ, opts...)
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
		}
		return ws
	}
}

func server(t *testing.T) *inproc.Server {
	srv := inproc.New(psm.Config{Heartbeat: 20 * time.Millisecond, Timeout: 10 * time.Second})
	t.Cleanup(srv.Close)
	return srv
}

func TestDistSync1(t *testing.T) {
	storetest.RunWorkers(t, 1, distWorld(server(t), "dist_sync", 1))
}

// Three workers: the server sums the workers' values in arrival order, so
// optimizer results get a float32 tolerance.
func TestDistSync3(t *testing.T) {
	storetest.RunWorkers(t, 3, distWorld(server(t), "dist_sync", 3), storetest.Tolerance(1e-5, 1e-6))
}

func TestDistDeviceSync2(t *testing.T) {
	storetest.RunWorkers(t, 2, distWorld(server(t), "dist_device_sync", 2), storetest.Tolerance(1e-5, 1e-6))
}
