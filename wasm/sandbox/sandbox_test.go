//go:build !js && !wasip1

package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/wasm/sandbox"
	"github.com/webkv/webkv/wasm/updater/updatertest"
)

var bg = context.Background()

func newHost(t testing.TB, o sandbox.Options) *sandbox.Host {
	t.Helper()
	o.CacheDir = updatertest.CacheDir(t)
	h, err := sandbox.New(&o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func load(t testing.TB, h *sandbox.Host, code []byte, config string) updater.Instance {
	t.Helper()
	in, err := h.Load(bg, &updater.Module{Code: code, Config: []byte(config)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

func seed(t testing.TB) uint64 {
	s := rand.Uint64()
	t.Logf("seed %d", s)
	return s
}

func randoms(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// The MXNet Test optimizer module matches its definition (weight +=
// rescale_grad*grad, state = weight) bit for bit on random inputs.
func TestMXTestModule(t *testing.T) {
	h := newHost(t, sandbox.Options{})
	in := load(t, h, updatertest.Build(t, "mxtest"), "rescale_grad=0.25")
	r := rand.New(rand.NewPCG(seed(t), 1))
	n := 1000
	w := randoms(r, n)
	want := slices.Clone(w)
	var st updater.State
	for step := 1; step <= 3; step++ {
		g := randoms(r, n)
		c := &updater.Call{Key: 7, Name: "7", Total: n, Workers: 2, Recv: g, Stored: w}
		if err := updater.Step(bg, in, c, &st, nil); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			want[i] += float32(g[i] * 0.25)
		}
		if !slices.Equal(w, want) {
			t.Fatalf("step %d: weights differ from weight += 0.25*grad", step)
		}
		if st.T != step || len(st.States) != 1 || !slices.Equal(st.States[0], w) {
			t.Fatalf("step %d: t = %d, %d states; want t %d and one state equal to the weight", step, st.T, len(st.States), step)
		}
	}
}

// fedprox is the reference of examples/fedprox, with the same float32
// roundings.
func fedprox(w, recv, m, anchor []float32, workers, t int, lr, mu, mom float32, period int) {
	inv := float32(1) / float32(workers)
	for i := range w {
		g := float32(inv*recv[i]) + float32(mu*float32(w[i]-anchor[i]))
		m[i] = float32(1*g) + float32(mom*m[i])
		w[i] += float32(-lr * m[i])
	}
	if period > 0 && t%period == 0 {
		copy(anchor, w)
	}
}

// The FedProx-style module: states created and initialized (the anchor is
// the initial weight), then every step matches the Go reference exactly.
func TestFedProxModule(t *testing.T) {
	h := newHost(t, sandbox.Options{})
	in := load(t, h, updatertest.Build(t, "fedprox"), "lr=0.05,mu=0.1,momentum=0.8,period=3")
	r := rand.New(rand.NewPCG(seed(t), 2))
	n := 513
	w := randoms(r, n)
	ref, m, anchor := slices.Clone(w), make([]float32, n), slices.Clone(w)
	var st updater.State
	for step := 1; step <= 7; step++ {
		g := randoms(r, n)
		c := &updater.Call{Key: 1, Name: "1", Total: n, Workers: 3, Recv: g, Stored: w}
		if err := updater.Step(bg, in, c, &st, nil); err != nil {
			t.Fatal(err)
		}
		fedprox(ref, g, m, anchor, 3, step, 0.05, 0.1, 0.8, 3)
		if !slices.Equal(w, ref) || !slices.Equal(st.States[0], m) || !slices.Equal(st.States[1], anchor) {
			t.Fatalf("step %d: weights or states differ from the reference", step)
		}
	}
	// A bad config is refused at load.
	_, err := h.Load(bg, &updater.Module{Code: updatertest.Build(t, "fedprox"), Config: []byte("lr=0.1,nu=2")})
	if !errors.Is(err, updater.ErrBadModule) || !strings.Contains(err.Error(), `unknown parameter "nu"`) {
		t.Fatalf("config with an unknown parameter: err = %v", err)
	}
}

// Each misbehaving module fails its own instance with an error that says
// what happened, within the budget, and leaves the stored value as it was;
// a later call returns the same error; another instance on the same host
// (and another instance of the same module) runs on.
func TestLimits(t *testing.T) {
	budget := 2 * time.Second
	h := newHost(t, sandbox.Options{CallBudget: budget, MemoryPages: 128})
	honest := load(t, h, updatertest.Build(t, "mxtest"), "")
	hostile := updatertest.Build(t, "hostile")
	cases := []struct {
		name   string
		code   []byte
		config string
		want   []string
	}{
		{"wasm unreachable", updatertest.RawTrap(), "", []string{"trapped: wasm error: unreachable"}},
		{"wasm loop", updatertest.RawLoop(), "", []string{"ran past its time budget of 2s"}},
		{"wasm memory.grow", updatertest.RawGrow(), "", []string{"of its 128-page limit"}},
		{"wasm fatal status", updatertest.RawStatus(9), "", []string{"status 9"}},
		{"go loop", hostile, "loop", []string{"ran past its time budget of 2s"}},
		{"go out of memory", hostile, "grow", []string{"out of memory", "of its 128-page limit"}},
		{"go panic", hostile, "panic", []string{"panic: runtime error: invalid memory address or nil pointer dereference"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := load(t, h, tc.code, tc.config)
			stored := []float32{1, 2, 3}
			c := &updater.Call{Key: 4, Name: "4", Total: 3, Workers: 1, Recv: []float32{1, 1, 1}, Stored: stored}
			err := in.Update(bg, c)
			if !errors.Is(err, updater.ErrFailed) {
				t.Fatalf("err = %v, want updater.ErrFailed", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), in.Hash().String()) || !strings.Contains(err.Error(), "key 4") {
				t.Errorf("error %q does not name the module and the key", err)
			}
			t.Log(err)
			if !slices.Equal(stored, []float32{1, 2, 3}) {
				t.Errorf("stored changed to %v by a failed update", stored)
			}
			if err2 := in.Update(bg, c); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("second call: %v, want the first failure again", err2)
			}
			// Other instances are untouched.
			w := []float32{1, 1}
			if err := honest.Update(bg, &updater.Call{Key: 1, Name: "1", Total: 2, Workers: 1, Recv: []float32{2, 3}, Stored: w, States: [][]float32{{0, 0}}}); err != nil {
				t.Fatalf("honest instance: %v", err)
			}
			if !slices.Equal(w, []float32{3, 4}) {
				t.Fatalf("honest instance updated to %v, want [3 4]", w)
			}
			if tc.config != "" {
				again := load(t, h, tc.code, "ok")
				w := []float32{1}
				if err := again.Update(bg, &updater.Call{Key: 1, Name: "1", Total: 1, Workers: 1, Recv: []float32{1}, Stored: w}); err != nil || w[0] != 2 {
					t.Fatalf("a new instance of the same module: %v, stored %v", err, w)
				}
			}
		})
	}
	t.Run("refuse", func(t *testing.T) {
		in := load(t, h, hostile, "refuse")
		for range 2 {
			err := in.Update(bg, &updater.Call{Key: 4, Name: "4", Total: 1, Workers: 1, Recv: []float32{1}, Stored: []float32{1}})
			if err == nil || errors.Is(err, updater.ErrFailed) || !strings.Contains(err.Error(), "refusing key 4 on purpose") {
				t.Fatalf("err = %v, want the module's refusal (and the module still loaded)", err)
			}
		}
	})
	// The host's clock is fake: an hour's sleep returns at once, well
	// within the budget (a real sleep would run past it).
	t.Run("sleep", func(t *testing.T) {
		in := load(t, h, hostile, "sleep")
		w := []float32{1}
		if err := in.Update(bg, &updater.Call{Key: 4, Name: "4", Total: 1, Workers: 1, Recv: []float32{1}, Stored: w}); err != nil || w[0] != 2 {
			t.Fatalf("sleep: %v, stored %v", err, w)
		}
	})
}

// A canceled context stops a call as the budget does, and says so.
func TestCancel(t *testing.T) {
	h := newHost(t, sandbox.Options{CallBudget: time.Hour})
	in := load(t, h, updatertest.RawLoop(), "")
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error)
	go func() {
		done <- in.Update(ctx, &updater.Call{Key: 1, Name: "1", Total: 1, Workers: 1, Recv: []float32{1}, Stored: []float32{1}})
	}()
	cancel()
	err := <-done
	if !errors.Is(err, updater.ErrFailed) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrFailed and context.Canceled", err)
	}
}

// What a host refuses to load, and why.
func TestPolicy(t *testing.T) {
	mx := updatertest.Build(t, "mxtest")
	h := newHost(t, sandbox.Options{})
	cases := []struct {
		name   string
		h      *sandbox.Host
		code   []byte
		config string
		is     error
		want   string
	}{
		{"refuse", newHost(t, sandbox.Options{Refuse: true}), mx, "", updater.ErrRefused, "runs no custom updater modules"},
		{"not allowed", newHost(t, sandbox.Options{Allow: []updater.Hash{(&updater.Module{Code: updatertest.RawTrap()}).Hash()}}), mx, "", updater.ErrRefused, "not on the allow-list"},
		{"too big", newHost(t, sandbox.Options{MaxModuleBytes: 1 << 20}), mx, "", updater.ErrBadModule, "above the limit of 1048576"},
		{"not wasm", h, []byte("\x00asm\x01\x00\x00\x00garbage"), "", updater.ErrBadModule, ""},
		{"empty module", h, []byte("\x00asm\x01\x00\x00\x00"), "", updater.ErrBadModule, "no export webkv_abi_version"},
		{"foreign import", h, updatertest.RawImport("env", "now"), "", updater.ErrBadModule, "imports env.now"},
		{"bad WASI signature", h, updatertest.RawImport("wasi_snapshot_preview1", "random_get"), "", updater.ErrBadModule, "random_get with signature () -> i32"},
		{"config without configure", h, updatertest.RawStatus(0), "x=1", updater.ErrBadModule, "takes no config"},
		{"config refused", h, mx, "rescale_grad=fast", updater.ErrBadModule, `"fast" is not a number`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.h.Load(bg, &updater.Module{Code: tc.code, Config: []byte(tc.config)})
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.is, tc.want)
			}
		})
	}
	// An allow-listed module loads; an unknown WASI function is there
	// but grants nothing.
	allow := newHost(t, sandbox.Options{Allow: []updater.Hash{(&updater.Module{Code: mx}).Hash()}})
	load(t, allow, mx, "")
	load(t, h, updatertest.RawImport("wasi_snapshot_preview1", "sched_yield_x"), "")
}

