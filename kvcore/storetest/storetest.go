// Package storetest is the conformance suite of kvcore.Store: every store
// semantic, checked through the public API only, so that a store on any
// backend (the CPU, the WebGPU backend of package shaders, a dist store over
// a relay) can run it from its own package:
//
//	func TestStoreConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) *kvcore.Store {
//			s, err := kvcore.Create(ctx, "device", &kvcore.Options{Backend: be})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		}, &storetest.Options{In: []kvcore.Device{kvcore.GPU(0, be)}})
//	}
//
// What is checked (each part a subtest, each on fresh stores):
//   - MXNet's default updater assigns (init 1, push 4, pull 4), values of
//     several devices are summed, a key given twice in one list is summed,
//     a pull broadcasts into every output, PushPull in place and into other
//     outputs, PushPullList's order (MXNet's: all pushes, then all pulls,
//     in local and device stores; key by key in dist stores), Broadcast and
//     BroadcastList (rank 0's value wins, a second one is refused), 0-d
//     arrays (shape ());
//   - SetUpdater on local and device stores (MXNet's _set_updater docstring
//     example; an updater error surfaces in WaitAll, once), refused with
//     ErrUnsupported on dist stores;
//   - SetOptimizer with every optimizer of kvcore, over several pushes of
//     several devices, against the CPU reference kernels run by hand
//     (compute.CPU's Reduce and Step with (*optimizer.Spec).Params; in dist
//     stores a learning-rate schedule follows each key's own update count,
//     as the psm server does);
//   - operations on one key run in issue order whatever their priorities;
//   - bad input returns the sentinel errors of kvcore (unknown key,
//     duplicate init, shape mismatch, mixed keys, nil arrays) and changes
//     nothing;
//   - gradient compression 2bit and 1bit against the reference functions
//     kernels.Quantize2Bit & co.: one residual per device in device stores
//     (MXNet's comm.h), one per key after the local sum in dist stores
//     (kvstore_dist.h); refused on local stores;
//   - SaveOptimizerStates / LoadOptimizerStates: a store loading another's
//     states continues exactly like it; corrupt or truncated input is
//     refused and changes nothing;
//   - a concurrent hammer (many goroutines pushing and pulling the same and
//     different keys) with exact final values; WaitAll; Close.
//
// Arrays live where Options.In and Out say (cpu(0) by default), so a device store is
// tested with arrays on its GPU as well as with host arrays. What a store
// type supports is read from its Type(): updaters on local and device
// types, compression on device and dist types. dist_async is not covered
// (its results depend on timing; kvcore's dist tests check it).
//
// Inputs are seeded random values; the seed is printed, and Seed replays
// it.
//
// The package also holds dist workloads, one worker each over any
// transport (KVApp, ps-lite's test_kv_app; ManyKeysSync), with ConnEvents
// to count a store's reconnections: kvcore runs them over in-process
// servers, package relay over websockets.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/kernels"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// Options adjust Run and RunWorkers; nil means the defaults of every field.
type Options struct {
	// Seed fixes the seed of the random inputs (0: a fresh one, printed).
	Seed uint64
	// In and Out say where the suite's arrays live: input i of a push on
	// In[i%len(In)], output i of a pull on Out[i%len(Out)]; empty keeps
	// cpu(0). Listing several devices mixes them within one call.
	In, Out []kvcore.Device
	// RTol and ATol let optimizer results differ from the CPU reference by
	// |got-want| <= ATol + RTol*max(|want|, |weight before|) (float32
	// kernels of another backend, or a dist server adding several workers'
	// values one by one). The default is bit-exact. With a
	// tolerance, Signum and FTRL may differ in 1 + n/1000 elements that sit
	// within rounding of their jump (logged). Every other check stays
	// exact: its values are exact in float32.
	RTol, ATol float64
	// Small shrinks array sizes and repetition counts, for slow backends
	// (a software Vulkan adapter).
	Small bool
}

type config struct {
	seed    uint64
	in, out []kvcore.Device
	rtol    float64
	atol    float64
	small   bool
}

// Run checks every store semantic on stores made by newStore, one world of
// one worker. newStore is called once or twice per subtest and must return
// a fresh, empty store each time (for a dist store: a new job); the suite
// closes it.
func Run(t *testing.T, newStore func(t *testing.T) *kvcore.Store, opts *Options) {
	RunWorkers(t, 1, func(t *testing.T) []*kvcore.Store { return []*kvcore.Store{newStore(t)} }, opts)
}

// RunWorkers is Run for dist_sync stores with n cooperating workers:
// newWorkers returns n fresh stores of one new job (connected concurrently,
// since a dist Create waits for its peers). Every subtest runs the same
// calls on every worker at once, worker of rank r pushing (r+1) times the
// values of rank 0, and checks what MXNet's dist_sync promises: every pull
// sees the sum of all workers' pushes. Subtests that need one worker (the
// states round trip, which needs a second store of the same keys) run only
// when n is 1.
func RunWorkers(t *testing.T, n int, newWorkers func(t *testing.T) []*kvcore.Store, opts *Options) {
	var o Options
	if opts != nil {
		o = *opts
	}
	c := config{seed: o.Seed, in: o.In, out: o.Out, rtol: o.RTol, atol: o.ATol, small: o.Small}
	if len(c.in) == 0 {
		c.in = []kvcore.Device{kvcore.CPU(0)}
	}
	if len(c.out) == 0 {
		c.out = []kvcore.Device{kvcore.CPU(0)}
	}
	if c.seed == 0 {
		c.seed = rand.Uint64()
	}
	t.Logf("storetest seed %d (replay with storetest.Options.Seed)", c.seed)
	h := &harness{cfg: c, n: n, newWorld: newWorkers}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Assign", h.assign},
		{"Aggregate", h.aggregate},
		{"PushPull", h.pushPull},
		{"Broadcast", h.broadcast},
		{"Scalar", h.scalar},
		{"Updater", h.updater},
		{"Optimizers", h.optimizers},
		{"OrderPerKey", h.order},
		{"BadInput", h.badInput},
		{"Compression2Bit", func(t *testing.T) { h.compression(t, compute.Compress2Bit) }},
		{"Compression1Bit", func(t *testing.T) { h.compression(t, compute.Compress1Bit) }},
		{"SaveLoadStates", h.saveLoad},
		{"Hammer", h.hammer},
		{"WaitAllError", h.waitAllError},
		{"Close", h.close},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := *h
			h.cfg.seed = c.seed + uint64(i)*0x9e3779b97f4a7c15
			tc.fn(t)
		})
	}
}

type harness struct {
	cfg      config
	n        int
	newWorld func(t *testing.T) []*kvcore.Store
}

// caps is what the store type supports, from its name.
type caps struct {
	updater     bool // SetUpdater works
	compression bool // SetGradientCompression works
	perDevice   bool // one residual per device (device stores) rather than per key (dist)
	dist        bool
}

func capsOf(t *testing.T, typ string) caps {
	switch {
	case strings.Contains(typ, "async"):
		t.Fatalf("storetest: store type %q is not covered (dist_async results depend on timing)", typ)
	case strings.HasPrefix(typ, "dist"):
		return caps{compression: true, dist: true}
	case strings.Contains(typ, "device"):
		return caps{updater: true, compression: true, perDevice: true}
	case strings.HasPrefix(typ, "local"):
		return caps{updater: true}
	}
	t.Fatalf("storetest: unknown store type %q", typ)
	return caps{}
}

