//go:build !js && !wasip1

package tests

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// This file holds the helpers that build webkv's GOOS=wasip1 reactors and
// run them in wazero (compiled mode, as a library), and the tests of the
// wasm/wasip1 ABI.

// wasmBuilds caches, per package, the reactor built for this test process.
var wasmBuilds struct {
	sync.Mutex
	dir  string
	bins map[string][]byte
	errs map[string]error
}

// buildReactor builds pkg (relative to the repository root) with GOOS=wasip1
// GOARCH=wasm -buildmode=c-shared and returns the module's bytes; builds are
// shared by the tests and benchmarks of one process.
func buildReactor(tb testing.TB, pkg string) []byte {
	tb.Helper()
	wasmBuilds.Lock()
	defer wasmBuilds.Unlock()
	if b, ok := wasmBuilds.bins[pkg]; ok {
		return b
	}
	if err, ok := wasmBuilds.errs[pkg]; ok {
		tb.Fatal(err)
	}
	if wasmBuilds.bins == nil {
		wasmBuilds.bins, wasmBuilds.errs = map[string][]byte{}, map[string]error{}
	}
	start := time.Now()
	b, err := goBuildWasip1(pkg)
	if err != nil {
		wasmBuilds.errs[pkg] = err
		tb.Fatal(err)
	}
	logTest(tb, "built %s for wasip1 (%d bytes) in %v", pkg, len(b), time.Since(start).Round(time.Millisecond))
	wasmBuilds.bins[pkg] = b
	return b
}

func goBuildWasip1(pkg string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "webkv-wasm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "m.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=-buildvcs=false")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("GOOS=wasip1 go build -buildmode=c-shared %s: %v\n%s", pkg, err, msg)
	}
	return os.ReadFile(out)
}

// logTest logs to tests only: a benchmark's log would be printed between
// its result lines.
func logTest(tb testing.TB, format string, args ...any) {
	if t, ok := tb.(*testing.T); ok {
		t.Helper()
		t.Logf(format, args...)
	}
}

// wazeroCache is a compilation cache kept on disk (under the user cache
// dir, as wazero's CLI and go_wasip1_wasm_exec do), so a module is compiled
// to machine code once, not once per test run: compiling a 4 MB Go module
// takes wazero's compiler seconds, and close to a minute when the test runs
// with -race. wazero keys entries by module hash and its own version; each
// change to kvcore makes a new entry (about 15 MB), so entries not written
// for a week are removed.
var wazeroCache = sync.OnceValue(func() wazero.CompilationCache {
	if dir, err := os.UserCacheDir(); err == nil {
		dir = filepath.Join(dir, "webkv", "wazero")
		old := time.Now().Add(-7 * 24 * time.Hour)
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil && fi.ModTime().Before(old) {
					os.Remove(path)
				}
			}
			return nil
		})
		if c, err := wazero.NewCompilationCacheWithDir(dir); err == nil {
			return c
		}
	}
	return wazero.NewCompilationCache()
})

// wasmModule is one instance of a reactor in its own wazero runtime.
type wasmModule struct {
	tb  testing.TB
	ctx context.Context
	rt  wazero.Runtime
	mod api.Module
	fns map[string]api.Function
}

// instantiate compiles bin (cached) and instantiates it with WASI, calling
// the reactor's _initialize.
func instantiate(tb testing.TB, bin []byte) *wasmModule {
	tb.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCompilationCache(wazeroCache()))
	tb.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	start := time.Now()
	cm, err := rt.CompileModule(ctx, bin)
	if err != nil {
		tb.Fatalf("wazero compile: %v", err)
	}
	compiled := time.Now()
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize").
		WithStdout(os.Stdout).WithStderr(os.Stderr).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(rand.Reader)
	mod, err := rt.InstantiateModule(ctx, cm, cfg)
	if err != nil {
		tb.Fatalf("wazero instantiate: %v", err)
	}
	logTest(tb, "wazero: compiled (or loaded from cache) in %v, instantiated in %v",
		compiled.Sub(start).Round(time.Millisecond), time.Since(compiled).Round(time.Millisecond))
	return &wasmModule{tb: tb, ctx: ctx, rt: rt, mod: mod, fns: map[string]api.Function{}}
}

// call calls the export name; a trap fails the test.
func (m *wasmModule) call(name string, args ...uint64) uint64 {
	m.tb.Helper()
	f := m.fns[name]
	if f == nil {
		if f = m.mod.ExportedFunction(name); f == nil {
			m.tb.Fatalf("module has no export %q", name)
		}
		m.fns[name] = f
	}
	res, err := f.Call(m.ctx, args...)
	if err != nil {
		m.tb.Fatalf("%s: trap: %v", name, err)
	}
	if len(res) == 0 {
		return 0
	}
	return res[0]
}

