package kvcore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
	"github.com/webkv/webkv/kvcore/transport"
	"go.uber.org/goleak"
)

// Closing dist stores leaves no goroutine behind (the remote's sender,
// receiver and timer goroutines end, their transports close, the event
// goroutine and the engine's workers exit).
func TestDistCloseLeaksNothing(t *testing.T) {
	srv := testServer(t, psm.Config{})
	ctx := testCtx(t)
	ignore := goleak.IgnoreCurrent()
	for range 5 {
		s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.ConnectJoin(transport.Join{Job: "leak", Resume: true}), Events: func(kvcore.Event) {}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Init(ctx, kvcore.IntKey(0), arr(t, []float32{1})); err != nil && !errors.Is(err, kvcore.ErrDuplicateInit) {
			t.Fatal(err)
		}
		if err := s.Push(kvcore.IntKey(0), arr(t, []float32{1})); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Close returned: whatever the stores started is gone (VerifyNone
	// retries while goroutines are still on their way out).
	goleak.VerifyNone(t, ignore, goleak.IgnoreAnyFunction("runtime.handleEvent"))
}

// A worker that vanishes without a word (its process killed) is removed
// after the silence timeout, and the others' round closes then instead of
// hanging.
func TestDistSilentWorkerRemoved(t *testing.T) {
	srv := testServer(t, psm.Config{Heartbeat: 20 * time.Millisecond, Timeout: time.Second})
	ctx := testCtx(t)
	const n = 3
	conns := make([]transport.Transport, n)
	stores := make([]*kvcore.Store, n)
	var wg sync.WaitGroup
	for i := range n {
		conns[i] = srv.Connect("j", n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: conns[i]})
			if err != nil {
				t.Error(err)
				return
			}
			stores[i] = s
			if err := s.Init(ctx, kvcore.IntKey(0), arr(t, []float32{0})); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Worker 2 dies: its transport closes under it, no Leave is sent.
	conns[2].Close()
	start := time.Now()
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := arr(t, []float32{0})
			if err := stores[i].PushPullTo(kvcore.IntKey(0), []*kvcore.Array{arr(t, []float32{1})}, out); err != nil {
				t.Error(err)
				return
			}
			if err := stores[i].WaitAll(ctx); err != nil {
				t.Error(err)
				return
			}
			if v := values(t, out); v[0] != 2 {
				t.Errorf("worker %d: round of the two live workers gave %v, want 2", i, v)
			}
		}()
	}
	wg.Wait()
	t.Logf("round closed %v after the worker died (timeout 1s)", time.Since(start))
	for _, s := range stores {
		s.Close()
	}
}

// A dist store's steady push+pull (one worker, in-process server) allocates
// nothing per call; x_pipe_echo is its speed relative to echoing the same
// message over a Pipe (the floor: a pushpull moves the value through the
// pipe twice too, plus the server's copies and the store's own).
func BenchmarkDistPushPull(b *testing.B) {
	for _, n := range []int{1 << 10, 4 << 20} {
		b.Run(fmt.Sprintf("%dKiB", n*4>>10), func(b *testing.B) {
			ctx := context.Background()
			// Baseline: the same bytes echoed over a pipe.
			payload := make([]byte, 4*n+56)
			a, e := transport.Pipe()
			go func() {
				for {
					m, _, err := e.Recv(ctx, 0)
					if err != nil {
						return
					}
					e.Send(ctx, 0, transport.FirstEpoch, m, nil)
				}
			}()
			t0 := time.Now()
			echoes := 0
			for ; echoes < 20 || time.Since(t0) < 300*time.Millisecond; echoes++ {
				a.Send(ctx, 0, transport.FirstEpoch, payload, nil)
				a.Recv(ctx, 0)
			}
			echo := time.Since(t0) / time.Duration(echoes)
			a.Close()

			srv := inproc.New(psm.Config{})
			defer srv.Close()
			s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("bench", 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			v := arr(b, make([]float32, n))
			out := arr(b, make([]float32, n))
			if err := s.Init(ctx, kvcore.IntKey(0), v); err != nil {
				b.Fatal(err)
			}
			vs, os := []*kvcore.Array{v}, []*kvcore.Array{out}
			b.SetBytes(int64(8 * n))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := s.PushPullTo(kvcore.IntKey(0), vs, os...); err != nil {
					b.Fatal(err)
				}
				if err := out.Wait(ctx); err != nil {
					b.Fatal(err)
				}
			}
			per := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(echo)/float64(per), "x_pipe_echo")
		})
	}
}
