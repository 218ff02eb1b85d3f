package kvcore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

var bg = context.Background()

func full(t testing.TB, v float32, shape ...int) *Array {
	t.Helper()
	a, err := NewArray(OnCPU(0), shape...)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Fill(v); err != nil {
		t.Fatal(err)
	}
	return a
}

func mustEqual(t testing.TB, a *Array, want float32) {
	t.Helper()
	got, err := a.ToSlice()
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
	s, err := Create("local")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// MXNet's default updater assigns: init 1, push 4, pull 4 (not 5)
// (Scala KVStoreSuite "push and pull"; kvstore_local.h PushImpl).
func TestPushAssigns(t *testing.T) {
	s := newLocal(t)
	k := IntKey(3)
	if err := s.Init(bg, k, full(t, 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Push(k, full(t, 4, 2, 3)); err != nil {
		t.Fatal(err)
	}
	out := full(t, 0, 2, 3)
	if err := s.Pull(k, out); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, out, 4)
}

// Values for one key in one call are summed (MXNet test_kvstore.py
// test_aggregator: push of num_devs arrays of ones pulls num_devs).
func TestPushAggregates(t *testing.T) {
	s := newLocal(t)
	k := StrKey("w")
	if err := s.Init(bg, k, full(t, 1, 4)); err != nil {
		t.Fatal(err)
	}
	vals := []*Array{full(t, 1, 4), full(t, 2, 4), full(t, 3, 4), full(t, 4, 4), full(t, 5, 4)}
	if err := s.Push(k, vals...); err != nil {
		t.Fatal(err)
	}
	outs := []*Array{full(t, 0, 4), full(t, 0, 4)}
	if err := s.Pull(k, outs...); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, outs[0], 15)
	mustEqual(t, outs[1], 15)
	// Duplicate keys in a list are summed too.
	if err := s.PushList([]Key{k, k}, [][]*Array{{full(t, 1, 4)}, {full(t, 2, 4)}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Pull(k, outs[0]); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, outs[0], 3)
}

// The docstring example of _set_updater: stored 4, updater stored += 2*input,
// push ones → 6.
func TestUpdater(t *testing.T) {
	s := newLocal(t)
	k := IntKey(3)
	if err := s.Init(bg, k, full(t, 4, 2, 3)); err != nil {
		t.Fatal(err)
	}
	err := s.SetUpdater(func(key Key, merged, stored *Array) error {
		m, err := merged.Data()
		if err != nil {
			return err
		}
		st, err := stored.Data()
		if err != nil {
			return err
		}
		for i := range st {
			st[i] += 2 * m[i]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Push(k, full(t, 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	out := full(t, 0, 2, 3)
	s.Pull(k, out)
	mustEqual(t, out, 6)
	// An updater error surfaces on wait, and on the array it concerned.
	boom := errors.New("boom")
	s.SetUpdater(func(Key, *Array, *Array) error { return boom })
	s.Push(k, full(t, 1, 2, 3))
	if err := s.WaitAll(bg); !errors.Is(err, boom) {
		t.Fatalf("WaitAll = %v, want boom", err)
	}
	if err := s.WaitAll(bg); err != nil {
		t.Fatalf("second WaitAll = %v, want nil", err)
	}
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
	if _, err := Create("bogus"); !errors.Is(err, ErrUnknownType) {
		t.Errorf("create bogus: %v", err)
	}
	if _, err := Create("dist_sync"); !errors.Is(err, ErrNoTransport) {
		t.Errorf("create dist_sync: %v", err)
	}
	if _, err := Create("device"); err == nil {
		t.Errorf("create device without GPU: no error")
	}
	if ok, err := s.IsCapable("optimizer"); !ok || err != nil {
		t.Errorf("IsCapable(optimizer) = %v, %v", ok, err)
	}
	if _, err := s.IsCapable("flying"); !errors.Is(err, ErrBadCapability) {
		t.Errorf("IsCapable(flying) err = %v", err)
	}
	if err := s.SetGradientCompression(bg, Compression{Kind: Compress2Bit, Threshold: 0.5}); !errors.Is(err, ErrUnsupported) {
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

// Operations on one key run in issue order whatever their priority.
func TestOrderPerKey(t *testing.T) {
	s := newLocal(t)
	k := IntKey(0)
	s.Init(bg, k, full(t, 0, 8))
	outs := make([]*Array, 50)
	for i := range outs {
		outs[i] = full(t, -1, 8)
		if err := s.PushList([]Key{k}, [][]*Array{{full(t, float32(i), 8)}}, i%7-3); err != nil {
			t.Fatal(err)
		}
		if err := s.PullList([]Key{k}, [][]*Array{{outs[i]}}, -(i % 5)); err != nil {
			t.Fatal(err)
		}
	}
	for i, o := range outs {
		mustEqual(t, o, float32(i))
	}
}

// Many goroutines push and pull the same and different keys; with an
// additive updater the final values are exact.
func TestHammer(t *testing.T) {
	s := newLocal(t)
	const keys, workers, rounds, n = 8, 8, 200, 37
	for k := range keys {
		s.Init(bg, IntKey(k), full(t, 0, n))
	}
	s.SetUpdater(func(_ Key, m, st *Array) error {
		md, _ := m.Data()
		sd, _ := st.Data()
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
			d, _ := out.Data()
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
		d, _ := out.Data()
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

func TestPushPullInPlace(t *testing.T) {
	s := newLocal(t)
	k := IntKey(5)
	s.Init(bg, k, full(t, 1, 3))
	a, b := full(t, 2, 3), full(t, 3, 3)
	if err := s.PushPull(k, []*Array{a, b}, nil); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, a, 5)
	mustEqual(t, b, 5)
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
