//go:build wasip1

// Command wasip1 is webkv's WASI reactor: kvcore behind a small C-like ABI
// of //go:wasmexport functions, for wazero and any other WASI host.
//
// Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o webkv.wasm ./wasm/wasip1
//
// A host instantiates the module with WASI, calls _initialize once (wazero:
// ModuleConfig.WithStartFunctions("_initialize")), and then the kv_*
// exports below. Calls must not overlap (a wasm instance is single-threaded).
//
// # Conventions
//
// Memory: the host gets memory with kv_alloc(size) and gives it back with
// kv_free(ptr). Every pointer passed to a kv_* call must lie inside a block
// from kv_alloc (the call checks, so a wrong pointer is an error, not a
// corrupted heap). float32 data is little-endian, 4-byte aligned, n elements
// back to back.
//
// Results: functions returning int32 return 0 (or a handle > 0) on success
// and -1 on error; kv_last_error then gives the message, which names the
// call, the key and what was wrong.
//
// Values: keys are ints; every value is a 1-D float32 array of n elements,
// so a key's n is fixed by its kv_init.
//
// # Functions
//
//	kv_alloc(size u32) -> ptr u32              0 on error; size <= 1 GiB
//	kv_free(ptr u32) -> i32
//	kv_create(name ptr, len u32) -> handle i32 "local", "device", ...
//	kv_close(h i32) -> i32
//	kv_init(h, key i32, data ptr, n u32) -> i32
//	kv_push(h, key i32, data ptr, n, ndev u32) -> i32
//	kv_pull(h, key i32, out ptr, n u32) -> i32
//	kv_pushpull(h, key i32, data ptr, n, ndev u32, out ptr) -> i32
//	kv_set_optimizer(h i32, json ptr, len u32) -> i32
//	kv_wait(h i32) -> i32
//	kv_last_error(buf ptr, cap u32) -> len u32
//
// kv_push queues the sum of ndev arrays (data holds ndev*n floats, one array
// per simulated device, as MXNet's push of a list of values) and returns:
// its data is copied before it returns, so the host may reuse the block at
// once. An error found while the push runs is returned by the next kv_wait.
// kv_pull and kv_pushpull return when the value is in out.
//
// "device" stores run on kvcore's CPU backend here (there is no GPU in
// WASI); the dist types need a relay transport, which this reactor does not
// have, and fail at kv_create with kvcore's error.
package main

//lint:file-ignore U1000 the kv_* functions are exported to the host by //go:wasmexport, which staticcheck does not follow.

import (
	"context"
	"fmt"
	"math"
	"sort"
	"unsafe"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
)

func main() {}

// maxBlock bounds one kv_alloc: wasm32 memory is 4 GiB in all, and a Go
// allocation that cannot be met is a fatal error, not one we can return.
const maxBlock = 1 << 30

// blocks holds the memory given out by kv_alloc, by address, so the Go GC
// keeps it alive while the host uses it, and so pointers can be checked.
var blocks = map[uint32][]byte{}

// sortedBases caches the sorted keys of blocks for lookups; nil when stale.
var sortedBases []uint32

type handle struct {
	s *kvcore.Store
	// in[key] are the arrays a push copies host data into, reused across
	// pushes (a push reads them asynchronously; CopyFrom waits for it).
	in map[int][]*kvcore.Array
	// out[key] is where a pull lands before it is copied to the host.
	out map[int]*kvcore.Array
}

var (
	stores  = map[int32]*handle{}
	nextH   int32
	lastErr []byte
)

func fail(err error) int32 {
	lastErr = []byte(err.Error())
	return -1
}

