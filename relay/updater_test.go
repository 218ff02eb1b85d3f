//go:build !js && !wasip1

package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/relay"
	"github.com/webkv/webkv/wasm/sandbox"
	"github.com/webkv/webkv/wasm/updater/updatertest"
)

// The TestWasmUpdater* tests run custom updater modules (kvcore/updater's
// ABI) built from their Go source by the test, in the relay's wazero host.

func updaterConfig(t testing.TB, c relay.UpdaterConfig) relay.UpdaterConfig {
	c.CacheDir = updatertest.CacheDir(t)
	return c
}

// dialN connects n workers of job to url (one goroutine each, so the
// start barrier of DialOptions.Workers can complete) and returns them in
// rank order.
func dialN(t *testing.T, ctx context.Context, url, typ, job string, n int) []*kvcore.Store {
	t.Helper()
	ws := make([]*kvcore.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Resume: the second phase continues the job after a restart.
			ws[i], errs[i] = relay.Create(ctx, typ, url, relay.DialOptions{Job: job, Workers: n, Resume: true, Logger: quiet()}, nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, s := range ws {
			s.Close()
		}
	})
	slices.SortFunc(ws, func(a, b *kvcore.Store) int { return a.Rank() - b.Rank() })
	return ws
}

// each runs f for every worker at once and fails the test on the first
// error.
func each(t *testing.T, ws []*kvcore.Store, f func(s *kvcore.Store) error) {
	t.Helper()
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, s := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(s)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
}

// full is an array of shape filled with x.
func full(x float32, shape ...int) *kvcore.Array {
	a, _ := kvcore.NewArray(kvcore.CPU(0), shape...)
	a.Fill(context.Background(), x)
	return a
}

func values(ctx context.Context, s *kvcore.Store, k kvcore.Key, shape ...int) ([]float32, error) {
	out, err := kvcore.NewArray(kvcore.CPU(0), shape...)
	if err != nil {
		return nil, err
	}
	if err := s.Pull(k, out); err != nil {
		return nil, err
	}
	return out.ToSlice(ctx)
}

