//go:build !js && !wasip1

package main_test

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

var (
	reactorOnce sync.Once
	reactorWasm []byte
	reactorErr  error
)

// instantiate builds the reactor once and instantiates it in a fresh
// runtime with the given compilation cache (nil: none).
func instantiate(t *testing.T, cache wazero.CompilationCache) *host {
	t.Helper()
	reactorOnce.Do(func() { reactorWasm, reactorErr = buildReactor() })
	if reactorErr != nil {
		t.Fatal(reactorErr)
	}
	ctx := context.Background()
	cfg := wazero.NewRuntimeConfig()
	if cache != nil {
		cfg = cfg.WithCompilationCache(cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	t.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	mod, err := rt.InstantiateWithConfig(ctx, reactorWasm, wazero.NewModuleConfig().WithStartFunctions("_initialize").WithSysWalltime().WithSysNanotime())
	if err != nil {
		t.Fatal(err)
	}
	return &host{ctx: ctx, mod: mod}
}

func (k *host) ints(v []int32) uint32 {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return k.put(b)
}

func (k *host) str(s string) (uint32, uint64) { return k.put([]byte(s)), uint64(len(s)) }

// lastError reads kv_last_error into a buffer of capacity bytes.
func (k *host) lastError(capacity uint32) (string, int) {
	buf := k.alloc(max(capacity, 1))
	defer k.free(buf)
	n := k.call("kv_last_error", uint64(buf), uint64(capacity))
	b, _ := k.mod.Memory().Read(buf, capacity)
	return strings.TrimRight(string(b), "\x00"), int(n)
}

// TestABIv2 drives what ABI version 2 added (issue 11, item 9): the version
// export, string keys, shapes, gradient compression, barrier, optimizer
// states saved and loaded, and kv_last_error's documented cut; values are
// checked against a native kvcore store doing the same.
func TestABIv2(t *testing.T) {
	k := instantiate(t, nil)
	if v := k.call("kv_abi_version"); v != 2 {
		t.Fatalf("kv_abi_version = %d, want 2", v)
	}
	h := k.create("device")
	p, n := k.str("w")
	id := k.check("kv_key_str", k.call("kv_key_str", uint64(h), uint64(p), n))
	if again := k.call("kv_key_str", uint64(h), uint64(p), n); again != id {
		t.Errorf("kv_key_str of the same name: %d then %d", id, again)
	}
	k.free(p)
	shape := k.ints([]int32{2, 3})
	init := k.putFloats([]float32{1, 2, 3, 4, 5, 6})
	k.check("kv_init_shape", k.call("kv_init_shape", uint64(h), uint64(id), uint64(init), uint64(shape), 2))
	k.free(shape)
	k.free(init)
	out := k.alloc(4 * 4)
	if nd := k.check("kv_shape", k.call("kv_shape", uint64(h), uint64(id), uint64(out), 4)); nd != 2 {
		t.Fatalf("kv_shape: ndim %d", nd)
	}
	b, _ := k.mod.Memory().Read(out, 8)
	if binary.LittleEndian.Uint32(b) != 2 || binary.LittleEndian.Uint32(b[4:]) != 3 {
		t.Errorf("kv_shape wrote %v", b)
	}
	k.free(out)

	// The same steps natively.
	ctx := context.Background()
	native, err := kvcore.Create(ctx, "device", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer native.Close()
	nk := kvcore.StrKey("w")
	a, _ := kvcore.FromSlice(kvcore.CPU(0), []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	if err := native.Init(ctx, nk, a); err != nil {
		t.Fatal(err)
	}
	step := func(grad []float32) {
		k.push(h, id, 1, grad)
		g, _ := kvcore.FromSlice(kvcore.CPU(0), grad, 2, 3)
		if err := native.Push(nk, g); err != nil {
			t.Fatal(err)
		}
	}
	compare := func(what string) {
		t.Helper()
		got := k.pull(h, id, 6)
		o, _ := kvcore.NewArray(kvcore.CPU(0), 2, 3)
		if err := native.Pull(nk, o); err != nil {
			t.Fatal(err)
		}
		want, err := o.Data(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-6 {
				t.Fatalf("%s: reactor %v, native %v", what, got, want)
			}
		}
		if k.err != nil {
			t.Fatal(k.err)
		}
	}

	// Compression: 2-bit with threshold 0.5 (residuals carry the rest).
	tp, tn := k.str("2bit")
	k.check("kv_set_compression", k.call("kv_set_compression", uint64(h), uint64(tp), tn, uint64(math.Float32bits(0.5))))
	k.free(tp)
	if err := native.SetGradientCompression(ctx, compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}); err != nil {
		t.Fatal(err)
	}
	step([]float32{0.7, -0.2, 0.3, -0.9, 0.1, 0.6})
	compare("after a 2-bit push")
	step([]float32{0.7, -0.2, 0.3, -0.9, 0.1, 0.6})
	compare("after a second 2-bit push (residuals)")

	// Adam, a step, states saved with the optimizer, loaded into a second store.
	spec := `{"name":"adam","learning_rate":0.01}`
	k.setOptimizer(h, spec)
	opt, err := optimizer.Parse([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	if err := native.SetOptimizer(ctx, opt); err != nil {
		t.Fatal(err)
	}
	step([]float32{1, 1, 1, 1, 1, 1})
	compare("after an Adam step")
	k.check("kv_barrier", k.call("kv_barrier", uint64(h)))
	size := k.check("kv_save_states", k.call("kv_save_states", uint64(h), 1, 0, 0))
	if size <= 0 {
		t.Fatalf("kv_save_states asked for %d bytes", size)
	}
	sb := k.alloc(uint32(size))
	if got := k.check("kv_save_states", k.call("kv_save_states", uint64(h), 1, uint64(sb), uint64(size))); got != size {
		t.Fatalf("kv_save_states: %d bytes, then %d", size, got)
	}
	h2 := k.create("device")
	p, n = k.str("w")
	id2 := k.check("kv_key_str", k.call("kv_key_str", uint64(h2), uint64(p), n))
	k.free(p)
	cur := k.putFloats(k.pull(h, id, 6))
	shape = k.ints([]int32{2, 3})
	k.check("kv_init_shape", k.call("kv_init_shape", uint64(h2), uint64(id2), uint64(cur), uint64(shape), 2))
	k.check("kv_load_states", k.call("kv_load_states", uint64(h2), uint64(sb), uint64(size)))
	k.free(sb)
	// Both stores take the same next step (the loaded store has Adam's
	// moments, and the optimizer itself from the dump).
	k.push(h2, id2, 1, []float32{0.5, 0.5, 0.5, 0.5, 0.5, 0.5})
	step([]float32{0.5, 0.5, 0.5, 0.5, 0.5, 0.5})
	got2 := k.pull(h2, id2, 6)
	compare("after the step on the first store")
	got1 := k.pull(h, id, 6)
	for i := range got1 {
		if got1[i] != got2[i] {
			t.Fatalf("a store loaded from saved states diverged: %v vs %v", got2, got1)
		}
	}

	// Mixed keys both ways, and kv_last_error's cut.
	ob := k.alloc(24)
	defer k.free(ob)
	if st := k.call("kv_pull", uint64(h), 7, uint64(ob), 6); st != -1 {
		t.Fatal("an int key that is no kv_key_str id was accepted on a string-key store")
	}
	msg, full := k.lastError(4096)
	if !strings.Contains(msg, "kv_key_str") || full != len(msg) {
		t.Errorf("kv_last_error: %q (%d)", msg, full)
	}
	h3 := k.create("local")
	k.init(h3, 1, []float32{1})
	name := "ключ-Ä"
	p, n = k.str(name)
	if st := k.call("kv_key_str", uint64(h3), uint64(p), n); st != -1 {
		t.Error("kv_key_str on a store with int keys was accepted")
	}
	k.free(p)
	whole, full := k.lastError(4096)
	if !strings.Contains(whole, name) || !strings.Contains(whole, "mixed") && !strings.Contains(whole, "int keys") {
		t.Errorf("kv_key_str on an int-key store: %q", whole)
	}
	for c := 1; c < full; c++ {
		cut, n := k.lastError(uint32(c))
		if n != full || len(cut) > c || !utf8.ValidString(cut) || !strings.HasPrefix(whole, cut) || len(cut) < c-3 {
			t.Fatalf("kv_last_error(cap %d) = %q, %d; want a whole-character prefix of %q and %d", c, cut, n, whole, full)
		}
	}
	if k.err != nil {
		t.Fatal(k.err)
	}
}

// TestInstantiateCache measures what the package doc promises: wazero
// compiles the reactor once, and a compilation cache makes the next
// instantiation of the same module cheap. The times are logged, not
// asserted (the machine is shared).
func TestInstantiateCache(t *testing.T) {
	dir := t.TempDir()
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	reactorOnce.Do(func() { reactorWasm, reactorErr = buildReactor() })
	if reactorErr != nil {
		t.Fatal(reactorErr)
	}
	t0 := time.Now()
	k := instantiate(t, cache)
	cold := time.Since(t0)
	if k.call("kv_abi_version") != 2 {
		t.Fatal("cold instance does not answer")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) == 0 {
		t.Fatal("the compilation cache directory is empty after the first instantiation")
	}
	// A new process would open the cache directory anew: so does this.
	cache2, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	k2 := instantiate(t, cache2)
	cached := time.Since(t0)
	if k2.call("kv_abi_version") != 2 {
		t.Fatal("cached instance does not answer")
	}
	t.Logf("instantiating the %.1f MB reactor in wazero: %v cold (compiling), %v from the compilation cache", float64(len(reactorWasm))/1e6, cold.Round(time.Millisecond), cached.Round(time.Millisecond))
}
