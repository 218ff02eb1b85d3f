package kvcore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
	"github.com/webkv/webkv/kvcore/transport"
)

// listStep is one training step of a worker of a lists workload: every
// key's gradient in one PushList, every value back in one PullList.
func (w *workload) listStep(s *kvcore.Store, step, rank int, outs []*kvcore.Array) error {
	keys := make([]kvcore.Key, len(w.sizes))
	vals, os := make([][]*kvcore.Array, len(w.sizes)), make([][]*kvcore.Array, len(w.sizes))
	for i := range w.sizes {
		g, err := kvcore.FromSlice(kvcore.CPU(0), w.grad(step, rank, i))
		if err != nil {
			return err
		}
		keys[i], vals[i], os[i] = w.key(i), []*kvcore.Array{g}, []*kvcore.Array{outs[i]}
	}
	if w.pushpull {
		return s.PushPullList(keys, vals, os, 0)
	}
	if err := s.PushList(keys, vals, 0); err != nil {
		return err
	}
	return s.PullList(keys, os, 0)
}

// List requests (many small keys in one request) give exactly the
// single-process result, with several workers and the optimizers on the
// server (per-key states); the big key (over the list bound) goes on its
// own in the same calls. PushPullList sends a push list, then a pull list.
func TestDistSyncListsMatchLocal(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for _, name := range []string{"none", "sgd", "adam", "sgd-schedule"} {
		t.Run(name, func(t *testing.T) {
			w := &workload{n: 3, sizes: []int{1, 37, 300, 16, 5000}, steps: 4, seed: seed, opt: optimizers()[name], lists: true,
				strKeys: name == "adam", pushpull: name == "sgd"}
			want := w.runLocal(t)
			srv := testServer(t, psm.Config{})
			got := w.runDist(t, "dist_sync", func(int) transport.Transport { return srv.Connect("job", w.n) }, nil)
			for r := range got {
				sameBits(t, fmt.Sprintf("worker %d", r), got[r], want)
			}
			srv.Do("job", func(j *psm.Job) {
				st := j.Stats()
				// Each worker, each step: one push list and one pull list
				// of the 4 small keys.
				if want := uint64(2 * w.n * w.steps); st.Lists != want {
					t.Errorf("%d list requests, want %d", st.Lists, want)
				}
				if want := uint64(w.steps * len(w.sizes)); st.Rounds != want {
					t.Errorf("%d rounds, want %d", st.Rounds, want)
				}
			})
		})
	}
}

// Two shards: each gets one list request per call for its small keys;
// keys split over both shards (a small BigArrayBound) go on their own.
func TestDistSyncListsSharded(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	w := &workload{n: 3, sizes: []int{5, 40, 101, 1, 2, 3, 4, 6, 7, 8, 9, 10}, steps: 4, seed: seed, lists: true,
		opt: &optimizer.Spec{Name: "adam", LearningRate: p(0.01)}}
	want := w.runLocal(t)
	srvs := []*inproc.Server{
		testServer(t, psm.Config{Shard: 0, Shards: 2}),
		testServer(t, psm.Config{Shard: 1, Shards: 2}),
	}
	got := w.runDist(t, "dist_sync", func(int) transport.Transport {
		return shardsOf(t, srvs, transport.Join{Job: "job", Workers: w.n, BigArrayBound: 30})
	}, nil)
	for r := range got {
		sameBits(t, fmt.Sprintf("worker %d", r), got[r], want)
	}
	for i, s := range srvs {
		s.Do("job", func(j *psm.Job) {
			if st := j.Stats(); st.Lists == 0 {
				t.Errorf("shard %d got no list request (stats %+v)", i, st)
			}
		})
	}
}

// A call whose small keys hold more than a list request's bound of values
// (1 MiB) sends them in several list requests.
func TestDistSyncListsSplitByBytes(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	sizes := make([]int, 70) // 70 keys x 16 KiB: two list requests per call
	for i := range sizes {
		sizes[i] = 4096
	}
	w := &workload{n: 2, sizes: sizes, steps: 2, seed: seed, lists: true}
	want := w.runLocal(t)
	srv := testServer(t, psm.Config{})
	got := w.runDist(t, "dist_sync", func(int) transport.Transport { return srv.Connect("job", w.n) }, nil)
	for r := range got {
		sameBits(t, fmt.Sprintf("worker %d", r), got[r], want)
	}
	srv.Do("job", func(j *psm.Job) {
		if st, want := j.Stats(), uint64(2*2*w.n*w.steps); st.Lists != want {
			t.Errorf("%d list requests, want %d", st.Lists, want)
		}
	})
}

