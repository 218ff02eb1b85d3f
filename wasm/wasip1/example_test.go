//go:build !js && !wasip1

package main_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"math"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Example is a Go host of the reactor in wazero: it builds webkv.wasm,
// instantiates it with WASI, and drives a "local" store through the kv_*
// exports — init a key, push the values of two devices (summed), pull,
// set an SGD optimizer and push a gradient.
//
// wazero compiles the 4 MB module to machine code in seconds; a compilation
// cache on disk (wazero.NewCompilationCacheWithDir) makes every later
// instantiation of the same module take milliseconds, so a host should
// always keep one.
func Example() {
	ctx := context.Background()
	wasm, err := buildReactor()
	if err != nil {
		log.Fatal(err)
	}

	cacheDir, err := os.UserCacheDir()
	if err != nil {
		cacheDir = os.TempDir()
	}
	cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(cacheDir, "webkv", "wazero"))
	if err != nil {
		log.Fatal(err)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache))
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().
		WithStartFunctions("_initialize"). // a reactor: initialize, then call exports
		WithSysWalltime().WithSysNanotime())
	if err != nil {
		log.Fatal(err)
	}
	kv := &host{ctx: ctx, mod: mod}

	h := kv.create("local")
	kv.init(h, 0, []float32{1, 2, 3})
	kv.push(h, 0, 2, []float32{10, 20, 30, 1, 1, 1}) // two devices' values, summed
	fmt.Println("after push:", kv.pull(h, 0, 3))
	kv.setOptimizer(h, `{"name":"sgd","learning_rate":0.5}`)
	kv.push(h, 0, 1, []float32{2, 2, 2}) // a gradient: w -= 0.5 * g
	fmt.Println("after an SGD step:", kv.pull(h, 0, 3))
	kv.check("kv_close", kv.call("kv_close", uint64(h)))
	if err := kv.err; err != nil {
		log.Fatal(err)
	}
	// Output:
	// after push: [11 21 31]
	// after an SGD step: [10 20 30]
}

// buildReactor builds this package as a WASI reactor:
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
func buildReactor() ([]byte, error) {
	dir, err := os.MkdirTemp("", "webkv-wasip1-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "webkv.wasm")
	cmd := exec.Command("go", "build", "-buildvcs=false", "-buildmode=c-shared", "-o", out, ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the reactor: %v\n%s", err, msg)
	}
	return os.ReadFile(out)
}

// host wraps the ABI of the package doc: memory from kv_alloc, -1 and
// kv_last_error on failure. The first error sticks in err.
type host struct {
	ctx context.Context
	mod api.Module
	err error
}

func (k *host) call(name string, args ...uint64) int32 {
	if k.err != nil {
		return -1
	}
	res, err := k.mod.ExportedFunction(name).Call(k.ctx, args...)
	if err != nil {
		k.err = fmt.Errorf("%s: %w", name, err)
		return -1
	}
	return int32(uint32(res[0]))
}

// check records kv_last_error's message when status is -1.
func (k *host) check(what string, status int32) int32 {
	if status >= 0 || k.err != nil {
		return status
	}
	n := k.call("kv_last_error", 0, 0) // the message's length
	buf := k.alloc(uint32(n))
	k.call("kv_last_error", uint64(buf), uint64(n))
	msg, ok := k.mod.Memory().Read(buf, uint32(n))
	if !ok {
		msg = []byte("(kv_last_error's message is out of memory bounds)")
	}
	k.err = fmt.Errorf("%s: %s", what, msg)
	return status
}

func (k *host) alloc(size uint32) uint32 {
	p := uint32(k.call("kv_alloc", uint64(size)))
	if p == 0 && k.err == nil {
		k.err = errors.New("kv_alloc failed")
	}
	return p
}

// put copies b into a new block of module memory; the caller frees it.
func (k *host) put(b []byte) uint32 {
	p := k.alloc(uint32(max(len(b), 1)))
	if k.err == nil && !k.mod.Memory().Write(p, b) {
		k.err = fmt.Errorf("writing %d bytes at %#x", len(b), p)
	}
	return p
}

func (k *host) putFloats(v []float32) uint32 {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return k.put(b)
}

func (k *host) free(p uint32) { k.check("kv_free", k.call("kv_free", uint64(p))) }

func (k *host) create(typ string) int32 {
	p := k.put([]byte(typ))
	defer k.free(p)
	return k.check("kv_create", k.call("kv_create", uint64(p), uint64(len(typ))))
}

func (k *host) init(h, key int32, v []float32) {
	p := k.putFloats(v)
	defer k.free(p)
	k.check("kv_init", k.call("kv_init", uint64(h), uint64(key), uint64(p), uint64(len(v))))
}

func (k *host) push(h, key int32, devices int, v []float32) {
	p := k.putFloats(v)
	defer k.free(p) // kv_push copied the data before it returned
	k.check("kv_push", k.call("kv_push", uint64(h), uint64(key), uint64(p), uint64(len(v)/devices), uint64(devices)))
}

func (k *host) pull(h, key int32, n int) []float32 {
	p := k.alloc(uint32(4 * n))
	defer k.free(p)
	k.check("kv_pull", k.call("kv_pull", uint64(h), uint64(key), uint64(p), uint64(n)))
	out := make([]float32, n)
	b, ok := k.mod.Memory().Read(p, uint32(4*n))
	if !ok {
		if k.err == nil {
			k.err = fmt.Errorf("reading %d floats at %#x", n, p)
		}
		return out
	}
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func (k *host) setOptimizer(h int32, spec string) {
	p := k.put([]byte(spec))
	defer k.free(p)
	k.check("kv_set_optimizer", k.call("kv_set_optimizer", uint64(h), uint64(p), uint64(len(spec))))
}
