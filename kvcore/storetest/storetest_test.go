package storetest_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
	"github.com/webkv/webkv/kvcore/storetest"
)

func create(t *testing.T, typ string) *kvcore.Store {
	t.Helper()
	s, err := kvcore.Create(context.Background(), typ, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLocal(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) *kvcore.Store { return create(t, "local") }, nil)
}

// The device type without a backend runs on the CPU, as MXNet's device
// store does on CPU contexts (package shaders runs the suite on its WebGPU
// backend).
func TestDeviceOnCPU(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) *kvcore.Store {
		s := create(t, "device")
		if _, ok := s.Backend().(*compute.CPU); !ok {
			t.Fatalf("device store without a backend runs on %q, want the CPU", s.Backend().Name())
		}
		return s
	}, nil)
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
				ws[i], errs[i] = kvcore.Create(ctx, typ, &kvcore.Options{Transport: srv.Connect(job, n)})
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
	t.Parallel()
	storetest.RunWorkers(t, 1, distWorld(server(t), "dist_sync", 1), nil)
}

// Three workers: the server adds the workers' values one by one in rank
// order, while the suite's reference multiplies one worker's by 1+2+3, so
// optimizer results get a float32 tolerance.
func TestDistSync3(t *testing.T) {
	t.Parallel()
	storetest.RunWorkers(t, 3, distWorld(server(t), "dist_sync", 3), &storetest.Options{RTol: 1e-5, ATol: 1e-6})
}

func TestDistDeviceSync2(t *testing.T) {
	t.Parallel()
	storetest.RunWorkers(t, 2, distWorld(server(t), "dist_device_sync", 2), &storetest.Options{RTol: 1e-5, ATol: 1e-6})
}