func addr(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

// mem returns the size bytes at ptr, which must lie inside one block from
// kv_alloc.
func mem(what string, ptr, size uint32) ([]byte, error) {
	if ptr == 0 {
		return nil, fmt.Errorf("%s: null pointer", what)
	}
	if sortedBases == nil {
		sortedBases = make([]uint32, 0, len(blocks))
		for b := range blocks {
			sortedBases = append(sortedBases, b)
		}
		sort.Slice(sortedBases, func(i, j int) bool { return sortedBases[i] < sortedBases[j] })
	}
	i := sort.Search(len(sortedBases), func(i int) bool { return sortedBases[i] > ptr }) - 1
	if i >= 0 {
		base := sortedBases[i]
		b := blocks[base]
		off := uint64(ptr - base)
		if off+uint64(size) <= uint64(len(b)) {
			return b[off : off+uint64(size)], nil
		}
	}
	return nil, fmt.Errorf("%s: %d bytes at %#x are not inside a block from kv_alloc", what, size, ptr)
}

// floats returns n float32s at ptr.
func floats(what string, ptr, n uint32) ([]float32, error) {
	if n == 0 {
		return nil, fmt.Errorf("%s: n is 0", what)
	}
	if uint64(n)*4 > math.MaxUint32 {
		return nil, fmt.Errorf("%s: n = %d floats do not fit in wasm memory", what, n)
	}
	if ptr%4 != 0 {
		return nil, fmt.Errorf("%s: pointer %#x is not 4-byte aligned", what, ptr)
	}
	b, err := mem(what, ptr, n*4)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), n), nil
}

func store(call string, h int32) (*handle, error) {
	st := stores[h]
	if st == nil {
		return nil, fmt.Errorf("%s: no store with handle %d", call, h)
	}
	return st, nil
}

//go:wasmexport kv_alloc
func kvAlloc(size uint32) uint32 {
	if size == 0 || size > maxBlock {
		fail(fmt.Errorf("kv_alloc: size %d, want 1 to %d bytes", size, maxBlock))
		return 0
	}
	b := make([]byte, size)
	p := addr(b)
	blocks[p] = b
	sortedBases = nil
	return p
}

//go:wasmexport kv_free
func kvFree(ptr uint32) int32 {
	if _, ok := blocks[ptr]; !ok {
		return fail(fmt.Errorf("kv_free: %#x is not a block from kv_alloc", ptr))
	}
	delete(blocks, ptr)
	sortedBases = nil
	return 0
}

//go:wasmexport kv_last_error
func kvLastError(buf, capacity uint32) uint32 {
	if capacity > 0 {
		if b, err := mem("kv_last_error", buf, capacity); err == nil {
			copy(b, lastErr)
		}
	}
	return uint32(len(lastErr))
}

//go:wasmexport kv_create
func kvCreate(name, n uint32) int32 {
	b, err := mem("kv_create: name", name, n)
	if err != nil {
		return fail(err)
	}
	s, err := kvcore.Create(bg, string(b), nil)
	if err != nil {
		return fail(err)
	}
	nextH++
	stores[nextH] = &handle{s: s, in: map[int][]*kvcore.Array{}, out: map[int]*kvcore.Array{}}
	return nextH
}

//go:wasmexport kv_close
func kvClose(h int32) int32 {
	st, err := store("kv_close", h)
	if err != nil {
		return fail(err)
	}
	delete(stores, h)
	err = st.s.Close()
	for _, as := range st.in {
		for _, a := range as {
			release(a)
		}
	}
	for _, a := range st.out {
		release(a)
	}
	if err != nil {
		return fail(fmt.Errorf("kv_close: %w", err))
	}
	return 0
}

//go:wasmexport kv_init
func kvInit(h, key int32, data, n uint32) int32 {
	st, err := store("kv_init", h)
	if err != nil {
		return fail(err)
	}
	src, err := floats(fmt.Sprintf("kv_init key %d: data", key), data, n)
	if err != nil {
		return fail(err)
	}
	a, err := kvcore.FromSlice(kvcore.CPU(0), src, int(n))
	if err != nil {
		return fail(fmt.Errorf("kv_init key %d: %w", key, err))
	}
	defer release(a)
	if err := st.s.Init(bg, kvcore.IntKey(int(key)), a); err != nil {
		return fail(err)
	}
	return 0
}

// stage copies ndev arrays of n floats from data into the key's push arrays.
func (st *handle) stage(call string, key int32, data, n, ndev uint32) ([]*kvcore.Array, error) {
	if ndev == 0 || ndev > 1024 {
		return nil, fmt.Errorf("%s key %d: ndev = %d, want 1 to 1024", call, key, ndev)
	}
	if uint64(n)*uint64(ndev) > math.MaxUint32/4 {
		return nil, fmt.Errorf("%s key %d: %d x %d floats do not fit in wasm memory", call, key, ndev, n)
	}
	src, err := floats(fmt.Sprintf("%s key %d: data", call, key), data, n*ndev)
	if err != nil {
		return nil, err
	}
	in := st.in[int(key)]
	if len(in) > 0 && in[0].Size() != int(n) {
		for _, a := range in {
			release(a)
		}
		in = in[:0]
	}
	for len(in) < int(ndev) {
		a, err := kvcore.NewArray(kvcore.CPU(0), int(n))
		if err != nil {
			return nil, fmt.Errorf("%s key %d: %w", call, key, err)
		}
		in = append(in, a)
	}
	st.in[int(key)] = in
	in = in[:ndev]
	for d, a := range in {
		if err := a.CopyFrom(bg, src[d*int(n):(d+1)*int(n)]); err != nil {
			return nil, fmt.Errorf("%s key %d: %w", call, key, err)
		}
	}
	return in, nil
}

