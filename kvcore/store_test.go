package kvcore

import (
	"context"
	"errors"
	"fmt"
	"github.com/webkv/webkv/kvcore/compute"
	"math/rand/v2"
	"runtime"
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
	// A CPU-type store takes a CPU backend of the caller's (one with an
	// accelerator), and no other.
	notCPU := struct{ compute.Backend }{compute.NewCPU(nil)}
	if _, err := Create(bg, "local", &Options{Backend: notCPU}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("create local with a non-CPU backend: %v", err)
	}
	cpu := compute.NewCPU(nil)
	if l, err := Create(bg, "local", &Options{Backend: cpu}); err != nil || l.Backend() != cpu {
		t.Errorf("create local with a CPU backend: %v", err)
	} else if err := l.Close(); err != nil {
		t.Error(err)
	}
	if _, err := Create(bg, "device", &Options{Transport: Shards{}}); !errors.Is(err, ErrUnsupported) {
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
	s := newLocal(t)
	workers := max(2, runtime.GOMAXPROCS(0))
	release := make(chan struct{})
	started := make(chan struct{}, 64)
	var mu sync.Mutex
	var order []int
	s.SetUpdater(bg, func(k Key, _, _ *Array) error {
		if k.Int() < 100 {
			started <- struct{}{}
			<-release
			return nil
		}
		mu.Lock()
		order = append(order, k.Int())
		mu.Unlock()
		return nil
	})
	for k := range workers {
		s.Init(bg, IntKey(k), full(t, 0, 4))
	}
	prios := map[int]int{100: 0, 101: 9, 102: -9, 103: 3, 104: -1}
	for k := range prios {
		s.Init(bg, IntKey(k), full(t, 0, 4))
	}
	for k := range workers {
		s.Push(IntKey(k), full(t, 1, 4))
	}
	for range workers {
		<-started // every worker is now blocked
	}
	for _, k := range []int{100, 101, 102, 103, 104} {
		s.PushList([]Key{IntKey(k)}, [][]*Array{{full(t, 1, 4)}}, prios[k])
	}
	// Free one worker only: it runs the queued pushes one by one, so they
	// must run strictly by priority.
	release <- struct{}{}
	want := []int{101, 103, 100, 104, 102}
	for {
		mu.Lock()
		n := len(order)
		mu.Unlock()
		if n == len(want) {
			break
		}
		runtime.Gosched()
	}
	close(release)
	if err := s.WaitAll(bg); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("run order %v, want %v", order, want)
		}
	}
}

func TestFloat16Arrays(t *testing.T) {
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