// kv is a test's view of the wasm/wasip1 ABI.
type kv struct {
	*wasmModule
	scratch     uint32 // block from kv_alloc used to pass data
	scratchSize uint32
}

// with returns a view of the same module that reports to tb (a subtest).
func (k *kv) with(tb testing.TB) *kv {
	m := *k.wasmModule
	m.tb = tb
	c := *k
	c.wasmModule = &m
	return &c
}

func newKV(tb testing.TB) *kv {
	return &kv{wasmModule: instantiate(tb, buildReactor(tb, "./wasm/wasip1"))}
}

// rc calls a kv_* export returning i32 status or handle.
func (k *kv) rc(name string, args ...uint64) int32 {
	k.tb.Helper()
	return int32(uint32(k.call(name, args...)))
}

func (k *kv) lastError() string {
	k.tb.Helper()
	n := uint32(k.call("kv_last_error", 0, 0))
	if n == 0 {
		return ""
	}
	buf := k.alloc(n)
	defer k.rc("kv_free", uint64(buf))
	k.call("kv_last_error", uint64(buf), uint64(n))
	b, ok := k.mod.Memory().Read(buf, n)
	if !ok {
		k.tb.Fatalf("kv_last_error: cannot read %d bytes at %#x", n, buf)
	}
	return string(b)
}

// ok fails the test with the module's last error if status is negative.
func (k *kv) ok(what string, status int32) int32 {
	k.tb.Helper()
	if status < 0 {
		k.tb.Fatalf("%s: %s", what, k.lastError())
	}
	return status
}

func (k *kv) alloc(size uint32) uint32 {
	k.tb.Helper()
	p := uint32(k.call("kv_alloc", uint64(size)))
	if p == 0 {
		k.tb.Fatalf("kv_alloc(%d): %s", size, k.lastError())
	}
	return p
}

// bytes puts b into the scratch block and returns its address.
func (k *kv) bytes(b []byte) uint32 {
	k.tb.Helper()
	if uint32(len(b)) > k.scratchSize {
		if k.scratch != 0 {
			k.ok("kv_free", k.rc("kv_free", uint64(k.scratch)))
		}
		k.scratchSize = max(uint32(len(b)), 1<<16)
		k.scratch = k.alloc(k.scratchSize)
	}
	if !k.mod.Memory().Write(k.scratch, b) {
		k.tb.Fatalf("memory write of %d bytes at %#x failed", len(b), k.scratch)
	}
	return k.scratch
}

func (k *kv) floats(vs []float32) uint32 {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return k.bytes(b)
}

func (k *kv) readFloats(p uint32, n int) []float32 {
	k.tb.Helper()
	b, ok := k.mod.Memory().Read(p, uint32(4*n))
	if !ok {
		k.tb.Fatalf("memory read of %d floats at %#x failed", n, p)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func (k *kv) create(typ string) int32 {
	k.tb.Helper()
	return k.rc("kv_create", uint64(k.bytes([]byte(typ))), uint64(len(typ)))
}

// testSeed returns WEBKV_SEED if set, else a random seed; it is logged so a
// failure can be replayed.
func testSeed(tb testing.TB) uint64 {
	tb.Helper()
	var seed uint64
	if s := os.Getenv("WEBKV_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			tb.Fatalf("WEBKV_SEED=%q: %v", s, err)
		}
		seed = v
	} else {
		var b [8]byte
		rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	tb.Logf("seed %d (rerun with WEBKV_SEED=%d)", seed, seed)
	return seed
}

// closeTo compares float32 results of the same kernels built for two
// targets: they should agree to the last bits; the tolerance only allows
// for math library differences between amd64 assembly and portable Go.
func closeTo(got, want []float32) (int, bool) {
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if d > 1e-5*math.Max(1, math.Abs(float64(want[i]))) || math.IsNaN(float64(got[i])) != math.IsNaN(float64(want[i])) {
			return i, false
		}
	}
	return 0, true
}

func wantErr(t *testing.T, k *kv, what string, status int32, substrs ...string) {
	t.Helper()
	if status >= 0 {
		t.Errorf("%s: returned %d, want an error", what, status)
		return
	}
	msg := k.lastError()
	for _, s := range substrs {
		if !strings.Contains(msg, s) {
			t.Errorf("%s: error %q does not mention %q", what, msg, s)
		}
	}
}