// pullArray returns the key's pull array of n floats.
func (st *handle) pullArray(call string, key int32, n uint32) (*kvcore.Array, error) {
	a := st.out[int(key)]
	if a != nil && a.Size() == int(n) {
		return a, nil
	}
	if a != nil {
		release(a)
	}
	a, err := kvcore.NewArray(kvcore.CPU(0), int(n))
	if err != nil {
		return nil, fmt.Errorf("%s key %d: %w", call, key, err)
	}
	st.out[int(key)] = a
	return a, nil
}

//go:wasmexport kv_push
func kvPush(h, key int32, data, n, ndev uint32) int32 {
	st, err := store("kv_push", h)
	if err != nil {
		return fail(err)
	}
	in, err := st.stage("kv_push", key, data, n, ndev)
	if err != nil {
		return fail(err)
	}
	if err := st.s.Push(kvcore.IntKey(int(key)), in...); err != nil {
		return fail(err)
	}
	return 0
}

//go:wasmexport kv_pull
func kvPull(h, key int32, out, n uint32) int32 {
	st, err := store("kv_pull", h)
	if err != nil {
		return fail(err)
	}
	dst, err := floats(fmt.Sprintf("kv_pull key %d: out", key), out, n)
	if err != nil {
		return fail(err)
	}
	a, err := st.pullArray("kv_pull", key, n)
	if err != nil {
		return fail(err)
	}
	if err := st.s.Pull(kvcore.IntKey(int(key)), a); err != nil {
		return fail(err)
	}
	if err := a.CopyTo(bg, dst); err != nil {
		return fail(fmt.Errorf("kv_pull key %d: %w", key, err))
	}
	return 0
}

//go:wasmexport kv_pushpull
func kvPushPull(h, key int32, data, n, ndev, out uint32) int32 {
	st, err := store("kv_pushpull", h)
	if err != nil {
		return fail(err)
	}
	dst, err := floats(fmt.Sprintf("kv_pushpull key %d: out", key), out, n)
	if err != nil {
		return fail(err)
	}
	in, err := st.stage("kv_pushpull", key, data, n, ndev)
	if err != nil {
		return fail(err)
	}
	a, err := st.pullArray("kv_pushpull", key, n)
	if err != nil {
		return fail(err)
	}
	if err := st.s.PushPullTo(kvcore.IntKey(int(key)), in, a); err != nil {
		return fail(err)
	}
	if err := a.CopyTo(bg, dst); err != nil {
		return fail(fmt.Errorf("kv_pushpull key %d: %w", key, err))
	}
	return 0
}

//go:wasmexport kv_set_optimizer
func kvSetOptimizer(h int32, spec, n uint32) int32 {
	st, err := store("kv_set_optimizer", h)
	if err != nil {
		return fail(err)
	}
	b, err := mem("kv_set_optimizer: json", spec, n)
	if err != nil {
		return fail(err)
	}
	opt, err := optimizer.Parse(b)
	if err != nil {
		return fail(fmt.Errorf("kv_set_optimizer: %w", err))
	}
	if err := st.s.SetOptimizer(bg, opt); err != nil {
		return fail(err)
	}
	return 0
}

//go:wasmexport kv_wait
func kvWait(h int32) int32 {
	st, err := store("kv_wait", h)
	if err != nil {
		return fail(err)
	}
	if err := st.s.WaitAll(bg); err != nil {
		return fail(err)
	}
	return 0
}

// bg is the context of the exported calls: each is synchronous for its
// host and runs to its end, as a C function would.
var bg = context.Background()

// release frees a once its queued operations are done (they always end,
// so the wait needs no bound, and Release's only error is its context's).
func release(a *kvcore.Array) { _ = a.Release(bg) }