// world makes the stores of one subtest and closes them at its end.
func (h *harness) world(t *testing.T) ([]*kvcore.Store, caps) {
	t.Helper()
	ws := h.newWorld(t)
	if len(ws) != h.n {
		t.Fatalf("storetest: got %d stores, want %d workers", len(ws), h.n)
	}
	for _, s := range ws {
		t.Cleanup(func() { s.Close() })
	}
	if h.n > 1 && ws[0].NumWorkers() != h.n {
		t.Fatalf("storetest: NumWorkers = %d, want %d", ws[0].NumWorkers(), h.n)
	}
	return ws, capsOf(t, ws[0].Type())
}

// w is one worker of a subtest. Its Fatalf ends only its goroutine (the
// test goroutine's t.Fatal cannot be called from others) after recording
// the failure with t.Errorf.
type w struct {
	t    *testing.T
	h    *harness
	s    *kvcore.Store
	rank int
	ctx  context.Context
	rng  *rand.Rand
}

func (x *w) Fatalf(format string, args ...any) {
	x.t.Helper()
	x.t.Errorf("rank %d: %s", x.rank, fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func (x *w) must(what string, err error) {
	x.t.Helper()
	if err != nil {
		x.Fatalf("%s: %v", what, err)
	}
}

// each runs body on every worker at once and waits for all. A worker that
// fails closes its store, so that peers waiting on it in a dist job get an
// error instead of hanging; every wait is also bounded by a timeout.
func (h *harness) each(t *testing.T, ws []*kvcore.Store, body func(x *w)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := false
			defer func() {
				if !ok {
					// The worker failed (the test says why): its store goes
					// so the others do not wait for it; Close's own error
					// adds nothing to that failure.
					_ = s.Close()
				}
			}()
			// Every worker draws the same random numbers: ranks differ only
			// by the factor rank+1 the subtests apply.
			body(&w{t: t, h: h, s: s, rank: s.Rank(), ctx: ctx, rng: rand.New(rand.NewPCG(h.cfg.seed, 7))})
			ok = true
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// tri is the sum of rank+1 over all workers: a push of v*(rank+1) by every
// worker sums to v*tri.
func (h *harness) tri() float32 { return float32(h.n * (h.n + 1) / 2) }

func (x *w) f() float32 { return float32(x.rank + 1) }

// in returns input number i on its context, holding data.
func (x *w) in(i int, data []float32, shape ...int) *kvcore.Array {
	x.t.Helper()
	c := x.h.cfg.in[i%len(x.h.cfg.in)]
	a, err := kvcore.FromSlice(c, data, shape...)
	x.must(fmt.Sprintf("input on %v", c), err)
	return a
}

// inFull returns input i filled with v.
func (x *w) inFull(i int, v float32, shape ...int) *kvcore.Array {
	x.t.Helper()
	return x.in(i, fill(size(shape), v), shape...)
}

// out returns output number i on its context, filled with a marker that no
// check expects.
func (x *w) out(i int, shape ...int) *kvcore.Array {
	x.t.Helper()
	c := x.h.cfg.out[i%len(x.h.cfg.out)]
	a, err := kvcore.FromSlice(c, fill(size(shape), -12345), shape...)
	x.must(fmt.Sprintf("output on %v", c), err)
	return a
}

func size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func fill(n int, v float32) []float32 {
	d := make([]float32, n)
	for i := range d {
		d[i] = v
	}
	return d
}

// values waits (bounded) for a and returns its values.
func (x *w) values(a *kvcore.Array) []float32 {
	x.t.Helper()
	x.must("wait", a.Wait(x.ctx))
	v, err := a.ToSlice(x.ctx)
	x.must("read", err)
	return v
}

// wantAll checks that every element of a is want, exactly.
func (x *w) wantAll(what string, a *kvcore.Array, want float32) {
	x.t.Helper()
	for i, g := range x.values(a) {
		if g != want {
			x.Fatalf("%s: element %d = %v, want %v", what, i, g, want)
		}
	}
}

// wantExact checks got == want element by element.
func (x *w) wantExact(what string, got, want []float32) {
	x.t.Helper()
	for i := range want {
		if got[i] != want[i] && !(isNaN(got[i]) && isNaN(want[i])) {
			x.Fatalf("%s: element %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func isNaN(f float32) bool { return f != f }

func (x *w) random(n int, scale float64) []float32 {
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(x.rng.NormFloat64() * scale)
	}
	return d
}

func scaled(d []float32, f float32) []float32 {
	o := make([]float32, len(d))
	for i, v := range d {
		o[i] = v * f
	}
	return o
}

// assign: MXNet's default updater assigns the merged value (Scala
// KVStoreSuite "push and pull": init 1, push 4, pull 4, not 5).
func (h *harness) assign(t *testing.T) {
	ws, _ := h.world(t)
	h.each(t, ws, func(x *w) {
		k := kvcore.IntKey(3)
		x.must("init", x.s.Init(x.ctx, k, x.inFull(0, 1, 2, 3)))
		out := x.out(0, 2, 3)
		x.must("pull", x.s.Pull(k, out))
		x.wantAll("pull after init", out, 1)
		x.must("push", x.s.Push(k, x.inFull(0, 4*x.f(), 2, 3)))
		x.must("pull", x.s.Pull(k, out))
		x.wantAll("pull after push 4", out, 4*h.tri())
		// A second push replaces the value: nothing accumulates.
		x.must("push", x.s.Push(k, x.inFull(1, -2*x.f(), 2, 3)))
		x.must("pull", x.s.Pull(k, out))
		x.wantAll("pull after push -2", out, -2*h.tri())
		x.must("wait all", x.s.WaitAll(x.ctx))
	})
}

// aggregate: the values of several devices are summed (MXNet
// test_kvstore.py test_aggregator), a key given twice in one list is summed,
// a pull writes every output, lists of several keys.
func (h *harness) aggregate(t *testing.T) {
	ws, _ := h.world(t)
	h.each(t, ws, func(x *w) {
		s := x.s
		ka, kb := kvcore.StrKey("a"), kvcore.StrKey("b")
		x.must("init list", s.InitList(x.ctx, []kvcore.Key{ka, kb}, []*kvcore.Array{x.inFull(0, 1, 4), x.inFull(1, 2, 3, 5)}))
		vals := make([]*kvcore.Array, 5)
		for i := range vals {
			vals[i] = x.inFull(i, float32(i+1)*x.f(), 4)
		}
		x.must("push 5 devices", s.Push(ka, vals...))
		outs := []*kvcore.Array{x.out(0, 4), x.out(1, 4), x.out(2, 4)}
		x.must("pull 3 outputs", s.Pull(ka, outs...))
		for i, o := range outs {
			x.wantAll(fmt.Sprintf("output %d after push of 1..5", i), o, 15*h.tri())
		}
		// Duplicate keys in one list are summed: kb twice, ka once.
		err := s.PushList([]kvcore.Key{kb, ka, kb}, [][]*kvcore.Array{
			{x.inFull(0, 1*x.f(), 3, 5)},
			{x.inFull(0, 7*x.f(), 4), x.inFull(1, 1*x.f(), 4)},
			{x.inFull(1, 2*x.f(), 3, 5), x.inFull(2, 10*x.f(), 3, 5)},
		}, 1)
		x.must("push list", err)
		ob1, ob2, oa := x.out(0, 3, 5), x.out(1, 3, 5), x.out(2, 4)
		x.must("pull list", s.PullList([]kvcore.Key{kb, ka, kb}, [][]*kvcore.Array{{ob1}, {oa}, {ob2}}, -1))
		x.wantAll("key b pushed twice in one list", ob1, 13*h.tri())
		x.wantAll("key b pulled twice in one list", ob2, 13*h.tri())
		x.wantAll("key a", oa, 8*h.tri())
		// Random values: the sum is the one of the CPU reference, in order.
		n := 15
		d := [][]float32{x.random(n, 1), x.random(n, 1), x.random(n, 1)}
		in := make([]*kvcore.Array, len(d))
		for i := range d {
			in[i] = x.in(i, scaled(d[i], x.f()), 3, 5)
		}
		x.must("push random", s.Push(kb, in...))
		x.must("pull", s.Pull(kb, ob1))
		want := make([]float32, n)
		if h.n == 1 {
			for i := range want {
				want[i] = (d[0][i] + d[1][i]) + d[2][i]
			}
			x.wantExact("sum of 3 random inputs", x.values(ob1), want)
		} else {
			// The server adds the workers' sums one by one in rank order
			// (v + 2v + 3v ...), the reference multiplies v by 1+2+3...:
			// equal within float32 rounding.
			got := x.values(ob1)
			for i := range want {
				w := float64((d[0][i]+d[1][i])+d[2][i]) * float64(h.tri())
				if math.Abs(float64(got[i])-w) > 1e-5*(1+math.Abs(w)) {
					x.Fatalf("sum of random inputs: element %d = %v, want %v", i, got[i], w)
				}
			}
		}
		x.must("wait all", s.WaitAll(x.ctx))
	})
}

// pushPull: in place (outputs nil) and into other outputs; the inputs of
// the second form are left alone.
func (h *harness) pushPull(t *testing.T) {
	ws, cp := h.world(t)
	h.each(t, ws, func(x *w) {
		s := x.s
		k := kvcore.IntKey(5)
		x.must("init", s.Init(x.ctx, k, x.inFull(0, 1, 3)))
		a, b := x.inFull(0, 2*x.f(), 3), x.inFull(1, 3*x.f(), 3)
		x.must("pushpull in place", s.PushPull(k, a, b))
		x.wantAll("in place, value 0", a, 5*h.tri())
		x.wantAll("in place, value 1", b, 5*h.tri())
		c, d := x.inFull(0, 1*x.f(), 3), x.inFull(1, 6*x.f(), 3)
		o := []*kvcore.Array{x.out(0, 3), x.out(1, 3), x.out(2, 3)}
		x.must("pushpull into outputs", s.PushPullTo(k, []*kvcore.Array{c, d}, o...))
		for i, oi := range o {
			x.wantAll(fmt.Sprintf("output %d", i), oi, 7*h.tri())
		}
		x.wantAll("input 0 untouched", c, 1*x.f())
		x.wantAll("input 1 untouched", d, 6*x.f())
		// Lists, in place.
		k2 := kvcore.IntKey(6)
		x.must("init", s.Init(x.ctx, k2, x.inFull(0, 0, 2, 2)))
		v1, v2 := x.inFull(0, 4*x.f(), 3), x.inFull(1, 9*x.f(), 2, 2)
		x.must("pushpull list", s.PushPullList([]kvcore.Key{k, k2}, [][]*kvcore.Array{{v1}, {v2}}, nil, 2))
		x.wantAll("list key 5", v1, 4*h.tri())
		x.wantAll("list key 6", v2, 9*h.tri())
		// One array pair as the values and outputs of two keys (MXNet's
		// test_pushpull_single_kv_pair, list variant): a local or device
		// store pushes both keys before it pulls either (2 and 2); a dist
		// store goes key by key, so key 11's push reads what key 10's
		// pull wrote.
		k10, k11 := kvcore.IntKey(10), kvcore.IntKey(11)
		x.must("init", s.InitList(x.ctx, []kvcore.Key{k10, k11}, []*kvcore.Array{x.inFull(0, 0, 4, 4), x.inFull(0, 0, 4, 4)}))
		a, b = x.inFull(0, 1, 4, 4), x.inFull(1, 1, 4, 4)
		x.must("pushpull list sharing arrays", s.PushPullList([]kvcore.Key{k10, k11}, [][]*kvcore.Array{{a, b}, {a, b}}, nil, 0))
		want := float32(2)
		if cp.dist {
			n := float32(h.n)
			want = 4 * n * n // key 10: 2n, pulled into a and b; key 11: n*(2n+2n)
		}
		x.wantAll("a after the list", a, want)
		x.wantAll("b after the list", b, want)
		x.must("wait all", s.WaitAll(x.ctx))
	})
}

// broadcast: MXNet's broadcast initializes the key with rank 0's value and
// pulls it into the outputs; a key is broadcast once.
func (h *harness) broadcast(t *testing.T) {
	ws, _ := h.world(t)
	h.each(t, ws, func(x *w) {
		s := x.s
		k := kvcore.StrKey("emb")
		val := x.random(6, 1)
		mine := val
		if x.rank != 0 {
			mine = fill(6, 1000) // rank 0's value must win
		}
		outs := []*kvcore.Array{x.out(0, 2, 3), x.out(1, 2, 3)}
		x.must("broadcast", s.Broadcast(x.ctx, k, x.in(0, mine, 2, 3), outs...))
		for i, o := range outs {
			x.wantExact(fmt.Sprintf("broadcast output %d", i), x.values(o), val)
		}
		err := s.Broadcast(x.ctx, k, x.in(0, mine, 2, 3), x.out(0, 2, 3))
		if !errors.Is(err, kvcore.ErrDuplicateInit) {
			x.Fatalf("second broadcast of a key: err = %v, want ErrDuplicateInit", err)
		}
		// Broadcast without outputs just initializes.
		x.must("broadcast without outputs", s.Broadcast(x.ctx, kvcore.StrKey("b"), x.inFull(0, 3, 2)))
		o := x.out(0, 2)
		x.must("pull", s.Pull(kvcore.StrKey("b"), o))
		x.wantAll("pull after broadcast", o, 3)
		// A list: one value and its outputs per key; a key without
		// outputs is only initialized.
		mine1, mine2 := float32(5), float32(6)
		if x.rank != 0 {
			mine1, mine2 = 1000, 1000
		}
		o1, o2 := x.out(0, 3), x.out(1, 3)
		x.must("broadcast list", s.BroadcastList(x.ctx, kvcore.StrKeys("l1", "l2", "l3"),
			[]*kvcore.Array{x.inFull(0, mine1, 3), x.inFull(0, mine2, 3), x.inFull(0, mine2, 1)},
			[][]*kvcore.Array{{o1}, {o2}, nil}))
		x.wantAll("broadcast list key l1", o1, 5)
		x.wantAll("broadcast list key l2", o2, 6)
		o3 := x.out(0, 1)
		x.must("pull l3", s.Pull(kvcore.StrKey("l3"), o3))
		x.wantAll("broadcast list key l3", o3, 6)
		if err := s.BroadcastList(x.ctx, kvcore.StrKeys("l4"), []*kvcore.Array{x.inFull(0, 1, 1)}, [][]*kvcore.Array{{o3}, {o3}}); err == nil {
			x.Fatalf("broadcast list with 1 key and 2 output lists: no error")
		}
	})
}

// scalar: 0-d arrays (MXNet's shape ()) work as keys' values like any
// other: init, push, pull, pushpull.
func (h *harness) scalar(t *testing.T) {
	ws, _ := h.world(t)
	h.each(t, ws, func(x *w) {
		s := x.s
		k := kvcore.IntKey(0)
		x.must("init", s.Init(x.ctx, k, x.in(0, []float32{3}, []int{}...)))
		out := x.out(0, []int{}...)
		x.must("pull", s.Pull(k, out))
		x.wantAll("scalar after init", out, 3)
		if got := out.Shape(); len(got) != 0 {
			x.Fatalf("scalar output has shape %v, want ()", got)
		}
		x.must("push", s.Push(k, x.in(0, []float32{2 * x.f()}, []int{}...), x.in(1, []float32{x.f()}, []int{}...)))
		x.must("pull", s.Pull(k, out))
		x.wantAll("scalar after a push of 2 devices", out, 3*h.tri())
		v := x.in(0, []float32{x.f()}, []int{}...)
		x.must("pushpull", s.PushPull(k, v))
		x.wantAll("scalar pushpull in place", v, h.tri())
		if err := s.Push(k, x.inFull(0, 1, 1)); !errors.Is(err, kvcore.ErrShapeMismatch) {
			x.Fatalf("push of shape [1] to a scalar key: err = %v, want ErrShapeMismatch", err)
		}
	})
}

// updater: MXNet's _set_updater docstring example (stored 4, updater
// stored += 2*merged, push ones: 6); merged is the sum of the devices. An
// updater error surfaces in WaitAll once. Dist stores refuse updaters.
func (h *harness) updater(t *testing.T) {
	ws, cp := h.world(t)
	if !cp.updater {
		h.each(t, ws, func(x *w) {
			err := x.s.SetUpdater(x.ctx, func(kvcore.Key, *kvcore.Array, *kvcore.Array) error { return nil })
			if !errors.Is(err, kvcore.ErrUnsupported) {
				x.Fatalf("SetUpdater on %q: err = %v, want ErrUnsupported", x.s.Type(), err)
			}
		})
		return
	}
	h.each(t, ws, func(x *w) {
		s := x.s
		k := kvcore.IntKey(3)
		x.must("init", s.Init(x.ctx, k, x.inFull(0, 4, 2, 3)))
		var mu sync.Mutex
		var seen []kvcore.Key
		x.must("set updater", s.SetUpdater(x.ctx, func(key kvcore.Key, merged, stored *kvcore.Array) error {
			mu.Lock()
			seen = append(seen, key)
			mu.Unlock()
			if !sameShape(merged.Shape(), []int{2, 3}) || !sameShape(stored.Shape(), []int{2, 3}) {
				return fmt.Errorf("updater got shapes %v and %v, want [2 3]", merged.Shape(), stored.Shape())
			}
			m, err := merged.ToSlice(x.ctx)
			if err != nil {
				return err
			}
			st, err := stored.ToSlice(x.ctx)
			if err != nil {
				return err
			}
			for i := range st {
				st[i] += 2 * m[i]
			}
			return stored.CopyFrom(x.ctx, st)
		}))
		x.must("push", s.Push(k, x.inFull(0, 1, 2, 3)))
		out := x.out(0, 2, 3)
		x.must("pull", s.Pull(k, out))
		x.wantAll("updater stored += 2*merged", out, 6)
		x.must("push 2 devices", s.Push(k, x.inFull(0, 1, 2, 3), x.inFull(1, 0.5, 2, 3)))
		x.must("pull", s.Pull(k, out))
		x.wantAll("updater with the sum of 2 devices", out, 9)
		x.must("wait all", s.WaitAll(x.ctx))
		mu.Lock()
		if len(seen) != 2 || seen[0] != k || seen[1] != k {
			x.Fatalf("updater called with keys %v, want [3 3]", seen)
		}
		mu.Unlock()
		// SetOptimizer replaces the updater, SetUpdater the optimizer.
		x.must("set optimizer", s.SetOptimizer(x.ctx, optimizer.SGD(1, 0)))
		x.must("push", s.Push(k, x.inFull(0, 1, 2, 3)))
		x.must("pull", s.Pull(k, out))
		x.wantAll("sgd lr 1 after the updater", out, 8)
		x.must("set updater", s.SetUpdater(x.ctx, func(_ kvcore.Key, merged, stored *kvcore.Array) error {
			m, err := merged.ToSlice(x.ctx)
			if err != nil {
				return err
			}
			return stored.CopyFrom(x.ctx, scaled(m, 3))
		}))
		x.must("push", s.Push(k, x.inFull(0, 1, 2, 3)))
		x.must("pull", s.Pull(k, out))
		x.wantAll("updater after the optimizer", out, 3)
		x.must("wait all", s.WaitAll(x.ctx))
	})
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// optimizerSpecs covers every optimizer of kvcore (and a schedule, the
// flags, clipping and multipliers); each one runs against the reference.
var optimizerSpecs = []string{
	`{"name":"sgd","learning_rate":0.1}`,
	`{"name":"sgd","learning_rate":0.1,"momentum":0.9,"wd":0.01,"rescale_grad":0.5,"clip_gradient":1}`,
	`{"name":"nag","learning_rate":0.1,"momentum":0.9,"wd":0.001}`,
	`{"name":"adam","learning_rate":0.01}`,
	`{"name":"adamw","learning_rate":0.01,"wd":0.1}`,
	`{"name":"adagrad","learning_rate":0.1}`,
	`{"name":"rmsprop","learning_rate":0.01}`,
	`{"name":"rmsprop","learning_rate":0.01,"centered":true,"clip_weights":2}`,
	`{"name":"adadelta"}`,
	`{"name":"signum","learning_rate":0.01,"wd_lh":0.01}`,
	`{"name":"ftrl","learning_rate":0.1}`,
	`{"name":"lamb","learning_rate":0.01}`,
	`{"name":"lamb","learning_rate":0.01,"bias_correction":false,"lower_bound":0.1,"upper_bound":10}`,
	`{"name":"adam","learning_rate":0.01,"lr_mult":{"1":0.5},"wd":0.01,"wd_mult":{"2":2},"lr_scheduler":{"type":"factor","step":2,"factor":0.5}}`,
}

// refKey is the CPU reference of one key under an optimizer: the weight and
// states as compute.NewCPU(nil) buffers, stepped by hand.
type refKey struct {
	key    kvcore.Key
	w      compute.Buffer
	states []compute.Buffer
	t      int
	// ownCount: the schedule follows the key's own update count instead of
	// the store's (a dist server does so: its num_update would depend on
	// the order in which rounds of different keys close).
	ownCount bool
}

func cpuBuf(x *w, data []float32) compute.Buffer {
	be := compute.NewCPU(nil)
	b, err := be.Alloc(len(data))
	x.must("cpu alloc", err)
	x.must("cpu write", be.Write(b, 0, data))
	return b
}

func cpuRead(x *w, b compute.Buffer) []float32 {
	d := make([]float32, b.Len())
	x.must("cpu read", compute.NewCPU(nil).Read(b, 0, d))
	return d
}

// step applies one update with the sum of grads, the way a store does: sum
// with Reduce (left to right), then Step with the key's t and the store's
// update count.
func (r *refKey) step(x *w, opt *optimizer.Spec, numUpdate *int, grads [][]float32) {
	be := compute.NewCPU(nil)
	bufs := make([]compute.Buffer, len(grads))
	for i, g := range grads {
		bufs[i] = cpuBuf(x, g)
	}
	m := bufs[0]
	if len(bufs) > 1 {
		m = cpuBuf(x, make([]float32, len(grads[0])))
		x.must("reference reduce", be.Reduce(m, bufs, 1))
	}
	r.t++
	*numUpdate = max(*numUpdate, r.t)
	num := *numUpdate
	if r.ownCount {
		num = r.t
	}
	var p compute.StepParams
	opt.Params(r.key.Name(), r.t, num, &p)
	if r.states == nil {
		for i := range opt.Kind().NumStates(&p) {
			r.states = append(r.states, cpuBuf(x, fill(r.w.Len(), opt.StateInit(i))))
		}
	}
	x.must("reference step", be.Step(opt.Kind(), &p, r.w, m, r.states))
}

// close compares got with the reference want (before: the weight before
// the step) under the configured tolerance.
func (x *w) close(what string, kind compute.OptKind, got, want, before []float32) {
	x.t.Helper()
	c := x.h.cfg
	if c.rtol == 0 && c.atol == 0 {
		x.wantExact(what, got, want)
		return
	}
	allowed := 0
	if kind == compute.OptSignum || kind == compute.OptFTRL {
		allowed = 1 + len(want)/1000
	}
	bad := 0
	for i := range want {
		g, wv := float64(got[i]), float64(want[i])
		mag := max(math.Abs(wv), math.Abs(float64(before[i])))
		if math.Abs(g-wv) <= c.atol+c.rtol*mag {
			continue
		}
		bad++
		if bad > allowed {
			x.Fatalf("%s: element %d = %v, reference %v (|diff| %g > %g + %g*%g)", what, i, g, wv, math.Abs(g-wv), c.atol, c.rtol, mag)
		}
		x.t.Logf("%s: element %d = %v, reference %v: within rounding of a jump of %v, allowed", what, i, g, wv, kind)
	}
}

// optimizers: every optimizer on two keys, several pushes of several
// devices, pulled after every push and compared with the reference.
func (h *harness) optimizers(t *testing.T) {
	n := 1000
	steps := 3
	if h.cfg.small {
		n, steps = 67, 2
	}
	sizes := []int{n, 5}
	for si, js := range optimizerSpecs {
		opt, err := optimizer.Parse([]byte(js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		t.Run(fmt.Sprintf("%d_%s", si, opt.Name), func(t *testing.T) {
			t.Logf("spec %s", js)
			ws, cp := h.world(t)
			h.each(t, ws, func(x *w) {
				s := x.s
				keys := []kvcore.Key{kvcore.IntKey(1), kvcore.IntKey(2)}
				refs := make([]*refKey, len(keys))
				outs := make([]*kvcore.Array, len(keys))
				for i, k := range keys {
					w0 := x.random(sizes[i], 1)
					init := w0
					if x.rank != 0 {
						init = fill(sizes[i], 1000)
					}
					x.must("init", s.Init(x.ctx, k, x.in(0, init)))
					refs[i] = &refKey{key: k, w: cpuBuf(x, w0), ownCount: cp.dist}
					outs[i] = x.out(i, sizes[i])
				}
				x.must("set optimizer", s.SetOptimizer(x.ctx, opt))
				numUpdate := 0
				for step := 1; step <= steps; step++ {
					// Key 1 gets 2 devices every step, key 2 one device and
					// only every other step, so t and num_update differ.
					for i, k := range keys {
						if i == 1 && step%2 == 0 {
							continue
						}
						devs := 2 - i
						var grads [][]float32
						var ins []*kvcore.Array
						for d := range devs {
							// Multiples of 1/1024: every product and sum
							// below is exact in float32, so the server's
							// sum (worker by worker) and the reference's
							// are the same bits. Otherwise, where devices'
							// values nearly cancel, the rounding of the sum
							// decides an adaptive optimizer's step
							// (g/(sqrt(h)+eps)) beyond any tolerance.
							g := x.random(sizes[i], 1)
							for j := range g {
								g[j] = float32(math.Round(float64(g[j])*1024) / 1024)
							}
							grads = append(grads, g)
							ins = append(ins, x.in(d, scaled(g, x.f())))
						}
						before := cpuRead(x, refs[i].w)
						if h.n == 1 {
							refs[i].step(x, opt, &numUpdate, grads)
						} else {
							// The server sums the workers' merged values
							// (in rank order; here as one product).
							sum := make([]float32, sizes[i])
							for j := range sum {
								var local float32
								for _, g := range grads {
									local += g[j]
								}
								sum[j] = local * h.tri()
							}
							refs[i].step(x, opt, &numUpdate, [][]float32{sum})
						}
						if step%2 == 1 {
							x.must("push", s.Push(k, ins...))
							x.must("pull", s.Pull(k, outs[i]))
						} else {
							x.must("pushpull", s.PushPullTo(k, ins, outs[i]))
						}
						x.close(fmt.Sprintf("%s key %v step %d", opt.Name, k, step), opt.Kind(), x.values(outs[i]), cpuRead(x, refs[i].w), before)
					}
				}
				x.must("wait all", s.WaitAll(x.ctx))
			})
		})
	}
}

// order: operations on one key run in issue order whatever their
// priorities; lists at different priorities all complete.
func (h *harness) order(t *testing.T) {
	rounds := 40
	if h.cfg.small {
		rounds = 12
	}
	ws, _ := h.world(t)
	h.each(t, ws, func(x *w) {
		s := x.s
		k := kvcore.IntKey(0)
		x.must("init", s.Init(x.ctx, k, x.inFull(0, 0, 8)))
		outs := make([]*kvcore.Array, rounds)
		for i := range outs {
			outs[i] = x.out(i, 8)
			x.must("push list", s.PushList([]kvcore.Key{k}, [][]*kvcore.Array{{x.inFull(i, float32(i)*x.f(), 8)}}, i%7-3))
			x.must("pull list", s.PullList([]kvcore.Key{k}, [][]*kvcore.Array{{outs[i]}}, -(i%5)))
		}
		for i, o := range outs {
			x.wantAll(fmt.Sprintf("pull %d", i), o, float32(i)*h.tri())
		}
		// Several keys at several priorities.
		const nk = 6
		keys := make([]kvcore.Key, nk)
		for i := range keys {
			keys[i] = kvcore.IntKey(10 + i)
			x.must("init", s.Init(x.ctx, keys[i], x.inFull(0, 0, 3)))
		}
		pouts := make([]*kvcore.Array, nk)
		for i := range keys {
			pouts[i] = x.out(i, 3)
			x.must("push list", s.PushList(keys[i:i+1], [][]*kvcore.Array{{x.inFull(i, float32(i+1)*x.f(), 3)}}, i*10-20))
		}
		x.must("pull list", s.PullList(keys, func() [][]*kvcore.Array {
			o := make([][]*kvcore.Array, nk)
			for i := range o {
				o[i] = []*kvcore.Array{pouts[i]}
			}
			return o
		}(), 5))
		for i, o := range pouts {
			x.wantAll(fmt.Sprintf("key %v", keys[i]), o, float32(i+1)*h.tri())
		}
		x.must("wait all", s.WaitAll(x.ctx))
	})
}

// badInput: every malformed call returns kvcore's sentinel error at once,
// and changes nothing.
func (h *harness) badInput(t *testing.T) {
	ws, cp := h.world(t)
	h.each(t, ws, func(x *w) {
		s := x.s
		x.must("init", s.Init(x.ctx, kvcore.IntKey(1), x.inFull(0, 1, 2)))
		released := x.inFull(0, 1, 2)
		x.must("release", released.Release(x.ctx))
		cases := []struct {
			name string
			err  error
			want error
		}{
			{"duplicate init", s.Init(x.ctx, kvcore.IntKey(1), x.inFull(0, 5, 2)), kvcore.ErrDuplicateInit},
			{"key twice in one init", s.InitList(x.ctx, []kvcore.Key{kvcore.IntKey(4), kvcore.IntKey(4)}, []*kvcore.Array{x.inFull(0, 1, 2), x.inFull(0, 1, 2)}), kvcore.ErrDuplicateInit},
			{"mixed keys init", s.Init(x.ctx, kvcore.StrKey("a"), x.inFull(0, 1, 2)), kvcore.ErrMixedKeys},
			{"unknown key push", s.Push(kvcore.IntKey(9), x.inFull(0, 1, 2)), kvcore.ErrUnknownKey},
			{"unknown key pull", s.Pull(kvcore.IntKey(9), x.out(0, 2)), kvcore.ErrUnknownKey},
			{"unknown key pushpull", s.PushPull(kvcore.IntKey(9), x.inFull(0, 1, 2)), kvcore.ErrUnknownKey},
			{"unknown key in a list", s.PushList([]kvcore.Key{kvcore.IntKey(1), kvcore.IntKey(9)}, [][]*kvcore.Array{{x.inFull(0, 7, 2)}, {x.inFull(0, 7, 2)}}, 0), kvcore.ErrUnknownKey},
			{"mixed key pull", s.Pull(kvcore.StrKey("x"), x.out(0, 2)), kvcore.ErrMixedKeys},
			{"mixed key push", s.Push(kvcore.StrKey("x"), x.inFull(0, 1, 2)), kvcore.ErrMixedKeys},
			{"shape push", s.Push(kvcore.IntKey(1), x.inFull(0, 1, 3)), kvcore.ErrShapeMismatch},
			{"shape of the 2nd device", s.Push(kvcore.IntKey(1), x.inFull(0, 7, 2), x.inFull(1, 7, 1, 2)), kvcore.ErrShapeMismatch},
			{"shape pull 2d", s.Pull(kvcore.IntKey(1), x.out(0, 1, 2)), kvcore.ErrShapeMismatch},
			{"shape pushpull output", s.PushPullTo(kvcore.IntKey(1), []*kvcore.Array{x.inFull(0, 7, 2)}, x.out(0, 3)), kvcore.ErrShapeMismatch},
			{"shape in a list", s.PushList([]kvcore.Key{kvcore.IntKey(1), kvcore.IntKey(1)}, [][]*kvcore.Array{{x.inFull(0, 7, 2)}, {x.inFull(0, 7, 4)}}, 0), kvcore.ErrShapeMismatch},
			{"nil value", s.Push(kvcore.IntKey(1), nil), kvcore.ErrNilArray},
			{"nil 2nd value", s.Push(kvcore.IntKey(1), x.inFull(0, 7, 2), nil), kvcore.ErrNilArray},
			{"no values", s.Push(kvcore.IntKey(1)), kvcore.ErrNilArray},
			{"released value", s.Push(kvcore.IntKey(1), released), kvcore.ErrNilArray},
			{"no outputs", s.Pull(kvcore.IntKey(1)), kvcore.ErrNilArray},
			{"nil output", s.Pull(kvcore.IntKey(1), x.out(0, 2), nil), kvcore.ErrNilArray},
			{"nil output in a list", s.PullList([]kvcore.Key{kvcore.IntKey(1)}, [][]*kvcore.Array{{nil}}, 0), kvcore.ErrNilArray},
			{"nil init", s.Init(x.ctx, kvcore.IntKey(2), nil), kvcore.ErrNilArray},
		}
		for _, c := range cases {
			if !errors.Is(c.err, c.want) {
				x.t.Errorf("rank %d: %s: err = %v, want %v", x.rank, c.name, c.err, c.want)
			} else if x.rank == 0 {
				x.t.Logf("%s: %v", c.name, c.err)
			}
		}
		// Errors without a sentinel: list lengths.
		if err := s.PushList([]kvcore.Key{kvcore.IntKey(1)}, nil, 0); err == nil {
			x.Fatalf("push list with 1 key and no values: no error")
		}
		if err := s.PullList([]kvcore.Key{kvcore.IntKey(1)}, [][]*kvcore.Array{{x.out(0, 2)}, {x.out(0, 2)}}, 0); err == nil {
			x.Fatalf("pull list with 1 key and 2 output lists: no error")
		}
		if err := s.InitList(x.ctx, []kvcore.Key{kvcore.IntKey(7)}, nil); err == nil {
			x.Fatalf("init list with 1 key and no values: no error")
		}
		if err := s.SetOptimizer(x.ctx, nil); err == nil {
			x.Fatalf("nil optimizer: no error")
		}
		if err := s.SetOptimizer(x.ctx, &optimizer.Spec{Name: "nosuch"}); err == nil {
			x.Fatalf("unknown optimizer: no error")
		}
		if ok, err := s.IsCapable("optimizer"); !ok || err != nil {
			x.Fatalf("IsCapable(optimizer) = %v, %v", ok, err)
		}
		if _, err := s.IsCapable("flying"); !errors.Is(err, kvcore.ErrBadCapability) {
			x.Fatalf("IsCapable(flying): err = %v, want ErrBadCapability", err)
		}
		if !cp.dist && (s.Rank() != 0 || s.NumWorkers() != 1) {
			x.Fatalf("rank/workers of %q = %d/%d, want 0/1", s.Type(), s.Rank(), s.NumWorkers())
		}
		// Nothing was stored or queued by the failed calls: key 1 holds
		// its init value, keys 2 and 4 do not exist, and the store works.
		out := x.out(0, 2)
		x.must("pull", s.Pull(kvcore.IntKey(1), out))
		x.wantAll("key 1 after the bad calls", out, 1)
		if err := s.Pull(kvcore.IntKey(4), x.out(0, 2)); !errors.Is(err, kvcore.ErrUnknownKey) {
			x.Fatalf("key 4 of the failed init exists: %v", err)
		}
		x.must("wait all", s.WaitAll(x.ctx))
		x.must("init after the bad calls", s.Init(x.ctx, kvcore.IntKey(2), x.inFull(0, 2, 2)))
		x.must("push", s.Push(kvcore.IntKey(2), x.inFull(0, 3*x.f(), 2)))
		x.must("pull", s.Pull(kvcore.IntKey(2), out))
		x.wantAll("key 2", out, 3*h.tri())
	})
}

// compression: 2bit or 1bit with threshold 0.5 (and error feedback)
// against the reference functions, over several rounds of two devices.
// Device stores quantize each device's value with its own residual before
// summing (MXNet comm.h ReduceCompressed); dist stores sum the devices
// first and keep one residual per key (kvstore_dist.h); the server sums the
// workers' dequantized values. Local stores refuse compression.
func (h *harness) compression(t *testing.T, kind compute.CompressionKind) {
	ws, cp := h.world(t)
	c := compute.Compression{Kind: kind, Threshold: 0.5}
	if !cp.compression {
		h.each(t, ws, func(x *w) {
			if err := x.s.SetGradientCompression(x.ctx, c); !errors.Is(err, kvcore.ErrUnsupported) {
				x.Fatalf("compression on %q: err = %v, want ErrUnsupported", x.s.Type(), err)
			}
		})
		return
	}
	n := 77 // a partial packed word at the end, for both kinds
	rounds := 6
	if h.cfg.small {
		rounds = 4
	}
	h.each(t, ws, func(x *w) {
		s := x.s
		if err := s.SetGradientCompression(x.ctx, compute.Compression{Kind: kind, Threshold: float32(math.NaN())}); !errors.Is(err, kvcore.ErrBadCompression) {
			x.Fatalf("NaN threshold: err = %v, want ErrBadCompression", err)
		}
		if kind == compute.Compress2Bit {
			if err := s.SetGradientCompression(x.ctx, compute.Compression{Kind: kind}); !errors.Is(err, kvcore.ErrBadCompression) {
				x.Fatalf("2bit threshold 0: err = %v, want ErrBadCompression", err)
			}
		}
		x.must("set compression", s.SetGradientCompression(x.ctx, c))
		other := compute.Compression{Kind: compute.Compress1Bit, Threshold: 0.5}
		if kind == compute.Compress1Bit {
			other.Kind = compute.Compress2Bit
		}
		if err := s.SetGradientCompression(x.ctx, other); !errors.Is(err, kvcore.ErrBadCompression) {
			x.Fatalf("changing the compression: err = %v, want ErrBadCompression", err)
		}
		k := kvcore.IntKey(0)
		x.must("init", s.Init(x.ctx, k, x.inFull(0, 7, n)))
		const devs = 2
		// Residuals by rank (dist: one per key; device: one per device).
		nres := devs
		if !cp.perDevice {
			nres = 1
		}
		resid := make([][][]float32, h.n)
		for r := range resid {
			resid[r] = make([][]float32, nres)
			for i := range resid[r] {
				resid[r][i] = make([]float32, n)
			}
		}
		out := x.out(0, n)
		for round := range rounds {
			grads := make([][]float32, devs)
			ins := make([]*kvcore.Array, devs)
			for d := range grads {
				grads[d] = x.random(n, 0.4)
			}
			for d := range grads {
				ins[d] = x.in(d, scaled(grads[d], x.f()))
			}
			// The reference, for every rank (all draw the same numbers).
			want := make([]float32, n)
			for r := range h.n {
				f := float32(r + 1)
				if cp.perDevice {
					var sum []float32
					for d := range grads {
						dq := quantRoundTrip(c, scaled(grads[d], f), resid[r][d])
						if sum == nil {
							sum = dq
						} else {
							for i := range sum {
								sum[i] += dq[i]
							}
						}
					}
					want = sum
				} else {
					local := make([]float32, n)
					for i := range local {
						local[i] = grads[0][i]*f + grads[1][i]*f
					}
					dq := quantRoundTrip(c, local, resid[r][0])
					for i := range want {
						want[i] += dq[i]
					}
				}
			}
			if round%2 == 0 {
				x.must("push", s.Push(k, ins...))
				x.must("pull", s.Pull(k, out))
			} else {
				x.must("pushpull", s.PushPullTo(k, ins, out))
			}
			x.wantExact(fmt.Sprintf("%v round %d", kind, round), x.values(out), want)
		}
		x.must("wait all", s.WaitAll(x.ctx))
	})
}

// quantRoundTrip quantizes g with residual r (updated) and returns the
// dequantized values, with kvcore's reference functions.
func quantRoundTrip(c compute.Compression, g, r []float32) []float32 {
	packed := make([]float32, c.Kind.PackedLen(len(g)))
	out := make([]float32, len(g))
	if c.Kind == compute.Compress2Bit {
		kernels.Quantize2Bit(packed, g, r, c.Threshold)
		kernels.Dequantize2Bit(out, packed, c.Threshold)
	} else {
		kernels.Quantize1Bit(packed, g, r, c.Threshold)
		kernels.Dequantize1Bit(out, packed, c.Threshold)
	}
	return out
}

// saveLoad: states saved from one store load into another holding the same
// weights, and both continue identically; corrupt, truncated or mismatched
// input is refused and changes nothing (checked by continuing afterwards).
func (h *harness) saveLoad(t *testing.T) {
	if h.n != 1 {
		t.Skip("needs a second store on the same keys; kvcore's dist tests cover several workers")
	}
	sizes := map[int]int{1: 64, 2: 5}
	keys := []int{1, 2}
	opt, err := optimizer.Parse([]byte(`{"name":"adam","learning_rate":0.01,"wd":0.001}`))
	if err != nil {
		t.Fatal(err)
	}
	wa, _ := h.world(t)
	wb, cp := h.world(t)
	wc, _ := h.world(t)
	a, b, c := wa[0], wb[0], wc[0]
	h.each(t, wa, func(x *w) {
		grads := map[int][][]float32{}
		for _, k := range keys {
			for range 5 {
				grads[k] = append(grads[k], x.random(sizes[k], 1))
			}
		}
		push := func(s *kvcore.Store, step int) {
			for _, k := range keys {
				x.must("push", s.Push(kvcore.IntKey(k), x.in(step, grads[k][step])))
			}
		}
		for _, k := range keys {
			x.must("init", a.Init(x.ctx, kvcore.IntKey(k), x.in(0, x.random(sizes[k], 1))))
		}
		x.must("set optimizer", a.SetOptimizer(x.ctx, opt))
		for step := range 3 {
			push(a, step)
		}
		var buf bytes.Buffer
		x.must("save", a.SaveOptimizerStates(x.ctx, &buf, true))
		saved := buf.Bytes()
		if len(saved) == 0 {
			x.Fatalf("save wrote nothing")
		}
		// b starts from a's weights, without optimizer or states.
		for _, k := range keys {
			o := x.out(0, sizes[k])
			x.must("pull", a.Pull(kvcore.IntKey(k), o))
			x.must("init b", b.Init(x.ctx, kvcore.IntKey(k), o))
		}
		corrupt := append([]byte(nil), saved...)
		corrupt[len(corrupt)/2] ^= 0xff
		bad := map[string][]byte{
			"corrupt":   corrupt,
			"truncated": saved[:len(saved)-3],
			"empty":     nil,
			"garbage":   []byte("not a states file at all, just text"),
		}
		tryBad := func(s *kvcore.Store, when string) {
			for name, data := range bad {
				if err := s.LoadOptimizerStates(x.ctx, bytes.NewReader(data)); err == nil {
					x.Fatalf("%s states loaded %s without error", name, when)
				}
			}
		}
		tryBad(b, "before any optimizer")
		x.must("load", b.LoadOptimizerStates(x.ctx, bytes.NewReader(saved)))
		tryBad(b, "after a good load")
		// A store that lacks one of the keys refuses the file.
		x.must("init c", c.Init(x.ctx, kvcore.IntKey(1), x.inFull(0, 1, sizes[1])))
		if err := c.LoadOptimizerStates(x.ctx, bytes.NewReader(saved)); err == nil {
			x.Fatalf("states of keys 1 and 2 loaded into a store with key 1 only")
		} else if !cp.dist && !errors.Is(err, kvcore.ErrUnknownKey) {
			x.Fatalf("states of a missing key: err = %v, want ErrUnknownKey", err)
		}
		// Saving b now gives a's file back, and both continue the same.
		var again bytes.Buffer
		x.must("save b", b.SaveOptimizerStates(x.ctx, &again, true))
		if !bytes.Equal(again.Bytes(), saved) {
			x.Fatalf("b saved %d bytes that differ from the %d it loaded", again.Len(), len(saved))
		}
		for step := 3; step < 5; step++ {
			push(a, step)
			push(b, step)
		}
		for _, k := range keys {
			oa, ob := x.out(0, sizes[k]), x.out(1, sizes[k])
			x.must("pull a", a.Pull(kvcore.IntKey(k), oa))
			x.must("pull b", b.Pull(kvcore.IntKey(k), ob))
			x.wantExact(fmt.Sprintf("key %d: reloaded store vs the original", k), x.values(ob), x.values(oa))
		}
		x.must("wait a", a.WaitAll(x.ctx))
		x.must("wait b", b.WaitAll(x.ctx))
	})
}

// hammer: goroutines push and pull the same and different keys at once.
// SGD with learning rate 1 (w -= g) and pushes of negative values make
// every push add minus its sum, so each key's final value is exactly twice the number of pushes it
// got (all values small integers, exact in float32); a goroutine's pulls of
// one key never go down.
func (h *harness) hammer(t *testing.T) {
	keys, gor, rounds, n := 8, 8, 100, 37
	if h.cfg.small {
		keys, gor, rounds, n = 4, 4, 20, 9
	}
	if h.n > 1 {
		keys = gor / 2
	}
	if h.n > 1 {
		rounds = min(rounds, 30)
	}
	opt, err := optimizer.Parse([]byte(`{"name":"sgd","learning_rate":1}`))
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := h.world(t)
	// The key sequence of every goroutine, the same on every worker (dist
	// workers must push each key equally often). With several dist workers
	// each goroutine keeps to one key (two goroutines per key): its calls
	// are chained through its arrays, so a goroutine hopping keys could wait
	// for a round that another worker's goroutine only reaches after a
	// round of another key that waits for this one (MXNet would hang too).
	seqs := make([][]int, gor)
	count := make([]int, keys)
	for g := range seqs {
		r := rand.New(rand.NewPCG(h.cfg.seed, uint64(g)))
		for range rounds {
			k := r.IntN(keys)
			if h.n > 1 {
				k = g % keys
			}
			seqs[g] = append(seqs[g], k)
			count[k]++
		}
	}
	h.each(t, ws, func(x *w) {
		s := x.s
		for k := range keys {
			x.must("init", s.Init(x.ctx, kvcore.IntKey(k), x.inFull(0, 0, n)))
		}
		x.must("set optimizer", s.SetOptimizer(x.ctx, opt))
		var wg sync.WaitGroup
		for g := range gor {
			wg.Add(1)
			go func() {
				defer wg.Done()
				xg := *x
				one := xg.inFull(g, -x.f(), n)
				one2 := xg.inFull(g+1, -x.f(), n)
				out := xg.out(g, n)
				last := make([]float32, keys)
				for _, k := range seqs[g] {
					xg.must("push", s.Push(kvcore.IntKey(k), one, one2))
					xg.must("pull", s.Pull(kvcore.IntKey(k), out))
					d := xg.values(out)
					for i := range d {
						if d[i] != d[0] {
							xg.Fatalf("key %d pulled uneven values %v and %v", k, d[0], d[i])
						}
					}
					if d[0] < last[k] || d[0] <= 0 || math.Mod(float64(d[0]), float64(2*h.tri())) != 0 {
						xg.Fatalf("key %d pulled %v after %v (values grow by %v)", k, d[0], last[k], 2*h.tri())
					}
					last[k] = d[0]
				}
				if d := xg.values(out); d[0] <= 0 || math.Mod(float64(d[0]), float64(2*h.tri())) != 0 {
					xg.Fatalf("last pull %v is not a positive multiple of %v", d[0], 2*h.tri())
				}
			}()
		}
		wg.Wait()
		if x.t.Failed() {
			runtime.Goexit()
		}
		x.must("wait all", s.WaitAll(x.ctx))
		out := x.out(0, n)
		for k := range keys {
			x.must("pull", s.Pull(kvcore.IntKey(k), out))
			x.wantAll(fmt.Sprintf("key %d after %d pushes", k, count[k]), out, float32(2*count[k])*h.tri())
		}
	})
}

// waitAllError: an error in queued work (here an updater's) surfaces in
// WaitAll, once, and the store keeps working. Needs an updater: the only
// way to make queued work fail through the public API.
func (h *harness) waitAllError(t *testing.T) {
	ws, cp := h.world(t)
	if !cp.updater {
		t.Skipf("%q stores take no updater, the one public way to fail queued work", ws[0].Type())
	}
	h.each(t, ws, func(x *w) {
		s := x.s
		boom := errors.New("boom")
		k1, k2 := kvcore.IntKey(1), kvcore.IntKey(2)
		x.must("init", s.Init(x.ctx, k1, x.inFull(0, 1, 3)))
		x.must("init", s.Init(x.ctx, k2, x.inFull(0, 1, 3)))
		x.must("set updater", s.SetUpdater(x.ctx, func(k kvcore.Key, merged, stored *kvcore.Array) error {
			if k == k1 {
				return boom
			}
			m, err := merged.ToSlice(x.ctx)
			if err != nil {
				return err
			}
			return stored.CopyFrom(x.ctx, m)
		}))
		x.must("push k1", s.Push(k1, x.inFull(0, 5, 3)))
		x.must("push k2", s.Push(k2, x.inFull(0, 6, 3)))
		if err := s.WaitAll(x.ctx); !errors.Is(err, boom) {
			x.Fatalf("WaitAll = %v, want the updater's error", err)
		} else if !strings.Contains(err.Error(), "1") {
			x.Fatalf("WaitAll = %v: the error does not name key 1", err)
		}
		x.must("second WaitAll", s.WaitAll(x.ctx))
		out := x.out(0, 3)
		x.must("pull k2", s.Pull(k2, out))
		x.wantAll("key 2 beside the failed key", out, 6)
		x.must("pull k1", s.Pull(k1, out))
		x.wantAll("key 1 after its failed push", out, 1)
		if err := s.SetUpdater(x.ctx, nil); err != nil {
			x.Fatalf("SetUpdater(nil): %v", err)
		}
		x.must("push k1", s.Push(k1, x.inFull(0, 5, 3)))
		x.must("pull k1", s.Pull(k1, out))
		x.wantAll("key 1 with the default updater again", out, 5)
		x.must("wait all", s.WaitAll(x.ctx))
	})
}

// close: Close waits for queued work, later calls fail with ErrClosed, and
// a second Close is harmless.
func (h *harness) close(t *testing.T) {
	ws, _ := h.world(t)
	h.each(t, ws, func(x *w) {
		s := x.s
		k := kvcore.IntKey(1)
		x.must("init", s.Init(x.ctx, k, x.inFull(0, 1, 16)))
		out := x.out(0, 16)
		x.must("push", s.Push(k, x.inFull(0, 2*x.f(), 16)))
		x.must("pull", s.Pull(k, out))
		x.must("close", s.Close())
		// The pull queued before Close finished.
		x.wantAll("pull queued before close", out, 2*h.tri())
		for name, err := range map[string]error{
			"push": s.Push(k, x.inFull(0, 1, 16)),
			"pull": s.Pull(k, x.out(0, 16)),
			"init": s.Init(x.ctx, kvcore.IntKey(2), x.inFull(0, 1, 16)),
		} {
			if !errors.Is(err, kvcore.ErrClosed) {
				x.Fatalf("%s after close: err = %v, want ErrClosed", name, err)
			}
		}
		x.must("second close", s.Close())
	})
}