// Many instances of one module share its compiled code; Close unloads
// every instance still open.
func TestManyInstancesAndClose(t *testing.T) {
	h, err := sandbox.New(&sandbox.Options{CacheDir: updatertest.CacheDir(t), MaxCompiled: 1})
	if err != nil {
		t.Fatal(err)
	}
	code := updatertest.Build(t, "mxtest")
	var ins []updater.Instance
	for i := range 4 {
		in, err := h.Load(bg, &updater.Module{Code: code, Config: []byte(fmt.Sprintf("rescale_grad=%d", i))})
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, in)
	}
	for i, in := range ins {
		w := []float32{1}
		if err := in.Update(bg, &updater.Call{Key: 1, Name: "1", Total: 1, Workers: 1, Recv: []float32{1}, Stored: w, States: [][]float32{{0}}}); err != nil || w[0] != float32(1+i) {
			t.Fatalf("instance %d: %v, stored %v", i, err, w)
		}
	}
	ins[0].Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for i, in := range ins {
		if err := in.Update(bg, &updater.Call{Key: 1, Name: "1", Total: 1, Recv: []float32{1}, Stored: []float32{1}, States: [][]float32{{0}}}); !errors.Is(err, updater.ErrClosed) {
			t.Fatalf("instance %d after the host closed: %v", i, err)
		}
	}
	if _, err := h.Load(bg, &updater.Module{Code: code}); !errors.Is(err, updater.ErrClosed) {
		t.Fatalf("load after Close: %v", err)
	}
}
