//go:build !js && !wasip1

package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/relay"
	"github.com/webkv/webkv/relay/relaytest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t testing.TB, cfg relay.Config) (*relay.Server, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	s, err := relay.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, u
}

// runWorkers runs w's workers as goroutines and returns their results.
func runWorkers(t *testing.T, ctx context.Context, url, typ, job string, w *relaytest.Workload) []*relaytest.Result {
	t.Helper()
	res := make([]*relaytest.Result, w.Workers)
	errs := make([]error, w.Workers)
	var wg sync.WaitGroup
	for i := 0; i < w.Workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res[i], errs[i] = relaytest.RunWorker(ctx, url, typ, w, relay.DialOptions{Job: job, Logger: quiet()})
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return res
}

var optimizers = []string{
	``,
	`{"name":"sgd","learning_rate":0.1,"momentum":0.9,"wd":0.001}`,
	`{"name":"nag","learning_rate":0.05,"momentum":0.8}`,
	`{"name":"adam","learning_rate":0.01}`,
	`{"name":"adamw","learning_rate":0.01,"wd":0.01}`,
	`{"name":"adagrad","learning_rate":0.1}`,
	`{"name":"rmsprop","learning_rate":0.01,"centered":true}`,
	`{"name":"adadelta"}`,
	`{"name":"signum","learning_rate":0.01}`,
	`{"name":"ftrl","learning_rate":0.1}`,
	`{"name":"lamb","learning_rate":0.01}`,
}

// TestDistSyncMatchesSingleProcess: N goroutine workers through a real
// relay give bit for bit the result of one process pushing the same values,
// for every optimizer (and for assign).
func TestDistSyncMatchesSingleProcess(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, opt := range optimizers {
		w := &relaytest.Workload{Seed: seed + uint64(i), Workers: 2 + i%3, Rounds: 3, Sizes: []int{5, 1000, 3}, PushPull: i%2 == 1}
		if opt != "" {
			w.Optimizer = json.RawMessage(opt)
		}
		name := "assign"
		if opt != "" {
			var o struct{ Name string }
			json.Unmarshal(w.Optimizer, &o)
			name = o.Name
		}
		t.Run(name, func(t *testing.T) {
			// The start barrier comes from the workers' Hello (Want),
			// not from the relay's configuration.
			_, u := start(t, relay.Config{})
			want, err := w.Reference()
			if err != nil {
				t.Fatal(err)
			}
			res := runWorkers(t, ctx, u, "dist_sync", fmt.Sprintf("job-%d", i), w)
			for _, r := range res {
				if err := relaytest.Compare(r.Values, want); err != nil {
					t.Fatalf("rank %d of %d (pushpull %v): %v", r.Rank, w.Workers, w.PushPull, err)
				}
			}
		})
	}
}