// dist_async list requests apply every key's push exactly once (SGD with
// lr 1, integer gradients: each key ends at minus the sum of all pushes),
// also across broken connections.
func TestDistAsyncListsEveryPushOnce(t *testing.T) {
	const n, steps, nkeys, size = 2, 20, 5, 3
	lr := 1.0
	srv := testServer(t, psm.Config{})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := srv.Connect("async", n)
			s, err := kvcore.Create(ctx, "dist_async", &kvcore.Options{Transport: conn})
			if err != nil {
				errs[i] = err
				return
			}
			defer s.Close()
			keys := make([]kvcore.Key, nkeys)
			vals := make([][]*kvcore.Array, nkeys)
			for k := range keys {
				keys[k] = kvcore.IntKey(k)
				if err := s.Init(ctx, keys[k], arr(t, make([]float32, size))); err != nil {
					errs[i] = err
					return
				}
			}
			if err := s.SetOptimizer(ctx, &optimizer.Spec{Name: "sgd", LearningRate: &lr}); err != nil {
				errs[i] = err
				return
			}
			if err := s.Barrier(ctx); err != nil {
				errs[i] = err
				return
			}
			for step := range steps {
				for k := range keys {
					g := make([]float32, size)
					for j := range g {
						g[j] = float32((s.Rank() + 1) * (k + 1))
					}
					vals[k] = []*kvcore.Array{arr(t, g)}
				}
				if step%7 == 3 {
					conn.BreakAfter(1)
				}
				if err := s.PushList(keys, vals, 0); err != nil {
					errs[i] = err
					return
				}
			}
			if errs[i] = s.WaitAll(ctx); errs[i] == nil {
				errs[i] = s.Barrier(ctx) // every push of every worker answered
			}
			if errs[i] != nil {
				return
			}
			outs := make([][]*kvcore.Array, nkeys)
			for k := range outs {
				outs[k] = []*kvcore.Array{arr(t, make([]float32, size))}
			}
			if errs[i] = s.PullList(keys, outs, 0); errs[i] == nil {
				errs[i] = s.WaitAll(ctx)
			}
			for k := range outs {
				if errs[i] != nil {
					return
				}
				want := -float32(steps * n * (n + 1) / 2 * (k + 1))
				for e, v := range values(t, outs[k][0]) {
					if v != want {
						errs[i] = fmt.Errorf("key %d [%d] = %v, want %v (every push once)", k, e, v, want)
					}
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	srv.Do("async", func(j *psm.Job) {
		st := j.Stats()
		if st.Updates != n*steps*nkeys {
			t.Errorf("%d updates applied, want %d", st.Updates, n*steps*nkeys)
		}
		if st.Lists == 0 {
			t.Error("no list requests")
		}
	})
}

// Calls of thousands of keys: their list groups are big enough for a
// receiver to hand their completion (a pull's values into the outputs,
// the operation's release) to a helper goroutine, so several groups of
// one call, of both shards, complete at once on two goroutines. The
// results are the single-process ones, and the store's Close leaves no
// goroutine (TestMain).
func TestDistSyncListsManyKeysShared(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	sizes := make([]int, 9000) // three operations per call, two shards each
	for i := range sizes {
		sizes[i] = 1 + i%5
	}
	for _, pushpull := range []bool{false, true} {
		t.Run(fmt.Sprintf("pushpull=%v", pushpull), func(t *testing.T) {
			w := &workload{n: 2, sizes: sizes, steps: 3, seed: seed, lists: true, pushpull: pushpull}
			want := w.runLocal(t)
			srvs := []*inproc.Server{
				testServer(t, psm.Config{Shard: 0, Shards: 2}),
				testServer(t, psm.Config{Shard: 1, Shards: 2}),
			}
			got := w.runDist(t, "dist_sync", func(int) transport.Transport {
				return shardsOf(t, srvs, transport.Join{Job: "job", Workers: w.n})
			}, nil)
			for r := range got {
				sameBits(t, fmt.Sprintf("worker %d", r), got[r], want)
			}
		})
	}
}

// failReduce is a CPU backend (not a *compute.CPU: a device store's) whose
// Reduce fails while fail is set.
type failReduce struct {
	*compute.CPU
	fail atomic.Bool
}

func (f *failReduce) Reduce(dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
	if f.fail.Load() {
		return errors.New("reduce refused by the test")
	}
	return f.CPU.Reduce(dst, srcs, scale)
}

// A key of a list call whose push cannot be prepared (the local reduce of
// its two values fails) fails before the network, with an error naming
// it; the call's other keys are pushed as usual, and the store goes on.
func TestDistListKeyFailsBeforeNetwork(t *testing.T) {
	ctx := context.Background()
	srv := testServer(t, psm.Config{})
	be := &failReduce{CPU: compute.NewCPU(nil)}
	s, err := kvcore.Create(ctx, "dist_device_sync", &kvcore.Options{Backend: be, Transport: srv.Connect("job", 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dev := kvcore.GPU(0, be)
	arr := func(v float32) *kvcore.Array {
		t.Helper()
		a, err := kvcore.FromSlice(dev, []float32{v, v, v, v})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	keys := []kvcore.Key{kvcore.IntKey(0), kvcore.IntKey(1), kvcore.IntKey(2)}
	if err := s.InitList(ctx, keys, []*kvcore.Array{arr(0), arr(0), arr(0)}); err != nil {
		t.Fatal(err)
	}
	be.fail.Store(true)
	if err := s.PushList(keys, [][]*kvcore.Array{{arr(1)}, {arr(2), arr(3)}, {arr(4)}}, 0); err != nil {
		t.Fatalf("PushList: %v (the failure comes from the operation)", err)
	}
	err = s.WaitAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "push key 1") || !strings.Contains(err.Error(), "refused by the test") {
		t.Fatalf("WaitAll: %v, want the failure of key 1", err)
	}
	be.fail.Store(false)
	outs := [][]*kvcore.Array{{arr(-1)}, {arr(-1)}}
	if err := s.PullList([]kvcore.Key{keys[0], keys[2]}, outs, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitAll(ctx); err != nil {
		t.Fatal(err)
	}
	for i, want := range []float32{1, 4} {
		got, err := outs[i][0].ToSlice(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != want || got[3] != want {
			t.Errorf("key %d pulled %v, want %v (its push went through)", 2*i, got, want)
		}
	}
}
