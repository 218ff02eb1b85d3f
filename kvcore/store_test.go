package kvcore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/transport"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
)

var bg = context.Background()

func full(t testing.TB, v float32, shape ...int) *Array {
	t.Helper()
	a, err := NewArray(CPU(0), shape...)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Fill(bg, v); err != nil {
		t.Fatal(err)
	}
	return a
}

func mustEqual(t testing.TB, a *Array, want float32) {
	t.Helper()
	got, err := a.ToSlice(bg)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if g != want {
			t.Fatalf("element %d = %v, want %v", i, g, want)
		}
	}
}

func newLocal(t testing.TB) *Store {
	t.Helper()
	s, err := Create(bg, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	s := newLocal(t)
	if err := s.Init(bg, IntKey(1), full(t, 1, 2)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"duplicate init", s.Init(bg, IntKey(1), full(t, 1, 2)), ErrDuplicateInit},
		{"mixed keys", s.Init(bg, StrKey("a"), full(t, 1, 2)), ErrMixedKeys},
		{"unknown key push", s.Push(IntKey(9), full(t, 1, 2)), ErrUnknownKey},
		{"unknown key pull", s.Pull(IntKey(9), full(t, 1, 2)), ErrUnknownKey},
		{"mixed key pull", s.Pull(StrKey("x"), full(t, 1, 2)), ErrMixedKeys},
		{"shape", s.Push(IntKey(1), full(t, 1, 3)), ErrShapeMismatch},
		{"shape 2d", s.Pull(IntKey(1), full(t, 1, 1, 2)), ErrShapeMismatch},
		{"nil value", s.Push(IntKey(1), nil), ErrNilArray},
		{"no outputs", s.Pull(IntKey(1)), ErrNilArray},
		{"nil init", s.Init(bg, IntKey(2), nil), ErrNilArray},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, c.err, c.want)
		} else {
			t.Logf("%s: %v", c.name, c.err)
		}
	}
	if _, err := Create(bg, "bogus", nil); !errors.Is(err, ErrUnknownType) {
		t.Errorf("create bogus: %v", err)
	}
	if _, err := Create(bg, "dist_sync", nil); !errors.Is(err, ErrNoTransport) {
		t.Errorf("create dist_sync: %v", err)
	}
	if _, err := Create(bg, "local", &Options{Backend: gpuLike{compute.NewCPU(nil)}}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("create local with a non-CPU backend: %v", err)
	}
	own := compute.NewCPU(&compute.CPUOptions{PoolBytes: -1})
	l, err := Create(bg, "local", &Options{Backend: own})
	if err != nil || l.Backend() != compute.Backend(own) {
		t.Errorf("create local on a given CPU backend: %v", err)
	} else if err := l.Close(); err != nil {
		t.Error(err)
	}
	if _, err := Create(bg, "device", &Options{Transport: onePipeEnd()}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("create device with a transport: %v", err)
	}
	d, err := Create(bg, "device", nil)
	if err != nil {
		t.Fatalf("create device without a backend: %v", err)
	}
	if _, cpu := d.Backend().(*compute.CPU); !cpu {
		t.Errorf("device store without a backend runs on %q, want the CPU", d.Backend().Name())
	}
	if err := d.Close(); err != nil {
		t.Error(err)
	}
	if ok, err := s.IsCapable("optimizer"); !ok || err != nil {
		t.Errorf("IsCapable(optimizer) = %v, %v", ok, err)
	}
	if _, err := s.IsCapable("flying"); !errors.Is(err, ErrBadCapability) {
		t.Errorf("IsCapable(flying) err = %v", err)
	}
	if err := s.SetGradientCompression(bg, compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("compression on local: %v", err)
	}
	if s.Type() != "local" || s.Rank() != 0 || s.NumWorkers() != 1 {
		t.Errorf("type/rank/workers = %q %d %d", s.Type(), s.Rank(), s.NumWorkers())
	}
	// Nothing was stored by the failed calls.
	out := full(t, 0, 2)
	s.Pull(IntKey(1), out)
	mustEqual(t, out, 1)
}