// TestDistAsyncEveryPushOnce: with SGD(lr=1) and small integer gradients
// every update is exact in float32, so the final value is -(sum of every
// push) whatever the order; a push applied twice or lost changes it. One
// worker's connection is cut several times mid-training, so retried pushes
// must be answered from the relay's cache, not applied again.
func TestDistAsyncEveryPushOnce(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	_, u := start(t, relay.Config{MinWorkers: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const workers, rounds, n = 3, 40, 64
	grad := func(rank, round int, dst []float32) {
		r := rand.New(rand.NewPCG(seed, uint64(rank*1000+round)))
		for i := range dst {
			dst[i] = float32(r.IntN(17) - 8)
		}
	}
	want := make([]float32, n)
	g := make([]float32, n)
	for rank := 0; rank < workers; rank++ {
		for round := 0; round < rounds; round++ {
			grad(rank, round, g)
			for i := range want {
				want[i] -= g[i]
			}
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	finals := make([][]float32, workers)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			finals[i], errs[i] = asyncWorker(ctx, u, i == 0, rounds, n, grad)
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
		if err := relaytest.Compare([][]float32{finals[i]}, [][]float32{want}); err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
}

// asyncWorker pushes rounds gradients to key 0 of a dist_async store; the
// killer cuts its connection every few pushes.
func asyncWorker(ctx context.Context, u string, killer bool, rounds, n int, grad func(rank, round int, dst []float32)) ([]float32, error) {
	c, err := relay.Dial(ctx, u, relay.DialOptions{Job: "async", Workers: 3, Logger: quiet(), ReconnectMin: time.Millisecond, ReconnectMax: 10 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	s, err := kvcore.Create(ctx, "dist_async", &kvcore.Options{Transport: c})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	rank := s.Rank()
	if rank == 0 {
		if err := s.SetOptimizer(ctx, optimizer.SGD(1, 0)); err != nil {
			return nil, err
		}
	}
	a, err := kvcore.NewArray(kvcore.CPU(0), n)
	if err != nil {
		return nil, err
	}
	if err := s.Init(ctx, kvcore.IntKey(0), a); err != nil {
		return nil, err
	}
	if err := s.Barrier(ctx); err != nil {
		return nil, err
	}
	g := make([]float32, n)
	for round := 0; round < rounds; round++ {
		grad(rank, round, g)
		if err := a.CopyFrom(ctx, g); err != nil {
			return nil, err
		}
		if err := s.Push(kvcore.IntKey(0), a); err != nil {
			return nil, err
		}
		if killer && round%7 == 3 {
			c.Kill()
		}
		if err := a.Wait(ctx); err != nil {
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
	}
	if err := s.Barrier(ctx); err != nil {
		return nil, err
	}
	if err := s.Pull(kvcore.IntKey(0), a); err != nil {
		return nil, err
	}
	return a.ToSlice(ctx)
}

// TestUnevenBatchesLeave: a worker that runs out of batches leaves; the
// others' rounds close without it (no hang) and match a single process in
// which its pushes stop at the same round.
func TestUnevenBatchesLeave(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	w := &relaytest.Workload{Seed: seed, Workers: 3, Rounds: 6, Sizes: []int{10, 300}, ShortRank: 1, ShortRounds: 2,
		Optimizer: json.RawMessage(`{"name":"sgd","learning_rate":0.1,"momentum":0.9}`)}
	_, u := start(t, relay.Config{MinWorkers: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want, err := w.Reference()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runWorkers(t, ctx, u, "dist_sync", "uneven", w) {
		if r.Rank == 1 {
			if r.Values != nil {
				t.Fatal("the short worker reported final values")
			}
			continue
		}
		if err := relaytest.Compare(r.Values, want); err != nil {
			t.Fatalf("rank %d: %v", r.Rank, err)
		}
	}
}

// TestShards: two relay shards, a big key split over both and small keys
// placed by hash, give the single-process result.
func TestShards(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	w := &relaytest.Workload{Seed: seed, Workers: 2, Rounds: 2, Sizes: []int{10_003, 7, 9, 11},
		Optimizer: json.RawMessage(`{"name":"sgd","learning_rate":0.1,"momentum":0.5}`)}
	s0, u0 := start(t, relay.Config{MinWorkers: 2, Shards: []string{"a", "b"}, ShardIndex: 0})
	s1, u1 := start(t, relay.Config{MinWorkers: 2, Shards: []string{"a", "b"}, ShardIndex: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want, err := w.Reference()
	if err != nil {
		t.Fatal(err)
	}
	res := make([]*relaytest.Result, w.Workers)
	errs := make([]error, w.Workers)
	var wg sync.WaitGroup
	for i := range res {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res[i], errs[i] = relaytest.RunWorker(ctx, u0+","+u1, "dist_sync", w, relay.DialOptions{Job: "sharded", BigArrayBound: 1000, Logger: quiet()})
		}(i)
	}
	wg.Wait()
	for i := range res {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if err := relaytest.Compare(res[i].Values, want); err != nil {
			t.Fatalf("rank %d: %v", res[i].Rank, err)
		}
	}
	// The big key was split: each shard received about half of its pushes.
	for i, s := range []*relay.Server{s0, s1} {
		st := s.Status()
		if len(st.Jobs) != 1 || st.Jobs[0].BytesIn < uint64(2*w.Rounds*5_000*4) {
			t.Fatalf("shard %d received %+v, want half of the big key's pushes", i, st.Jobs)
		}
	}
}

// TestRestoreJobs: jobs checkpointed at shutdown come back, values and all,
// in a new server on the same data dir; a second relay on a dir in use is
// refused.
func TestRestoreJobs(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	s1, err := relay.NewServer(relay.Config{DataDir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := relay.NewServer(relay.Config{DataDir: dir, Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second relay on the same data dir: %v, want a lock error", err)
	}
	u, err := s1.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s1.Serve()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := &relaytest.Workload{Seed: seed, Workers: 2, Rounds: 2, Sizes: []int{16}, Optimizer: json.RawMessage(`{"name":"sgd","learning_rate":0.5}`)}
	want, err := w.Reference()
	if err != nil {
		t.Fatal(err)
	}
	runWorkers(t, ctx, u, "dist_sync", "a", w)
	runWorkers(t, ctx, u, "dist_sync", "b", w)
	if err := s1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s2, u2 := start(t, relay.Config{DataDir: dir})
	st := s2.Status()
	if len(st.Jobs) != 2 || st.Jobs[0].Job != "a" || st.Jobs[1].Job != "b" || st.Jobs[0].Keys != 1 || st.Jobs[0].LastCkpt.IsZero() {
		t.Fatalf("restored status: %+v", st)
	}
	// A new worker of job a resumes its run and reads the trained value.
	s, err := relay.Create(ctx, "dist_sync", u2, relay.DialOptions{Job: "a", Resume: true, Logger: quiet()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, _ := kvcore.NewArray(kvcore.CPU(0), 16)
	init, _ := kvcore.FromSlice(kvcore.CPU(0), w.Init(0), 16)
	if err := s.Init(ctx, kvcore.IntKey(0), init); err != nil {
		t.Fatal(err)
	}
	if err := s.Pull(kvcore.IntKey(0), out); err != nil {
		t.Fatal(err)
	}
	got, err := out.ToSlice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := relaytest.Compare([][]float32{got}, want); err != nil {
		t.Fatalf("restored value: %v", err)
	}
}
