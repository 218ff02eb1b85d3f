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