// Many goroutines push and pull the same and different keys; with an
// additive updater the final values are exact.
func TestHammer(t *testing.T) {
	t.Parallel()
	s := newLocal(t)
	const keys, workers, rounds, n = 8, 8, 200, 37
	for k := range keys {
		s.Init(bg, IntKey(k), full(t, 0, n))
	}
	s.SetUpdater(bg, func(_ Key, m, st *Array) error {
		md, _ := m.Data(bg)
		sd, _ := st.Data(bg)
		for i := range sd {
			sd[i] += md[i]
		}
		return nil
	})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			one := full(t, 1, n)
			out := full(t, 0, n)
			for range rounds {
				k := IntKey(r.IntN(keys))
				if err := s.Push(k, one, one); err != nil {
					t.Error(err)
					return
				}
				if err := s.Pull(k, out); err != nil {
					t.Error(err)
					return
				}
			}
			// Per-worker: pulled values only grow, and are even.
			d, _ := out.Data(bg)
			if int(d[0])%2 != 0 {
				t.Errorf("odd value %v", d[0])
			}
		})
	}
	wg.Wait()
	if err := s.WaitAll(bg); err != nil {
		t.Fatal(err)
	}
	total := float32(0)
	out := full(t, 0, n)
	for k := range keys {
		s.Pull(IntKey(k), out)
		d, _ := out.Data(bg)
		for i := range d {
			if d[i] != d[0] {
				t.Fatalf("key %d uneven", k)
			}
		}
		total += d[0]
	}
	if want := float32(2 * workers * rounds); total != want {
		t.Fatalf("total %v, want %v", total, want)
	}
}

func TestStringKeysInitOrder(t *testing.T) {
	t.Parallel()
	s := newLocal(t)
	for i, name := range []string{"b", "a", "c"} {
		if err := s.Init(bg, StrKey(name), full(t, float32(i), 3)); err != nil {
			t.Fatal(err)
		}
	}
	es := s.sortedEntries()
	got := fmt.Sprintf("%v%v%v", es[0].key, es[1].key, es[2].key)
	if got != `"b""a""c"` {
		t.Fatalf("init order %s", got)
	}
}

func BenchmarkPushPullSmall(b *testing.B) {
	s := newLocal(b)
	k := IntKey(0)
	s.Init(bg, k, full(b, 0, 1024))
	v, out := full(b, 1, 1024), full(b, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		s.Push(k, v)
		s.Pull(k, out)
		out.Wait(bg)
	}
}

// With every one of the store's workers busy, queued pushes to other keys start in
// priority order once workers free up.
func TestPriorityAcrossKeys(t *testing.T) {
	t.Parallel()
	s := newLocal(t)
	workers := max(2, runtime.GOMAXPROCS(0)) // the store's runner has as many
	release := make(chan struct{})
	started := make(chan struct{}, 64)
	ran := make(chan int, 8)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetUpdater(bg, func(k Key, _, _ *Array) error {
		if k.Int() < 100 {
			started <- struct{}{}
			<-release
			return nil
		}
		ran <- k.Int()
		return nil
	}))
	for k := range workers {
		must(s.Init(bg, IntKey(k), full(t, 0, 4)))
	}
	prios := map[int]int{100: 0, 101: 9, 102: -9, 103: 3, 104: -1}
	for k := range prios {
		must(s.Init(bg, IntKey(k), full(t, 0, 4)))
	}
	for k := range workers {
		must(s.Push(IntKey(k), full(t, 1, 4)))
	}
	for range workers {
		<-started // every worker is now blocked
	}
	for _, k := range []int{100, 101, 102, 103, 104} {
		must(s.PushList([]Key{IntKey(k)}, [][]*Array{{full(t, 1, 4)}}, prios[k]))
	}
	// Free one worker only: it runs the queued pushes one by one, so they
	// must run strictly by priority.
	release <- struct{}{}
	want := []int{101, 103, 100, 104, 102}
	var order []int
	for range want {
		order = append(order, <-ran)
	}
	close(release)
	must(s.WaitAll(bg))
	if !slices.Equal(order, want) {
		t.Fatalf("run order %v, want %v", order, want)
	}
}

func TestFloat16Arrays(t *testing.T) {
	t.Parallel()
	src := []uint16{0x3c00, 0xc000, 0x3555} // 1, -2, ~0.333
	a, err := FromFloat16(CPU(0), src)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := a.Data(bg)
	if d[0] != 1 || d[1] != -2 {
		t.Fatalf("values %v", d)
	}
	out := make([]uint16, 3)
	if err := a.CopyToFloat16(bg, out); err != nil {
		t.Fatal(err)
	}
	for i := range src {
		if out[i] != src[i] {
			t.Fatalf("round trip %v -> %v", src, out)
		}
	}
	if err := a.CopyToFloat16(bg, make([]uint16, 2)); err == nil {
		t.Fatal("short slice accepted")
	}
}

func onePipeEnd() transport.Transport {
	a, _ := transport.Pipe()
	return a
}

