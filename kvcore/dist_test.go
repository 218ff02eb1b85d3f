package kvcore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
	"github.com/webkv/webkv/kvcore/transport"
)

// Dist-mode tests: real dist stores over in-memory transports to psm jobs
// served by package inproc, one goroutine per worker.

func testServer(t *testing.T, cfg psm.Config) *inproc.Server {
	t.Helper()
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 20 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		// Long: under wazero or node on a loaded machine a busy worker can
		// stay quiet for seconds. Tests of removal set their own.
		cfg.Timeout = time.Minute
	}
	srv := inproc.New(cfg)
	t.Cleanup(srv.Close)
	return srv
}

// soleWorker returns a dist_sync store, the only worker of job on a new
// in-process server; it is closed when the test ends.
func soleWorker(t *testing.T, job string) *kvcore.Store {
	t.Helper()
	srv := testServer(t, psm.Config{})
	s, err := kvcore.Create(context.Background(), "dist_sync", &kvcore.Options{Transport: srv.Connect(job, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// workload is a deterministic training run: keys of the given sizes, each
// worker (by rank) pushing seeded random gradients every step.
type workload struct {
	n        int // workers
	sizes    []int
	steps    int
	seed     uint64
	opt      *optimizer.Spec
	comp     *compute.Compression
	pushpull bool
	strKeys  bool
	lists    bool // workers push and pull every key of a step in one PushList and one PullList
}

func (w *workload) key(i int) kvcore.Key {
	if w.strKeys {
		return kvcore.StrKey(fmt.Sprintf("w%d", i))
	}
	return kvcore.IntKey(10 + i)
}

func (w *workload) initVal(i int) []float32 {
	r := rand.New(rand.NewPCG(w.seed, uint64(1000000+i)))
	v := make([]float32, w.sizes[i])
	for j := range v {
		v[j] = r.Float32()*2 - 1
	}
	return v
}

func (w *workload) grad(step, rank, i int) []float32 {
	r := rand.New(rand.NewPCG(w.seed, uint64(step*10000+rank*100+i)))
	v := make([]float32, w.sizes[i])
	for j := range v {
		v[j] = r.Float32()*2 - 1
	}
	return v
}

func arr(t testing.TB, v []float32) *kvcore.Array {
	t.Helper()
	a, err := kvcore.FromSlice(kvcore.CPU(0), v)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func values(t testing.TB, a *kvcore.Array) []float32 {
	t.Helper()
	v, err := a.ToSlice(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// runLocal is the single-process reference: one store, the n workers'
// gradients pushed as n devices of one call (summed in rank order).
func (w *workload) runLocal(t *testing.T) [][]float32 {
	typ := "local"
	if w.comp != nil {
		typ = "device" // on the CPU: no GPU in these tests
	}
	ctx := testCtx(t)
	s, err := kvcore.Create(ctx, typ, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if w.comp != nil {
		if err := s.SetGradientCompression(ctx, *w.comp); err != nil {
			t.Fatal(err)
		}
	}
	if w.opt != nil {
		if err := s.SetOptimizer(ctx, w.opt); err != nil {
			t.Fatal(err)
		}
	}
	outs := make([]*kvcore.Array, len(w.sizes))
	for i := range w.sizes {
		if err := s.Init(ctx, w.key(i), arr(t, w.initVal(i))); err != nil {
			t.Fatal(err)
		}
		outs[i] = arr(t, make([]float32, w.sizes[i]))
	}
	for step := range w.steps {
		for i := range w.sizes {
			gs := make([]*kvcore.Array, w.n)
			for r := range gs {
				gs[r] = arr(t, w.grad(step, r, i))
			}
			if w.pushpull {
				err = s.PushPullTo(w.key(i), gs, outs[i])
			} else if err = s.Push(w.key(i), gs...); err == nil {
				err = s.Pull(w.key(i), outs[i])
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		// Keys run concurrently in the engine: without this wait a key of
		// the next step could update before a key of this one, and a
		// learning-rate schedule (which follows the largest update count
		// of any key) would see a count that depends on timing.
		if err := s.WaitAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	res := make([][]float32, len(outs))
	for i, o := range outs {
		res[i] = values(t, o)
	}
	return res
}

// runWorker is one dist worker's training loop; it returns its final
// values.
func (w *workload) runWorker(ctx context.Context, t *testing.T, typ string, tr transport.Transport, hook func(i int, s *kvcore.Store, step int), wi int) ([][]float32, error) {
	s, err := kvcore.Create(ctx, typ, &kvcore.Options{Transport: tr}) // device types on the CPU: no GPU here
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if w.comp != nil {
		if err := s.SetGradientCompression(ctx, *w.comp); err != nil {
			return nil, err
		}
	}
	if w.opt != nil {
		if err := s.SetOptimizer(ctx, w.opt); err != nil {
			return nil, err
		}
	}
	rank := s.Rank()
	outs := make([]*kvcore.Array, len(w.sizes))
	for i := range w.sizes {
		init := w.initVal(i)
		if rank != 0 {
			for j := range init {
				init[j] = 1000 // rank 0's value must win
			}
		}
		if err := s.Init(ctx, w.key(i), arr(t, init)); err != nil {
			return nil, err
		}
		outs[i] = arr(t, make([]float32, w.sizes[i]))
	}
	for step := range w.steps {
		if hook != nil {
			hook(wi, s, step)
		}
		if w.lists {
			if err := w.listStep(s, step, rank, outs); err != nil {
				return nil, err
			}
			continue
		}
		for i := range w.sizes {
			g := arr(t, w.grad(step, rank, i))
			if w.pushpull {
				err = s.PushPullTo(w.key(i), []*kvcore.Array{g}, outs[i])
			} else if err = s.Push(w.key(i), g); err == nil {
				err = s.Pull(w.key(i), outs[i])
			}
			if err != nil {
				return nil, err
			}
		}
	}
	if err := s.WaitAll(ctx); err != nil {
		return nil, err
	}
	res := make([][]float32, len(outs))
	for i, o := range outs {
		if res[i], err = o.ToSlice(ctx); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// runDist runs the workload with n dist workers; conn makes worker i's
// transport.
func (w *workload) runDist(t *testing.T, typ string, conn func(i int) transport.Transport, hook func(i int, s *kvcore.Store, step int)) [][][]float32 {
	ctx := testCtx(t)
	res := make([][][]float32, w.n)
	errs := make([]error, w.n)
	var wg sync.WaitGroup
	for i := range w.n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = w.runWorker(ctx, t, typ, conn(i), hook, i)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	return res
}

func sameBits(t *testing.T, what string, got, want [][]float32) {
	t.Helper()
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("%s key %d: %d values, want %d", what, i, len(got[i]), len(want[i]))
		}
		for j := range want[i] {
			if got[i][j] != want[i][j] && !(got[i][j] != got[i][j] && want[i][j] != want[i][j]) {
				t.Fatalf("%s key %d [%d] = %v, single process %v", what, i, j, got[i][j], want[i][j])
			}
		}
	}
}

func optimizers() map[string]*optimizer.Spec {
	p := func(v float64) *float64 { return &v }
	tr := true
	return map[string]*optimizer.Spec{
		"none":             nil,
		"sgd":              {Name: "sgd", LearningRate: p(0.1), Momentum: p(0.9), WD: p(0.01), RescaleGrad: p(0.25)},
		"nag":              {Name: "nag", LearningRate: p(0.1), Momentum: p(0.9)},
		"adam":             {Name: "adam", LearningRate: p(0.01), ClipGradient: p(0.5)},
		"adamw":            {Name: "adamw", LearningRate: p(0.01), WD: p(0.1)},
		"adagrad":          {Name: "adagrad", LearningRate: p(0.1)},
		"rmsprop-centered": {Name: "rmsprop", LearningRate: p(0.01), Centered: &tr},
		"adadelta":         {Name: "adadelta"},
		"signum":           {Name: "signum", LearningRate: p(0.01)},
		"ftrl":             {Name: "ftrl", LearningRate: p(0.1)},
		"lamb":             {Name: "lamb", LearningRate: p(0.01)},
		"sgd-schedule": {Name: "sgd", LearningRate: p(0.1),
			LRScheduler: &optimizer.LRScheduler{Type: "factor", Step: 2, Factor: p(0.5)}},
	}
}

// N workers produce exactly the single-process result in dist_sync, for
// every optimizer (and the assign of no optimizer).
func TestDistSyncMatchesLocal(t *testing.T) {
	for name, opt := range optimizers() {
		t.Run(name, func(t *testing.T) {
			w := &workload{n: 4, sizes: []int{1, 37, 300}, steps: 5, seed: 7, opt: opt, pushpull: name == "adam"}
			t.Logf("seed %d", w.seed)
			want := w.runLocal(t)
			srv := testServer(t, psm.Config{})
			typ := "dist_sync"
			if name == "sgd" {
				typ = "dist_device_sync" // the same path, local reduce on the store's backend
			}
			got := w.runDist(t, typ, func(int) transport.Transport { return srv.Connect("job", w.n) }, nil)
			for r := range got {
				sameBits(t, fmt.Sprintf("worker %d", r), got[r], want)
			}
		})
	}
}

// Keys split over two shards (a small BigArrayBound splits the big key)
// give the same result as one process, with string keys too.
func TestDistSyncSharded(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	w := &workload{n: 3, sizes: []int{5, 40, 101}, steps: 4, seed: 11, strKeys: true,
		opt: &optimizer.Spec{Name: "adam", LearningRate: p(0.01)}}
	t.Logf("seed %d", w.seed)
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
	// Both shards hold keys: the big ones are split.
	for i, s := range srvs {
		s.Do("job", func(j *psm.Job) {
			if st := j.Stats(); st.Keys < 2 {
				t.Errorf("shard %d holds %d keys, want the two split keys at least", i, st.Keys)
			}
		})
	}
}

// Gradient compression on the wire gives what a device store with one
// device per worker gives (each input quantized with its own residual),
// also with a key split over shards at an offset inside a packed word.
func TestDistCompressionMatchesDevice(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	for _, c := range []compute.Compression{{Kind: compute.Compress2Bit, Threshold: 0.3}, {Kind: compute.Compress1Bit, Threshold: 0}} {
		for _, shards := range []int{1, 2} {
			for _, lists := range []bool{false, true} { // lists: a list call's keys are compressed too
				t.Run(fmt.Sprintf("%v/%dshards/lists=%v", c.Kind, shards, lists), func(t *testing.T) {
					w := &workload{n: 4, sizes: []int{3, 50, 77}, steps: 6, seed: 3, comp: &c, lists: lists,
						opt: &optimizer.Spec{Name: "sgd", LearningRate: p(0.1), Momentum: p(0.5)}}
					t.Logf("seed %d", w.seed)
					want := w.runLocal(t)
					var srvs []*inproc.Server
					for i := range shards {
						srvs = append(srvs, testServer(t, psm.Config{Shard: i, Shards: shards}))
					}
					got := w.runDist(t, "dist_sync", func(int) transport.Transport {
						return shardsOf(t, srvs, transport.Join{Job: "job", Workers: w.n, BigArrayBound: 40})
					}, nil)
					for r := range got {
						sameBits(t, fmt.Sprintf("worker %d", r), got[r], want)
					}
				})
			}
		}
	}
}

// Connections that break mid-training (requests reach the server but the
// answers are lost, or the other way round) are resumed: every push is
// applied exactly once and the result is still the single-process one. In
// "lists" the breaks hit list requests (PushPullList: a push list, then a
// pull list), resent with their seqs and applied exactly once too.
func TestDistSyncSurvivesReconnects(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for _, lists := range []bool{false, true} {
		t.Run(map[bool]string{false: "keys", true: "lists"}[lists], func(t *testing.T) {
			w := &workload{n: 3, sizes: []int{8, 64}, steps: 12, seed: seed, lists: lists, pushpull: lists,
				opt: &optimizer.Spec{Name: "sgd", LearningRate: p(0.1), Momentum: p(0.9)}}
			if lists {
				w.sizes = []int{8, 64, 3, 100}
			}
			want := w.runLocal(t)
			srv := testServer(t, psm.Config{})
			conns := make([]*transport.Conn, w.n)
			for i := range conns {
				conns[i] = srv.Connect("job", w.n)
			}
			got := w.runDist(t, "dist_sync", func(i int) transport.Transport { return conns[i] }, func(i int, s *kvcore.Store, step int) {
				c := conns[i]
				switch step % 4 {
				case 1:
					c.BreakAfter(1 + s.Rank()) // a request arrives, its answer is lost
				case 3:
					c.Break()
				}
			})
			for r := range got {
				sameBits(t, fmt.Sprintf("worker %d", r), got[r], want)
			}
			srv.Do("job", func(j *psm.Job) {
				st := j.Stats()
				t.Logf("stats: %+v", st)
				if st.Rounds != uint64(w.steps*len(w.sizes)) {
					t.Errorf("%d rounds closed, want %d", st.Rounds, w.steps*len(w.sizes))
				}
				if lists && st.Lists == 0 {
					t.Error("no list requests")
				}
			})
		})
	}
}

// dist_async applies every push exactly once: with SGD (lr 1) and integer
// gradients the final value is the initial one minus the sum of all
// pushes, whatever their order, also across broken connections.
func TestDistAsyncAppliesEveryPushOnce(t *testing.T) {
	const n, steps, size = 4, 25, 16
	srv := testServer(t, psm.Config{})
	ctx := testCtx(t)
	lr := 1.0
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
			if err := s.Init(ctx, kvcore.IntKey(0), arr(t, make([]float32, size))); err != nil {
				errs[i] = err
				return
			}
			if err := s.SetOptimizer(ctx, &optimizer.Spec{Name: "sgd", LearningRate: &lr}); err != nil {
				errs[i] = err
				return
			}
			if err := s.Barrier(ctx); err != nil {
				errs[i] = err
				return
			}
			g := make([]float32, size)
			for step := range steps {
				for j := range g {
					g[j] = float32(s.Rank() + 1)
				}
				if step%7 == 3 {
					conn.BreakAfter(1)
				}
				if err := s.Push(kvcore.IntKey(0), arr(t, g)); err != nil {
					errs[i] = err
					return
				}
			}
			errs[i] = s.WaitAll(ctx)
			if errs[i] == nil {
				errs[i] = s.Barrier(ctx)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	// Sum of (rank+1) over ranks, times steps.
	want := -float32(steps * n * (n + 1) / 2)
	srv.Do("async", func(j *psm.Job) {
		if u := j.Stats().Updates; u != n*steps {
			t.Errorf("%d updates applied, want %d", u, n*steps)
		}
		snap, err := j.AppendSnapshot(nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := psm.Restore(psm.Config{}, snap, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
	})
	s, err := kvcore.Create(ctx, "dist_async", &kvcore.Options{Transport: srv.ConnectJoin(transport.Join{Job: "async", Resume: true})})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Init(ctx, kvcore.IntKey(0), arr(t, make([]float32, size))); err != nil {
		t.Fatal(err)
	}
	out := arr(t, make([]float32, size))
	if err := s.Pull(kvcore.IntKey(0), out); err != nil {
		t.Fatal(err)
	}
	for j, v := range values(t, out) {
		if v != want {
			t.Fatalf("value[%d] = %v, want %v (every push once)", j, v, want)
		}
	}
}

// dist_async without an optimizer fails with a clear error on the push.
func TestDistAsyncNeedsOptimizer(t *testing.T) {
	srv := testServer(t, psm.Config{})
	ctx := testCtx(t)
	s, err := kvcore.Create(ctx, "dist_async", &kvcore.Options{Transport: srv.Connect("a", 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Init(ctx, kvcore.IntKey(1), arr(t, []float32{1})); err != nil {
		t.Fatal(err)
	}
	if err := s.Push(kvcore.IntKey(1), arr(t, []float32{1})); err != nil {
		t.Fatal(err)
	}
	err = s.WaitAll(ctx)
	if !errors.Is(err, kvcore.ErrUnsupported) {
		t.Fatalf("push without optimizer: %v, want ErrUnsupported", err)
	}
	t.Logf("error: %v", err)
}

// Init: rank 0's value wins for everyone; a second init of a key fails;
// barrier and commands reach the server; a bad optimizer is refused there.
func TestDistInitBarrierCommands(t *testing.T) {
	srv := testServer(t, psm.Config{})
	ctx := testCtx(t)
	const n = 3
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("j", n)})
				if err != nil {
					return err
				}
				defer s.Close()
				if s.NumWorkers() != n {
					return fmt.Errorf("NumWorkers %d, want %d", s.NumWorkers(), n)
				}
				out := arr(t, []float32{0, 0})
				if err := s.Broadcast(ctx, kvcore.StrKey("b"), arr(t, []float32{float32(s.Rank()), 7}), out); err != nil {
					return err
				}
				if v := values(t, out); v[0] != 0 || v[1] != 7 {
					return fmt.Errorf("broadcast gave %v, want rank 0's [0 7]", v)
				}
				if err := s.Init(ctx, kvcore.StrKey("b"), arr(t, []float32{1, 1})); !errors.Is(err, kvcore.ErrDuplicateInit) {
					return fmt.Errorf("second init: %v, want ErrDuplicateInit", err)
				}
				if err := s.SendCommandToServers(ctx, 5, []byte("profile")); err != nil {
					return err
				}
				if err := s.SendCommandToServers(ctx, 0, []byte(`{"name":"nope"}`)); !errors.Is(err, kvcore.ErrBadOptimizer) {
					return fmt.Errorf("bad optimizer command: %v, want ErrBadOptimizer", err)
				}
				for range 3 {
					if err := s.Barrier(ctx); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
}

// A worker that stops early (uneven batches at epoch end) leaves cleanly
// when its store closes; the others finish their rounds without it.
func TestDistLeaveDoesNotHang(t *testing.T) {
	srv := testServer(t, psm.Config{})
	ctx := testCtx(t)
	const n = 3
	var wg sync.WaitGroup
	errs := make([]error, n)
	finals := make([][]float32, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("j", n)})
				if err != nil {
					return err
				}
				defer s.Close()
				if err := s.Init(ctx, kvcore.IntKey(0), arr(t, []float32{0})); err != nil {
					return err
				}
				batches := 5
				if s.Rank() == 2 {
					batches = 2
				}
				out := arr(t, []float32{0})
				for range batches {
					if err := s.PushPullTo(kvcore.IntKey(0), []*kvcore.Array{arr(t, []float32{1})}, out); err != nil {
						return err
					}
					if err := s.WaitAll(ctx); err != nil {
						return err
					}
				}
				finals[i] = values(t, out)
				return nil
			}()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	// Assign semantics: the last rounds summed the two remaining workers.
	for i, f := range finals {
		if len(f) == 1 && f[0] != 2 && f[0] != 3 {
			t.Errorf("worker %d final %v, want 2 (two workers left) or 3", i, f)
		}
	}
}

// SaveOptimizerStates works in dist mode and writes exactly what a local
// store with the same history writes; LoadOptimizerStates sends them back.
func TestDistSaveLoadStates(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	w := &workload{n: 2, sizes: []int{4, 9}, steps: 3, seed: 9, opt: &optimizer.Spec{Name: "adam", LearningRate: p(0.01)}}
	// Local reference file.
	ctx := testCtx(t)
	ls, err := kvcore.Create(ctx, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	ls.SetOptimizer(ctx, w.opt)
	for i := range w.sizes {
		ls.Init(ctx, w.key(i), arr(t, w.initVal(i)))
	}
	for step := range w.steps {
		for i := range w.sizes {
			ls.Push(w.key(i), arr(t, w.grad(step, 0, i)), arr(t, w.grad(step, 1, i)))
		}
	}
	var want bytes.Buffer
	if err := ls.SaveOptimizerStates(ctx, &want, true); err != nil {
		t.Fatal(err)
	}
	srv := testServer(t, psm.Config{})
	files := make([][]byte, w.n)
	w.runDist(t, "dist_sync", func(int) transport.Transport { return srv.Connect("job", w.n) }, nil)
	// A fresh pair of workers on the same job saves and reloads.
	var wg sync.WaitGroup
	errs := make([]error, w.n)
	for i := range w.n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				// Resume: the job's first pair of workers left.
				s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.ConnectJoin(transport.Join{Job: "job", Resume: true})})
				if err != nil {
					return err
				}
				defer s.Close()
				for k := range w.sizes {
					if err := s.Init(ctx, w.key(k), arr(t, make([]float32, w.sizes[k]))); err != nil {
						return err
					}
				}
				var b bytes.Buffer
				if err := s.SaveOptimizerStates(ctx, &b, true); err != nil {
					return err
				}
				files[i] = b.Bytes()
				return s.LoadOptimizerStates(ctx, bytes.NewReader(b.Bytes()))
			}()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	for i, f := range files {
		if !bytes.Equal(f, want.Bytes()) {
			t.Fatalf("worker %d saved %d bytes that differ from the local store's %d", i, len(f), want.Len())
		}
	}
}

// onePrefix fails t if a package's error prefix appears twice in err (one
// prefix per package: "kvcore: push key 3: kvcore: ..." or "dist: dist:"
// stutter) or the driver's old "dist:" prefix is back.
func onePrefix(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, "dist: ") {
		t.Errorf("error %q: a 'dist:' prefix inside kvcore's", msg)
	}
	for _, p := range []string{"kvcore: ", "transport: ", "relay: ", "wsm: ", "psm: ", "wire: "} {
		if n := strings.Count(msg, p); n > 1 {
			t.Errorf("error %q: prefix %q %d times", msg, p, n)
		}
	}
	if !strings.HasPrefix(msg, "kvcore: ") {
		t.Errorf("error %q: not kvcore's", msg)
	}
}

// A transport that delivers garbage, or dies, fails the operations waiting
// on it with ErrConnLost instead of hanging.
func TestDistBadTransport(t *testing.T) {
	ctx := testCtx(t)
	srv := testServer(t, psm.Config{})
	conn := srv.Connect("j", 1)
	s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: conn})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Init(ctx, kvcore.IntKey(0), arr(t, []float32{1})); err != nil {
		t.Fatal(err)
	}
	conn.Close() // the transport dies for good
	if err := s.Push(kvcore.IntKey(0), arr(t, []float32{1})); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitAll(ctx); !errors.Is(err, kvcore.ErrConnLost) {
		t.Fatalf("push on a dead transport: %v, want ErrConnLost", err)
	} else {
		onePrefix(t, err)
	}
	if err := s.Barrier(ctx); !errors.Is(err, kvcore.ErrConnLost) {
		t.Fatalf("barrier on a dead transport: %v, want ErrConnLost", err)
	} else {
		onePrefix(t, err)
	}
	s.Close()
	if err := s.Barrier(ctx); !errors.Is(err, kvcore.ErrClosed) {
		t.Fatalf("barrier on a closed store: %v, want ErrClosed", err)
	} else {
		onePrefix(t, err)
	}

	// Garbage from the server side.
	a, b := transport.Pipe()
	go func() {
		b.Recv(ctx, 0) // the Hello
		b.Send(ctx, 0, transport.FirstEpoch, []byte("not a webkv message"), nil)
	}()
	if _, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: a}); !errors.Is(err, kvcore.ErrConnLost) {
		t.Fatalf("create over a garbage transport: %v, want ErrConnLost", err)
	} else {
		onePrefix(t, err)
	}
	// A server that never answers: Create gives up with the context.
	a, b = transport.Pipe()
	defer b.Close()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := kvcore.Create(short, "dist_sync", &kvcore.Options{Transport: a}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("create without an answer: %v, want DeadlineExceeded", err)
	} else {
		onePrefix(t, err)
	}
}

// The server restarts from a snapshot (a relay killed and restarted from
// its checkpoint) several times during training: the workers reconnect,
// resend what was not answered, and the result is still exactly the
// single-process one (no acknowledged update lost, none applied twice).
func TestDistSyncSurvivesServerRestarts(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	w := &workload{n: 3, sizes: []int{6, 33}, steps: 10, seed: 21, opt: &optimizer.Spec{Name: "adam", LearningRate: p(0.01)}}
	t.Logf("seed %d", w.seed)
	want := w.runLocal(t)
	srv := testServer(t, psm.Config{})
	var mu sync.Mutex
	restarted := map[int]bool{}
	got := w.runDist(t, "dist_sync", func(int) transport.Transport { return srv.Connect("job", w.n) }, func(i int, s *kvcore.Store, step int) {
		if step%3 != 2 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if restarted[step] {
			return
		}
		restarted[step] = true
		var snap []byte
		srv.Do("job", func(j *psm.Job) {
			var err error
			if snap, err = j.AppendSnapshot(nil); err != nil {
				t.Error(err)
			}
		})
		if err := srv.Restore("job", snap); err != nil {
			t.Error(err)
		}
	})
	for r := range got {
		sameBits(t, fmt.Sprintf("worker %d", r), got[r], want)
	}
	if len(restarted) == 0 {
		t.Fatal("no restart happened")
	}
}

// A synchronous call whose context ends returns the context's error and
// leaves the store usable: a later barrier completes normally.
func TestDistCancelledBarrier(t *testing.T) {
	srv := testServer(t, psm.Config{})
	ctx := testCtx(t)
	const n = 2
	stores := make([]*kvcore.Store, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("j", n)})
			if err != nil {
				t.Error(err)
				return
			}
			stores[i] = s
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	defer stores[0].Close()
	defer stores[1].Close()
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := stores[0].Barrier(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("barrier alone: %v, want DeadlineExceeded", err)
	}
	for range 2 {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := stores[i].Barrier(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
}

// A worker that joins a running job inits (its init is answered at once),
// pulls the current value and takes part from the next round; the others
// never wait for it before that, and its leave does not hang them.
func TestDistLateJoin(t *testing.T) {
	srv := testServer(t, psm.Config{})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	joined, firstRound := make(chan struct{}), make(chan struct{})
	var joinedOnce, firstOnce sync.Once
	train := func(i, steps int, late bool) error {
		if late {
			// However it ends, worker 0 must not wait for it forever.
			defer joinedOnce.Do(func() { close(joined) })
		}
		n := 2
		if late {
			n = 0
		}
		s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("j", n)})
		if err != nil {
			return err
		}
		defer s.Close()
		if err := s.Init(ctx, kvcore.IntKey(0), arr(t, []float32{0})); err != nil {
			return err
		}
		out := arr(t, []float32{-1})
		if late {
			if err := s.Pull(kvcore.IntKey(0), out); err != nil {
				return err
			}
			if v := values(t, out); v[0] != 2 {
				return fmt.Errorf("late joiner pulled %v, want 2 (the sum of a two-worker round)", v)
			}
			joinedOnce.Do(func() { close(joined) })
		}
		for step := range steps {
			if !late && step == 3 && i == 0 {
				select { // the third worker is in before round 3 opens... or during it
				case <-joined:
				case <-ctx.Done():
					return fmt.Errorf("the late worker never joined: %w", ctx.Err())
				}
			}
			if err := s.PushPullTo(kvcore.IntKey(0), []*kvcore.Array{arr(t, []float32{1})}, out); err != nil {
				return err
			}
			if err := s.WaitAll(ctx); err != nil {
				return err
			}
			if v := values(t, out)[0]; v != 2 && v != 3 {
				return fmt.Errorf("worker %d step %d: round sum %v, want 2 or 3", i, step, v)
			}
			if i == 0 && !late {
				firstOnce.Do(func() { close(firstRound) })
			}
		}
		return nil
	}
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = train(i, 12, false) }()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Join once the first round is done.
		select {
		case <-firstRound:
		case <-ctx.Done():
			errs[2] = ctx.Err()
			return
		}
		errs[2] = train(2, 4, true)
	}()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	srv.Do("j", func(j *psm.Job) {
		if st := j.Stats(); st.Rounds != 12 || st.Workers != 0 {
			t.Errorf("stats %+v: want 12 rounds and no workers left", st)
		}
	})
}

// With a round deadline and a quorum, a straggler does not slow the others
// down: rounds close without it (sum rescaled), its late pushes are
// acknowledged without being applied, and it carries on from the current
// round; the fast workers leave when done (uneven progress at the end of an
// epoch) while the straggler still pushes.
func TestDistStragglerDeadline(t *testing.T) {
	srv := testServer(t, psm.Config{RoundDeadline: 30 * time.Millisecond, QuorumMin: 2})
	ctx := testCtx(t)
	const n, steps = 3, 6
	// The straggler pushes step i only once both fast workers finished it:
	// round i closed at its deadline without the straggler, whose push is
	// then late (no sleep decides that).
	var fastMu sync.Mutex
	fastSteps := make([]int, steps)
	fastDone := make([]chan struct{}, steps)
	for i := range fastDone {
		fastDone[i] = make(chan struct{})
	}
	finished := func(step int) {
		fastMu.Lock()
		defer fastMu.Unlock()
		if fastSteps[step]++; fastSteps[step] == n-1 {
			close(fastDone[step])
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("j", n)})
				if err != nil {
					return err
				}
				defer s.Close()
				straggler := s.Rank() == 2
				step := 0
				if !straggler {
					// However it ends, the straggler must not wait for
					// this worker's steps forever.
					defer func() {
						for ; step < steps; step++ {
							finished(step)
						}
					}()
				}
				if err := s.Init(ctx, kvcore.IntKey(0), arr(t, []float32{0})); err != nil {
					return err
				}
				out := arr(t, []float32{0})
				for ; step < steps; step++ {
					if straggler {
						select {
						case <-fastDone[step]:
						case <-ctx.Done():
							return ctx.Err()
						}
					}
					if err := s.PushPullTo(kvcore.IntKey(0), []*kvcore.Array{arr(t, []float32{1})}, out); err != nil {
						return err
					}
					if err := s.WaitAll(ctx); err != nil {
						return err
					}
					// A full round sums 3; a deadline round sums 2, rescaled
					// by 3/2: 3 as well. The straggler's rounds after the
					// others left hold its push alone: 1.
					if v := values(t, out)[0]; v != 3 && !(straggler && v == 1) {
						return fmt.Errorf("rank %d: round value %v, want 3", s.Rank(), v)
					}
					if !straggler {
						finished(step)
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	srv.Do("j", func(j *psm.Job) {
		st := j.Stats()
		t.Logf("stats %+v", st)
		if st.Rescaled == 0 || st.LatePushes == 0 {
			t.Errorf("no deadline round or late push: %+v", st)
		}
	})
}

// shardsOf connects to one server per shard.
func shardsOf(t testing.TB, srvs []*inproc.Server, join transport.Join) transport.Transport {
	var ts []transport.Transport
	for _, s := range srvs {
		ts = append(ts, s.ConnectJoin(join))
	}
	sh, err := transport.Shards(ts...)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}