// TestWasmUpdaterMXNetDist ports check_default_keys of MXNet's
// tests/nightly/dist_sync_kvstore.py as written, with its Test optimizer:
// keys '3' (2x3) and '99' (1200x1200, above the 1,000,000-element big-array
// bound, so split over both relay shards) start at ones, every worker sets
// the optimizer (here the Test optimizer module with rescale_grad = rate =
// 2) and pushes ones*(rank+1) three times, and after push i each pull reads
// (nworker+1)*nworker*rate/2*(i+1) + 1 exactly. No gradient is negated:
// the module adds, as MXNet's Test optimizer does.
func TestWasmUpdaterMXNetDist(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := updatertest.Build(t, "mxtest")
	host, err := sandbox.New(&sandbox.Options{CacheDir: updatertest.CacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	shards := []string{"a", "b"}
	_, ua := start(t, relay.Config{Shards: shards, ShardIndex: 0, Updaters: relay.UpdaterConfig{Host: host}})
	_, ub := start(t, relay.Config{Shards: shards, ShardIndex: 1, Updaters: relay.UpdaterConfig{Host: host}})
	const nworker, rate, nrepeat = 3, 2, 3
	shape, big := []int{2, 3}, []int{1200, 1200}
	ws := dialN(t, ctx, ua+","+ub, "dist_sync", "mxnet", nworker)
	each(t, ws, func(s *kvcore.Store) error {
		k3, k99 := kvcore.StrKey("3"), kvcore.StrKey("99")
		if err := s.InitList(ctx, []kvcore.Key{k3, k99}, []*kvcore.Array{full(1, shape...), full(1, big...)}); err != nil {
			return err
		}
		// kv.set_optimizer(mx.optimizer.create('test', rescale_grad=rate))
		if err := s.SetUpdaterModule(ctx, &updater.Module{Code: code, Config: []byte(fmt.Sprintf("rescale_grad=%d", rate))}); err != nil {
			return err
		}
		if err := s.Barrier(ctx); err != nil {
			return err
		}
		my := float32(s.Rank() + 1)
		for i := range nrepeat {
			if err := s.Push(k3, full(my, shape...)); err != nil {
				return err
			}
			if err := s.Push(k99, full(my, big...)); err != nil {
				return err
			}
			num := float32((nworker+1)*nworker*rate/2*(i+1) + 1)
			for _, k := range []struct {
				key   kvcore.Key
				shape []int
			}{{k3, shape}, {k99, big}} {
				v, err := values(ctx, s, k.key, k.shape...)
				if err != nil {
					return err
				}
				for j, x := range v {
					if x != num {
						return fmt.Errorf("rank %d, repeat %d: key %v[%d] = %v, want %v", s.Rank(), i, k.key, j, x, num)
					}
				}
			}
		}
		return s.WaitAll(ctx)
	})
}

// fedproxModule is the FedProx-style example with its config.
func fedproxModule(t testing.TB) *updater.Module {
	return &updater.Module{Code: updatertest.Build(t, "fedprox"), Config: []byte("lr=0.05,mu=0.1,momentum=0.9,period=2")}
}

// fedproxRun is a training run with the FedProx-style module: key sizes,
// initial values and every worker's gradient per round, seeded.
type fedproxRun struct {
	sizes   []int
	workers int
	init    [][]float32
	seed    uint64
}

func (r *fedproxRun) grad(round, rank, k int) []float32 {
	g := rand.New(rand.NewPCG(r.seed^uint64(round+1)*0x9E3779B97F4A7C15, uint64(rank)<<40|uint64(k)))
	v := make([]float32, r.sizes[k])
	for i := range v {
		v[i] = float32(g.NormFloat64())
	}
	return v
}

func (r *fedproxRun) keys() []kvcore.Key { return kvcore.Keys(0, 1) }

// round pushes every key's gradient of round (a dist worker its own; the
// local reference every worker's, as devices in rank order) and waits.
func (r *fedproxRun) round(ctx context.Context, s *kvcore.Store, round int, ranks ...int) error {
	for k := range r.sizes {
		var vals []*kvcore.Array
		for _, rank := range ranks {
			a, err := kvcore.FromSlice(kvcore.CPU(0), r.grad(round, rank, k))
			if err != nil {
				return err
			}
			vals = append(vals, a)
		}
		if err := s.Push(kvcore.IntKey(k), vals...); err != nil {
			return err
		}
	}
	return s.WaitAll(ctx)
}

func (r *fedproxRun) initValues() []*kvcore.Array {
	var vs []*kvcore.Array
	for _, v := range r.init {
		a, _ := kvcore.FromSlice(kvcore.CPU(0), v)
		vs = append(vs, a)
	}
	return vs
}

func (r *fedproxRun) pullAll(ctx context.Context, s *kvcore.Store) ([][]float32, error) {
	var out [][]float32
	for k, n := range r.sizes {
		v, err := values(ctx, s, kvcore.IntKey(k), n)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// TestWasmUpdaterStates: a stateful module (the FedProx-style example: a
// momentum and an anchor array per key) on a durable relay. The states the
// dist store saves after three rounds are the bytes a single process
// running the same module saves; the relay shuts down and a new one on the
// same data dir restores the job with its module and states (no worker
// sends the module again), and three more rounds match the single process
// bit for bit; loading the saved states back makes round seven match the
// single process doing the same.
func TestWasmUpdaterStates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := &fedproxRun{sizes: []int{300, 37}, workers: 2, seed: seed}
	g := rand.New(rand.NewPCG(seed, 99))
	for _, n := range r.sizes {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(g.NormFloat64())
		}
		r.init = append(r.init, v)
	}
	mod := fedproxModule(t)
	host, err := sandbox.New(&sandbox.Options{CacheDir: updatertest.CacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()

	// The single-process reference.
	ref, err := kvcore.Create(ctx, "local", &kvcore.Options{Updaters: host})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	if err := ref.InitList(ctx, r.keys(), r.initValues()); err != nil {
		t.Fatal(err)
	}
	if err := ref.SetUpdaterModule(ctx, mod); err != nil {
		t.Fatal(err)
	}
	var refSaved bytes.Buffer
	var want6, want7 [][]float32
	for round := range 7 {
		if round == 6 {
			if err := ref.LoadOptimizerStates(ctx, bytes.NewReader(refSaved.Bytes())); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.round(ctx, ref, round, 0, 1); err != nil {
			t.Fatal(err)
		}
		if round == 2 {
			if err := ref.SaveOptimizerStates(ctx, &refSaved, true); err != nil {
				t.Fatal(err)
			}
		}
		if round == 5 {
			if want6, err = r.pullAll(ctx, ref); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want7, err = r.pullAll(ctx, ref); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cfg := relay.Config{DataDir: dir, Durable: true, Logger: quiet(), Updaters: relay.UpdaterConfig{Host: host}}
	s1, err := relay.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u1, err := s1.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s1.Serve()
	var saved []byte
	ws := dialN(t, ctx, u1, "dist_sync", "fedprox", 2)
	each(t, ws, func(s *kvcore.Store) error {
		vals := r.initValues()
		if err := s.InitList(ctx, r.keys(), vals); err != nil {
			return err
		}
		if s.Rank() == 0 {
			if err := s.SetUpdaterModule(ctx, mod); err != nil {
				return err
			}
		}
		if err := s.Barrier(ctx); err != nil {
			return err
		}
		for round := range 3 {
			if err := r.round(ctx, s, round, s.Rank()); err != nil {
				return err
			}
		}
		if s.Rank() == 0 {
			var b bytes.Buffer
			if err := s.SaveOptimizerStates(ctx, &b, true); err != nil {
				return err
			}
			saved = b.Bytes()
		}
		return s.Barrier(ctx)
	})
	if !bytes.Equal(saved, refSaved.Bytes()) {
		t.Fatalf("dist states after 3 rounds (%d bytes) differ from the single process's (%d bytes)", len(saved), refSaved.Len())
	}
	for _, s := range ws {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// A new relay on the same data dir: the job, its module and its states
	// come back.
	_, u2 := start(t, cfg)
	ws = dialN(t, ctx, u2, "dist_sync", "fedprox", 2)
	var got6, got7 [][]float32
	each(t, ws, func(s *kvcore.Store) error {
		if err := s.InitList(ctx, r.keys(), r.initValues()); err != nil {
			return err
		}
		for round := 3; round < 6; round++ {
			if err := r.round(ctx, s, round, s.Rank()); err != nil {
				return err
			}
		}
		if s.Rank() == 0 {
			v, err := r.pullAll(ctx, s)
			if err != nil {
				return err
			}
			got6 = v
		}
		if err := s.Barrier(ctx); err != nil {
			return err
		}
		if s.Rank() == 0 {
			if err := s.LoadOptimizerStates(ctx, bytes.NewReader(saved)); err != nil {
				return err
			}
		}
		if err := s.Barrier(ctx); err != nil {
			return err
		}
		if err := r.round(ctx, s, 6, s.Rank()); err != nil {
			return err
		}
		if s.Rank() == 0 {
			v, err := r.pullAll(ctx, s)
			if err != nil {
				return err
			}
			got7 = v
		}
		return nil
	})
	for k := range r.sizes {
		if !slices.Equal(got6[k], want6[k]) {
			t.Fatalf("key %d after the restart and rounds 4-6 differs from the single process", k)
		}
		if !slices.Equal(got7[k], want7[k]) {
			t.Fatalf("key %d after loading the round-3 states and round 7 differs from the single process", k)
		}
	}
}

// TestWasmUpdaterLimits: in one relay, jobs whose modules loop forever,
// allocate until the memory limit, trap, or panic each fail their own
// update, every worker of the job getting an error that says what happened
// (ErrUpdater), within the time budget; the module is unloaded, so the
// job's next round fails at once naming the first failure. Meanwhile an
// honest job of the same relay, with the Test optimizer module, keeps exact
// sums over all its rounds.
func TestWasmUpdaterLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hostile := updatertest.Build(t, "hostile")
	_, u := start(t, relay.Config{Updaters: updaterConfig(t, relay.UpdaterConfig{CallBudget: 2 * time.Second, MemoryPages: 128})})
	cases := []struct {
		job  string
		mod  *updater.Module
		want string
	}{
		{"loop", &updater.Module{Code: hostile, Config: []byte("loop")}, "ran past its time budget of 2s"},
		{"grow", &updater.Module{Code: hostile, Config: []byte("grow")}, "out of memory"},
		{"trap", &updater.Module{Code: updatertest.RawTrap()}, "trapped: wasm error: unreachable"},
		{"panic", &updater.Module{Code: hostile, Config: []byte("panic")}, "panic: runtime error"},
	}
	var failed sync.WaitGroup
	failed.Add(len(cases))
	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Add(1)
		// wg is done once t.Run returns, after the subtest's cleanups
		// (dialN's stores closing): done from inside the subtest, the
		// test could end, and goleak look, while a store still closed.
		go func() {
			defer wg.Done()
			t.Run(tc.job, func(t *testing.T) {
				defer failed.Done()
				ws := dialN(t, ctx, u, "dist_sync", tc.job, 2)
				k := kvcore.IntKey(1)
				errs := make([][]error, len(ws))
				each(t, ws, func(s *kvcore.Store) error {
					if err := s.Init(ctx, k, full(1, 8)); err != nil {
						return err
					}
					if s.Rank() == 0 {
						if err := s.SetUpdaterModule(ctx, tc.mod); err != nil {
							return err
						}
					}
					if err := s.Barrier(ctx); err != nil {
						return err
					}
					for range 2 {
						err := s.Push(k, full(1, 8))
						if err == nil {
							err = s.WaitAll(ctx)
						}
						errs[s.Rank()] = append(errs[s.Rank()], err)
					}
					return nil
				})
				for rank, es := range errs {
					first, second := es[0], es[1]
					if !errors.Is(first, kvcore.ErrUpdater) || !strings.Contains(first.Error(), tc.want) || !strings.Contains(first.Error(), tc.mod.Hash().String()) {
						t.Errorf("worker %d, first round: %v, want ErrUpdater naming the module and saying %q", rank, first, tc.want)
					}
					if !errors.Is(second, kvcore.ErrUpdater) || !strings.Contains(second.Error(), "unloaded after a failure") {
						t.Errorf("worker %d, second round: %v, want ErrUpdater: unloaded", rank, second)
					}
				}
				t.Logf("%s: %v", tc.job, errs[0][0])
				v, err := values(ctx, ws[0], k, 8)
				if err != nil {
					t.Fatal(err)
				}
				if v[0] != 1 {
					t.Errorf("value after failed updates: %v, want 1s", v)
				}
			})
		}()
	}
	// The honest job: 3 workers push rank+1 for 20 rounds with the Test
	// optimizer (rescale_grad 1): the key grows by 6 per round, exactly.
	ws := dialN(t, ctx, u, "dist_sync", "honest", 3)
	code := updatertest.Build(t, "mxtest")
	const rounds = 20
	each(t, ws, func(s *kvcore.Store) error {
		k := kvcore.IntKey(0)
		if err := s.Init(ctx, k, full(0, 64)); err != nil {
			return err
		}
		if err := s.SetUpdaterModule(ctx, &updater.Module{Code: code}); err != nil {
			return err
		}
		if err := s.Barrier(ctx); err != nil {
			return err
		}
		for i := range rounds {
			if i == rounds/2 {
				// The second half runs after every hostile job failed.
				if s.Rank() == 0 {
					failed.Wait()
				}
				if err := s.Barrier(ctx); err != nil {
					return err
				}
			}
			out, _ := kvcore.NewArray(kvcore.CPU(0), 64)
			if err := s.PushPullTo(k, []*kvcore.Array{full(float32(s.Rank()+1), 64)}, out); err != nil {
				return err
			}
			v, err := out.ToSlice(ctx)
			if err != nil {
				return err
			}
			for j, x := range v {
				if x != float32(6*(i+1)) {
					return fmt.Errorf("honest job, round %d: element %d = %v, want %d", i, j, x, 6*(i+1))
				}
			}
		}
		return s.WaitAll(ctx)
	})
	wg.Wait()
}

// TestWasmUpdaterPolicy: a relay that refuses modules, and one that takes
// only an allow-listed hash, answer SetUpdaterModule with ErrBadOptimizer
// saying why; the allow-listed module runs.
func TestWasmUpdaterPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mx, fp := &updater.Module{Code: updatertest.Build(t, "mxtest")}, fedproxModule(t)
	_, refuse := start(t, relay.Config{Updaters: updaterConfig(t, relay.UpdaterConfig{Refuse: true})})
	_, allow := start(t, relay.Config{Updaters: updaterConfig(t, relay.UpdaterConfig{Allow: []string{mx.Hash().String()}})})
	if _, err := relay.NewServer(relay.Config{Logger: quiet(), Updaters: relay.UpdaterConfig{Allow: []string{"sha256:beef"}}}); err == nil {
		t.Fatal("a relay with a malformed allow-list hash started")
	}
	s := dialN(t, ctx, refuse, "dist_sync", "j", 1)[0]
	if err := s.SetUpdaterModule(ctx, mx); !errors.Is(err, kvcore.ErrBadOptimizer) || !strings.Contains(err.Error(), "runs no custom updater modules") {
		t.Fatalf("relay that refuses modules: %v", err)
	}
	s = dialN(t, ctx, allow, "dist_sync", "j", 1)[0]
	if err := s.SetUpdaterModule(ctx, fp); !errors.Is(err, kvcore.ErrBadOptimizer) || !strings.Contains(err.Error(), "not on the allow-list") {
		t.Fatalf("module not on the allow-list: %v", err)
	}
	if err := s.Init(ctx, kvcore.IntKey(0), full(1, 4)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUpdaterModule(ctx, mx); err != nil {
		t.Fatal(err)
	}
	if err := s.Push(kvcore.IntKey(0), full(2, 4)); err != nil {
		t.Fatal(err)
	}
	if v, err := values(ctx, s, kvcore.IntKey(0), 4); err != nil || v[0] != 3 {
		t.Fatalf("allow-listed module: %v, %v (want 3s)", v, err)
	}
}
