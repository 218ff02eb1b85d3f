package kvcore_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
)

func TestPipe(t *testing.T) {
	ctx := testCtx(t)
	a, b := kvcore.Pipe()
	// Order, copies (the sender may reuse its buffer), both directions.
	buf := []byte("one")
	if err := a.Send(ctx, buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXX")
	if err := a.(kvcore.PartSender).SendParts(ctx, []byte("tw"), []byte("o")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"one", "two"} {
		got, err := b.Recv(ctx)
		if err != nil || string(got) != want {
			t.Fatalf("recv %q, %v; want %q", got, err, want)
		}
	}
	if err := b.Send(ctx, []byte("back")); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Recv(ctx); string(got) != "back" {
		t.Fatalf("reverse direction: %q", got)
	}
	// Recv waits for ctx.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := b.Recv(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("recv on an empty pipe: %v", err)
	}
	// A blocked Recv wakes on the peer's Close; what was sent before the
	// close is still delivered.
	a.Send(ctx, []byte("last"))
	done := make(chan error, 1)
	go func() {
		b.Recv(ctx) // "last"
		_, err := b.Recv(ctx)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	a.Close()
	if err := <-done; !errors.Is(err, kvcore.ErrPipeClosed) {
		t.Fatalf("recv after close: %v", err)
	}
	if err := b.Send(ctx, []byte("x")); !errors.Is(err, kvcore.ErrPipeClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

// Many senders, one receiver: every message arrives exactly once, and the
// messages of each sender in order.
func TestPipeConcurrent(t *testing.T) {
	ctx := testCtx(t)
	a, b := kvcore.Pipe()
	defer a.Close()
	const senders, per = 4, 500
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if err := a.Send(ctx, fmt.Appendf(nil, "%d %d", s, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]int, senders)
	for range senders * per {
		m, err := b.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var s, i int
		fmt.Sscanf(string(m), "%d %d", &s, &i)
		if i != next[s] {
			t.Fatalf("sender %d: message %d after %d", s, i, next[s]-1)
		}
		next[s]++
	}
	wg.Wait()
}

// Closing dist stores leaves no goroutine behind (the remote's sender,
// receiver and heartbeat goroutines end, their transports close).
func TestDistCloseLeaksNothing(t *testing.T) {
	srv := testServer(t, psm.Config{})
	ctx := testCtx(t)
	warm := func() {
		s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("leak", 0)})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Init(ctx, kvcore.IntKey(0), arr(t, []float32{1})); err != nil && !errors.Is(err, kvcore.ErrDuplicateInit) {
			t.Fatal(err)
		}
		s.Push(kvcore.IntKey(0), arr(t, []float32{1}))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	warm() // starts the engine's and the backend's workers
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 5 {
		warm()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after closing 5 stores, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// A worker that vanishes without a word (its process killed) is removed
// after the silence timeout, and the others' round closes then instead of
// hanging.
func TestDistSilentWorkerRemoved(t *testing.T) {
	srv := testServer(t, psm.Config{Heartbeat: 20 * time.Millisecond, Timeout: time.Second})
	ctx := testCtx(t)
	const n = 3
	conns := make([]kvcore.Transport, n)
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
			a, e := kvcore.Pipe()
			go func() {
				for {
					m, err := e.Recv(ctx)
					if err != nil {
						return
					}
					e.Send(ctx, m)
				}
			}()
			t0 := time.Now()
			echoes := 0
			for ; echoes < 20 || time.Since(t0) < 300*time.Millisecond; echoes++ {
				a.Send(ctx, payload)
				a.Recv(ctx)
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