// A negative SGD learning rate adds the gradient (MXNet allows it; its
// nightly dist tests push with learning_rate=-lr).
func TestNegativeLearningRateAdds(t *testing.T) {
	t.Parallel()
	s := newLocal(t)
	if err := s.Init(bg, IntKey(0), full(t, 1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOptimizer(bg, optimizer.SGD(-0.5, 0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Push(IntKey(0), full(t, 2, 3), full(t, 4, 3)); err != nil {
		t.Fatal(err)
	}
	out := full(t, 0, 3)
	if err := s.Pull(IntKey(0), out); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, out, 4) // 1 + 0.5*(2+4)
}

// TestPushPullListSharedArrays is issue 9's repro of MXNet's
// test_pushpull_single_kv_pair (list variant): keys 5 and 7 at zeros(4,4),
// a = ones on cpu(0) and b = ones on cpu(1) as the values and outputs of
// both keys. MXNet pushes every key before it pulls any: a and b end at 2.
func TestPushPullListSharedArrays(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{"local", "device"} {
		s, err := Create(bg, typ, nil)
		if err != nil {
			t.Fatal(err)
		}
		ks := Keys(5, 7)
		if err := s.InitList(bg, ks, []*Array{full(t, 0, 4, 4), full(t, 0, 4, 4)}); err != nil {
			t.Fatal(err)
		}
		a := full(t, 1, 4, 4)
		b, err := FromSlice(CPU(1), []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 4, 4)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PushPullList(ks, [][]*Array{{a, b}, {a, b}}, nil, 0); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, a, 2)
		mustEqual(t, b, 2)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// gpuLike is a backend that is not a *compute.CPU (it runs on one).
type gpuLike struct{ compute.Backend }

// An array used by two stores orders their operations: a pull of store 2
// into a, issued after a push of a to store 1, waits until that push has
// read a, although each store runs its operations on its own workers.
func TestArraySharedByStores(t *testing.T) {
	t.Parallel()
	s1, s2 := newLocal(t), newLocal(t)
	k := IntKey(0)
	if err := s1.Init(bg, k, full(t, 0, 8)); err != nil {
		t.Fatal(err)
	}
	if err := s2.Init(bg, k, full(t, 5, 8)); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	seen := make(chan float32, 1)
	if err := s1.SetUpdater(bg, func(_ Key, merged, _ *Array) error {
		<-release
		d, err := merged.Data(bg)
		if err != nil {
			return err
		}
		seen <- d[0]
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a := full(t, 1, 8)
	if err := s1.Push(k, a); err != nil { // reads a: its merged value is a itself
		t.Fatal(err)
	}
	if err := s2.Pull(k, a); err != nil { // writes a: must wait for the push
		t.Fatal(err)
	}
	close(release)
	if got := <-seen; got != 1 {
		t.Fatalf("store 1's push read %v from a, want 1: store 2's pull overtook it", got)
	}
	mustEqual(t, a, 5)
	for _, s := range []*Store{s1, s2} {
		if err := s.WaitAll(bg); err != nil {
			t.Fatal(err)
		}
	}
}

// After Close every call fails with ErrClosed; a second Close does
// nothing.
func TestClosedStore(t *testing.T) {
	t.Parallel()
	s, err := Create(bg, "device", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := full(t, 1, 2)
	if err := s.Init(bg, IntKey(0), a); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for name, err := range map[string]error{
		"init":        s.Init(bg, IntKey(1), a),
		"push":        s.Push(IntKey(0), a),
		"pull":        s.Pull(IntKey(0), a),
		"pushpull":    s.PushPull(IntKey(0), a),
		"list":        s.PushList(Keys(0), [][]*Array{{a}}, 0),
		"updater":     s.SetUpdater(bg, nil),
		"optimizer":   s.SetOptimizer(bg, optimizer.SGD(0.1, 0)),
		"compression": s.SetGradientCompression(bg, compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}),
		"barrier":     s.Barrier(bg),
		"command":     s.SendCommandToServers(bg, 0, nil),
		"save":        s.SaveOptimizerStates(bg, &buf, false),
		"load":        s.LoadOptimizerStates(bg, &buf),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A steady-state training step through the list calls allocates nothing:
// operations are pooled, and the store's checks keep no per-call state.
func TestListNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	s := newLocal(t)
	ks := Keys(0, 1, 2)
	vals := [][]*Array{{full(t, 1, 64)}, {full(t, 1, 64), full(t, 2, 64)}, {full(t, 3, 64)}}
	outs := [][]*Array{{full(t, 0, 64)}, {full(t, 0, 64)}, {full(t, 0, 64)}}
	for _, k := range ks {
		if err := s.Init(bg, k, full(t, 0, 64)); err != nil {
			t.Fatal(err)
		}
	}
	step := func() {
		if err := s.PushList(ks, vals, 1); err != nil {
			t.Fatal(err)
		}
		if err := s.PullList(ks, outs, 0); err != nil {
			t.Fatal(err)
		}
		if err := s.PushPullList(ks, vals, outs, 0); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitAll(bg); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 {
		step()
	}
	if a := testing.AllocsPerRun(100, step); a != 0 {
		t.Errorf("a step of list calls allocates %v times", a)
	}
}
