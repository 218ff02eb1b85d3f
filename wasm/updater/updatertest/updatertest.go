//go:build !js && !wasip1

// Package updatertest builds updater modules for tests: the Go examples
// of package wasm/updater (compiled from their source with GOOS=wasip1 by
// the test, never committed as binaries), a misbehaving Go module, and
// tiny hand-assembled modules that trap, loop or grow their memory.
package updatertest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// Modules that Build knows, by name: the package each is built from.
var packages = map[string]string{
	"mxtest":  "./wasm/updater/examples/mxtest",
	"fedprox": "./wasm/updater/examples/fedprox",
	"hostile": "./wasm/updater/internal/hostile",
}

var builds struct {
	sync.Mutex
	bins map[string][]byte
	errs map[string]error
}

// Root is the repository's root directory.
func Root() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("updatertest: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Build returns the module name ("mxtest", "fedprox", "hostile") built
// with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared -trimpath from its
// source; builds are shared by the tests of one process (and go's build
// cache makes later processes fast).
func Build(tb testing.TB, name string) []byte {
	tb.Helper()
	builds.Lock()
	defer builds.Unlock()
	if b, ok := builds.bins[name]; ok {
		return b
	}
	if err, ok := builds.errs[name]; ok {
		tb.Fatal(err)
	}
	if builds.bins == nil {
		builds.bins, builds.errs = map[string][]byte{}, map[string]error{}
	}
	start := time.Now()
	b, err := BuildPackage(packages[name])
	if err != nil {
		builds.errs[name] = err
		tb.Fatal(err)
	}
	if _, ok := tb.(*testing.T); ok {
		tb.Logf("built %s for wasip1 (%d bytes, sha256:%x) in %v", name, len(b), sha256.Sum256(b), time.Since(start).Round(time.Millisecond))
	}
	builds.bins[name] = b
	return b
}

// BuildPackage builds pkg (relative to the repository root) as an updater
// module and returns its bytes.
func BuildPackage(pkg string) ([]byte, error) { return BuildIn(Root(), pkg, nil) }

// BuildIn builds pkg (relative to root, the root of a copy of this
// module), with env added to the environment, as an updater module and
// returns its bytes.
func BuildIn(root, pkg string, env []string) ([]byte, error) {
	if pkg == "" {
		return nil, fmt.Errorf("updatertest: unknown module")
	}
	dir, err := os.MkdirTemp("", "webkv-updater-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "m.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	cmd.Env = append(cmd.Env, env...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("GOOS=wasip1 go build -buildmode=c-shared %s: %v\n%s", pkg, err, msg)
	}
	return os.ReadFile(out)
}

// CacheDir is a directory for wazero's compilation cache shared by the
// test processes of this machine (compiling a Go module takes seconds,
// and much longer under the race detector), like go's build cache.
func CacheDir(tb testing.TB) string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "webkv", "wazero-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// ---- hand-assembled modules ----

// Raw modules implement the ABI's required exports in a few bytes of
// WebAssembly: webkv_abi_version returns 1, webkv_alloc returns address
// 1024 (the memory has pages pages; one is enough for small keys) and
// webkv_update runs body with locals (the code section's encoding of its
// local declarations; nil: none), which must leave an i32 status. Their
// source is this file.
func raw(pages uint32, locals, update []byte, imports ...[2]string) []byte {
	var b []byte
	b = append(b, 0, 'a', 's', 'm', 1, 0, 0, 0)
	section := func(id byte, content []byte) {
		b = append(b, id)
		b = binary.AppendUvarint(b, uint64(len(content)))
		b = append(b, content...)
	}
	str := func(dst []byte, s string) []byte {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		return append(dst, s...)
	}
	// types: 0 () -> i32, 1 (i32) -> i32
	section(1, []byte{2, 0x60, 0, 1, 0x7f, 0x60, 1, 0x7f, 1, 0x7f})
	if len(imports) > 0 {
		c := binary.AppendUvarint(nil, uint64(len(imports)))
		for _, im := range imports {
			c = str(c, im[0])
			c = str(c, im[1])
			c = append(c, 0, 0) // a function of type 0: () -> i32
		}
		section(2, c)
	}
	ni := byte(len(imports))
	section(3, []byte{3, 0, 1, 1})                                   // abi, alloc, update
	section(5, binary.AppendUvarint([]byte{1, 0x00}, uint64(pages))) // one memory
	var e []byte
	e = binary.AppendUvarint(e, 4)
	e = append(str(e, "webkv_abi_version"), 0, ni+0)
	e = append(str(e, "webkv_alloc"), 0, ni+1)
	e = append(str(e, "webkv_update"), 0, ni+2)
	e = append(str(e, "memory"), 2, 0)
	section(7, e)
	code := func(locals []byte, body ...byte) []byte {
		if locals == nil {
			locals = []byte{0}
		}
		f := append(slices.Clone(locals), body...)
		f = append(f, 0x0b) // end
		return append(binary.AppendUvarint(nil, uint64(len(f))), f...)
	}
	var c []byte
	c = append(c, 3)
	c = append(c, code(nil, 0x41, 0x01)...)       // i32.const 1
	c = append(c, code(nil, 0x41, 0x80, 0x08)...) // i32.const 1024
	c = append(c, code(locals, update...)...)
	section(10, c)
	return b
}

// RawTrap's update executes unreachable: a trap.
func RawTrap() []byte { return raw(1, nil, []byte{0x00}) }

// RawLoop's update is an empty infinite loop.
func RawLoop() []byte {
	return raw(1, nil, []byte{0x03, 0x40, 0x0c, 0x00, 0x0b, 0x00}) // loop br 0 end; unreachable
}

// RawGrow's update grows the memory 16 pages at a time until memory.grow
// fails, then traps.
func RawGrow() []byte {
	// loop: i32.const 16; memory.grow 0; i32.const -1; i32.ne; br_if 0; end; unreachable
	return raw(1, nil, []byte{0x03, 0x40, 0x41, 0x10, 0x40, 0x00, 0x41, 0x7f, 0x47, 0x0d, 0x00, 0x0b, 0x00})
}

// RawStatus's update returns status st (0 to 63) without touching stored.
func RawStatus(st byte) []byte { return raw(1, nil, []byte{0x41, st & 0x3f}) }

// RawImport is RawStatus(0) importing module.name as a () -> i32 function.
func RawImport(module, name string) []byte {
	return raw(1, nil, []byte{0x41, 0}, [2]string{module, name})
}

// RawAdd is a complete updater in hand-written WebAssembly: stored +=
// recv, no states. Its memory (pages 64 KiB pages) must hold the host's
// arena from address 1024: about 8 bytes per element.
func RawAdd(pages uint32) []byte {
	const (
		call, n, r, s, i = 0, 1, 2, 3, 4 // locals: the parameter, then 4 i32
		get, set         = 0x20, 0x21
	)
	load := func(local, off byte) []byte { return []byte{get, local, 0x28, 0x02, off} } // i32.load align=4
	var body []byte
	body = append(body, load(call, 20)...)     // n
	body = append(body, 0x41, 2, 0x74, set, n) // n <<= 2 (bytes)
	body = append(body, load(call, 32)...)
	body = append(body, set, r)
	body = append(body, load(call, 36)...)
	body = append(body, set, s)
	body = append(body,
		0x02, 0x40, // block
		0x03, 0x40, // loop
		get, i, get, n, 0x4f, 0x0d, 0x01, // i >= n: br_if 1 (out)
		get, s, get, i, 0x6a, // address stored+i
		get, s, get, i, 0x6a, 0x2a, 0x02, 0x00, // f32.load stored[i]
		get, r, get, i, 0x6a, 0x2a, 0x02, 0x00, // f32.load recv[i]
		0x92,             // f32.add
		0x38, 0x02, 0x00, // f32.store
		get, i, 0x41, 4, 0x6a, set, i, // i += 4
		0x0c, 0x00, // br 0
		0x0b, 0x0b, // end loop, end block
		0x41, 0x00, // status 0
	)
	return raw(pages, []byte{1, 4, 0x7f}, body)
}
