//go:build !js && !wasip1

package sandbox_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/wasm/sandbox"
	"github.com/webkv/webkv/wasm/updater/updatertest"
)

func newStore(t testing.TB, typ string, h *sandbox.Host) *kvcore.Store {
	t.Helper()
	s, err := kvcore.Create(bg, typ, &kvcore.Options{Updaters: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func arr(t testing.TB, v ...float32) *kvcore.Array {
	t.Helper()
	a, err := kvcore.FromSlice(kvcore.CPU(0), v)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func fill(t testing.TB, x float32, n int) *kvcore.Array {
	t.Helper()
	v := make([]float32, n)
	for i := range v {
		v[i] = x
	}
	return arr(t, v...)
}

func pull(t testing.TB, s *kvcore.Store, k kvcore.Key, n int) []float32 {
	t.Helper()
	out, err := kvcore.NewArray(kvcore.CPU(0), n)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Pull(k, out); err != nil {
		t.Fatal(err)
	}
	v, err := out.ToSlice(bg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestWasmUpdaterLocalStore: MXNet's _set_updater docstring example
// (updater stored += 2*input; stored 4, push ones, pull 6) with the Test
// optimizer module on local and device stores, string and int keys,
// multi-device pushes (the module gets their sum), and the ErrUnsupported
// of a store without a loader.
func TestWasmUpdaterLocalStore(t *testing.T) {
	h := newHost(t, sandbox.Options{})
	mod := &updater.Module{Code: updatertest.Build(t, "mxtest"), Config: []byte("rescale_grad=2")}
	for _, typ := range []string{"local", "device"} {
		t.Run(typ, func(t *testing.T) {
			s := newStore(t, typ, h)
			k := kvcore.StrKey("3")
			if err := s.Init(bg, k, fill(t, 4, 6)); err != nil {
				t.Fatal(err)
			}
			if err := s.SetUpdaterModule(bg, mod); err != nil {
				t.Fatal(err)
			}
			if err := s.Push(k, fill(t, 1, 6)); err != nil {
				t.Fatal(err)
			}
			if got := pull(t, s, k, 6); !slices.Equal(got, []float32{6, 6, 6, 6, 6, 6}) {
				t.Fatalf("pull after push(ones) = %v, want 6s (MXNet's docstring)", got)
			}
			// Four devices: the module gets their sum once.
			if err := s.Push(k, fill(t, 1, 6), fill(t, 2, 6), fill(t, 3, 6), fill(t, 4, 6)); err != nil {
				t.Fatal(err)
			}
			if got := pull(t, s, k, 6); got[0] != 26 {
				t.Fatalf("after a 4-device push of 1..4: %v, want 6+2*10 = 26", got)
			}
			if err := s.WaitAll(bg); err != nil {
				t.Fatal(err)
			}
		})
	}
	s, err := kvcore.Create(bg, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetUpdaterModule(bg, mod); !errors.Is(err, kvcore.ErrUnsupported) {
		t.Fatalf("SetUpdaterModule without Options.Updaters: %v, want ErrUnsupported", err)
	}
}

// TestWasmUpdaterLocalStates: a stateful module's states are saved with the
// optimizer states (the file names the module) and loaded into a new store
// running the same module, which then continues bit for bit like the
// first; a store running another module, or an optimizer, refuses them.
func TestWasmUpdaterLocalStates(t *testing.T) {
	h := newHost(t, sandbox.Options{})
	code := updatertest.Build(t, "fedprox")
	mod := &updater.Module{Code: code, Config: []byte("lr=0.1,mu=0.05,momentum=0.9,period=2")}
	r := rand.New(rand.NewPCG(seed(t), 3))
	n := 257
	init0, init1 := randoms(r, n), randoms(r, 3)
	grads := make([][]float32, 6)
	for i := range grads {
		grads[i] = randoms(r, n)
	}
	keys := []kvcore.Key{kvcore.IntKey(0), kvcore.IntKey(1)}
	start := func() *kvcore.Store {
		s := newStore(t, "local", h)
		if err := s.InitList(bg, keys, []*kvcore.Array{arr(t, init0...), arr(t, init1...)}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUpdaterModule(bg, mod); err != nil {
			t.Fatal(err)
		}
		return s
	}
	step := func(s *kvcore.Store, i int) {
		// Key 1 is only pushed once: a key without states next to one with.
		if err := s.Push(keys[0], arr(t, grads[i]...), arr(t, grads[i]...)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := s.Push(keys[1], arr(t, 1, 2, 3)); err != nil {
				t.Fatal(err)
			}
		}
	}
	a := start()
	for i := range 3 {
		step(a, i)
	}
	var saved bytes.Buffer
	if err := a.SaveOptimizerStates(bg, &saved, true); err != nil {
		t.Fatal(err)
	}
	// The reference: a continues.
	for i := 3; i < 6; i++ {
		step(a, i)
	}
	want := pull(t, a, keys[0], n)
	// b restarts from a's values after step 3 and its states.
	b := newStore(t, "local", h)
	{
		c := start()
		for i := range 3 {
			step(c, i)
		}
		v0, v1 := pull(t, c, keys[0], n), pull(t, c, keys[1], 3)
		if err := b.InitList(bg, keys, []*kvcore.Array{arr(t, v0...), arr(t, v1...)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetUpdaterModule(bg, mod); err != nil {
		t.Fatal(err)
	}
	if err := b.LoadOptimizerStates(bg, bytes.NewReader(saved.Bytes())); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := b.SaveOptimizerStates(bg, &again, true); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), saved.Bytes()) {
		t.Fatalf("b saved %d bytes that differ from the %d it loaded", again.Len(), saved.Len())
	}
	for i := 3; i < 6; i++ {
		step(b, i)
	}
	if got := pull(t, b, keys[0], n); !slices.Equal(got, want) {
		t.Fatal("the store that loaded the states diverged from the one that saved them")
	}
	// Another config is another updater: its store refuses the states.
	other := newStore(t, "local", h)
	if err := other.InitList(bg, keys, []*kvcore.Array{arr(t, init0...), arr(t, init1...)}); err != nil {
		t.Fatal(err)
	}
	if err := other.SetUpdaterModule(bg, &updater.Module{Code: code, Config: []byte("lr=0.2")}); err != nil {
		t.Fatal(err)
	}
	if err := other.LoadOptimizerStates(bg, bytes.NewReader(saved.Bytes())); !errors.Is(err, kvcore.ErrBadStates) || !strings.Contains(err.Error(), "config") {
		t.Fatalf("states of another config: %v, want ErrBadStates naming the config", err)
	}
	if err := other.SetOptimizer(bg, optimizer.SGD(0.1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := other.LoadOptimizerStates(bg, bytes.NewReader(saved.Bytes())); !errors.Is(err, kvcore.ErrBadStates) || !strings.Contains(err.Error(), "none is installed") {
		t.Fatalf("module states into an optimizer store: %v, want ErrBadStates", err)
	}
}

// TestWasmUpdaterLocalFailure: a module that traps fails its push (WaitAll
// reports ErrUpdater and updater.ErrFailed) and stays unloaded; the value
// is untouched; an optimizer makes the store work again.
func TestWasmUpdaterLocalFailure(t *testing.T) {
	h := newHost(t, sandbox.Options{CallBudget: 2 * time.Second})
	s := newStore(t, "local", h)
	k := kvcore.IntKey(9)
	if err := s.Init(bg, k, fill(t, 1, 4)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUpdaterModule(bg, &updater.Module{Code: updatertest.RawTrap()}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Push(k, fill(t, 1, 4)); err != nil {
			t.Fatal(err)
		}
		err := s.WaitAll(bg)
		if !errors.Is(err, kvcore.ErrUpdater) || !errors.Is(err, updater.ErrFailed) || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("WaitAll = %v, want ErrUpdater and updater.ErrFailed from the trap", err)
		}
	}
	if got := pull(t, s, k, 4); got[0] != 1 {
		t.Fatalf("value after failed updates: %v, want 1s", got)
	}
	if err := s.SetOptimizer(bg, optimizer.SGD(1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Push(k, fill(t, 1, 4)); err != nil {
		t.Fatal(err)
	}
	if got := pull(t, s, k, 4); got[0] != 0 {
		t.Fatalf("value after SGD(1) with gradient 1: %v, want 0s", got)
	}
}
