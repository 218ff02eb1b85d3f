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
// Compiling the 5 MB module is most of an instantiation: in wazero, keep a
// compilation cache (wazero.NewCompilationCacheWithDir in the
// RuntimeConfig, as Example does): measured here (TestInstantiateCache),
// 3.2 s cold and 0.2 s from the cache.
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
// Keys: a store's keys are ints, or strings: kv_key_str(h, name, len)
// returns the id that stands for a string key in the key arguments of that
// store's calls. One store takes one kind (as kvcore does): after
// kv_key_str, every key argument of the store must be an id it returned,
// and a store that used int keys refuses kv_key_str.
//
// Values: every value is n float32s; a key's shape (kv_init_shape, default
// [n]) fixes n, and kv_shape reads it back.
//
// Errors: kv_last_error(buf, cap) copies the message of the last failed
// call (a success does not clear it) into buf, at most cap bytes and never
// half a UTF-8 character, with no terminating NUL, and returns the whole
// message's length: a return above cap means the copy was cut, so call
// again with a buffer of that size (kv_last_error(0, 0) just asks for it).
//
// Versions: kv_abi_version() is 2 for this ABI. Version 1 (the first
// eleven functions) had no kv_abi_version; everything version 1 had is
// unchanged.
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
// Version 2 adds:
//
//	kv_abi_version() -> u32                         2
//	kv_key_str(h i32, name ptr, len u32) -> key i32 the id of a string key (>= 0)
//	kv_init_shape(h, key i32, data ptr, shape ptr, ndim u32) -> i32   shape: ndim i32s (ndim 1..8)
//	kv_shape(h, key i32, out ptr, cap u32) -> ndim i32    writes min(ndim, cap) i32s
//	kv_set_compression(h i32, type ptr, len u32, threshold f32) -> i32   "2bit", "1bit" or "none"
//	kv_barrier(h i32) -> i32
//	kv_save_states(h, dump i32, buf ptr, cap u32) -> len i32   MXNet's save_optimizer_states (dump: with the optimizer)
//	kv_load_states(h i32, buf ptr, len u32) -> i32
//
// kv_save_states returns the states' length and copies them only when they
// fit in cap (all or nothing): a return above cap asks for a bigger buffer.
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
	"bytes"
	"context"
	"fmt"
	"math"
	"sort"
	"unicode/utf8"
	"unsafe"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
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
	// strs are the string keys of kv_key_str, by id (nil: int keys);
	// ids finds a name's id.
	strs    []string
	ids     map[string]int32
	intKeys bool // a call used an int key: kv_key_str is refused
	// shapes are the keys' shapes (kv_init, kv_init_shape).
	shapes map[int32][]int
}

// key is the kvcore key of a key argument.
func (st *handle) key(call string, k int32) (kvcore.Key, error) {
	if st.strs == nil {
		st.intKeys = true
		return kvcore.IntKey(int(k)), nil
	}
	if k < 0 || int(k) >= len(st.strs) {
		return kvcore.Key{}, fmt.Errorf("%s: key %d is not an id from kv_key_str (the store's keys are strings): %w", call, k, kvcore.ErrMixedKeys)
	}
	return kvcore.StrKey(st.strs[k]), nil
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
			msg := lastErr
			if len(msg) > len(b) {
				// Cut before a character that would not fit whole.
				cut := len(b)
				for cut > 0 && !utf8.RuneStart(msg[cut]) {
					cut--
				}
				msg = msg[:cut]
			}
			copy(b, msg)
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
	stores[nextH] = &handle{s: s, in: map[int][]*kvcore.Array{}, out: map[int]*kvcore.Array{}, shapes: map[int32][]int{}}
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
	return st.initShape("kv_init", key, data, []int{int(n)})
}

func (st *handle) initShape(call string, key int32, data uint32, shape []int) int32 {
	k, err := st.key(call, key)
	if err != nil {
		return fail(err)
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	src, err := floats(fmt.Sprintf("%s key %v: data", call, k), data, uint32(n))
	if err != nil {
		return fail(err)
	}
	a, err := kvcore.FromSlice(kvcore.CPU(0), src, shape...)
	if err != nil {
		return fail(fmt.Errorf("%s key %v: %w", call, k, err))
	}
	defer release(a)
	if err := st.s.Init(bg, k, a); err != nil {
		return fail(err)
	}
	st.shapes[key] = shape
	return 0
}

//go:wasmexport kv_abi_version
func kvABIVersion() uint32 { return 2 }

//go:wasmexport kv_key_str
func kvKeyStr(h int32, name, n uint32) int32 {
	st, err := store("kv_key_str", h)
	if err != nil {
		return fail(err)
	}
	if n > 1<<16 {
		return fail(fmt.Errorf("kv_key_str: a key of %d bytes (at most 65536)", n))
	}
	b, err := mem("kv_key_str: name", name, n)
	if err != nil {
		return fail(err)
	}
	if st.intKeys {
		return fail(fmt.Errorf("kv_key_str %q: the store already uses int keys: %w", b, kvcore.ErrMixedKeys))
	}
	if id, ok := st.ids[string(b)]; ok {
		return id
	}
	if len(st.strs) >= 1<<24 {
		return fail(fmt.Errorf("kv_key_str: more than %d string keys", 1<<24))
	}
	if st.ids == nil {
		st.ids, st.strs = map[string]int32{}, []string{}
	}
	id := int32(len(st.strs))
	st.strs = append(st.strs, string(b))
	st.ids[string(b)] = id
	return id
}

//go:wasmexport kv_init_shape
func kvInitShape(h, key int32, data, shape, ndim uint32) int32 {
	st, err := store("kv_init_shape", h)
	if err != nil {
		return fail(err)
	}
	if ndim == 0 || ndim > 8 {
		return fail(fmt.Errorf("kv_init_shape key %d: ndim = %d, want 1 to 8", key, ndim))
	}
	if shape%4 != 0 {
		return fail(fmt.Errorf("kv_init_shape key %d: shape pointer %#x is not 4-byte aligned", key, shape))
	}
	b, err := mem(fmt.Sprintf("kv_init_shape key %d: shape", key), shape, 4*ndim)
	if err != nil {
		return fail(err)
	}
	dims := make([]int, ndim)
	total := uint64(1)
	for i := range dims {
		d := int32(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
		if d <= 0 {
			return fail(fmt.Errorf("kv_init_shape key %d: shape[%d] = %d, want > 0: %w", key, i, d, kvcore.ErrShapeMismatch))
		}
		total *= uint64(d)
		if total > maxBlock/4 {
			return fail(fmt.Errorf("kv_init_shape key %d: shape %v holds more than %d floats", key, dims[:i+1], maxBlock/4))
		}
		dims[i] = int(d)
	}
	return st.initShape("kv_init_shape", key, data, dims)
}

//go:wasmexport kv_shape
func kvShape(h, key int32, out, capacity uint32) int32 {
	st, err := store("kv_shape", h)
	if err != nil {
		return fail(err)
	}
	k, err := st.key("kv_shape", key)
	if err != nil {
		return fail(err)
	}
	shape, ok := st.shapes[key]
	if !ok {
		return fail(fmt.Errorf("kv_shape key %v: %w", k, kvcore.ErrUnknownKey))
	}
	if c := min(int(capacity), len(shape)); c > 0 {
		if out%4 != 0 {
			return fail(fmt.Errorf("kv_shape key %v: out pointer %#x is not 4-byte aligned", k, out))
		}
		b, err := mem(fmt.Sprintf("kv_shape key %v: out", k), out, uint32(4*c))
		if err != nil {
			return fail(err)
		}
		for i, d := range shape[:c] {
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(d), byte(d>>8), byte(d>>16), byte(d>>24)
		}
	}
	return int32(len(shape))
}

//go:wasmexport kv_set_compression
func kvSetCompression(h int32, typ, n uint32, threshold float32) int32 {
	st, err := store("kv_set_compression", h)
	if err != nil {
		return fail(err)
	}
	b, err := mem("kv_set_compression: type", typ, n)
	if err != nil {
		return fail(err)
	}
	var c compute.Compression
	switch string(b) {
	case "2bit":
		c = compute.Compression{Kind: compute.Compress2Bit, Threshold: threshold}
	case "1bit":
		c = compute.Compression{Kind: compute.Compress1Bit, Threshold: threshold}
	case "none":
	default:
		return fail(fmt.Errorf("kv_set_compression: type %q (want \"2bit\", \"1bit\" or \"none\"): %w", b, kvcore.ErrBadCompression))
	}
	if err := st.s.SetGradientCompression(bg, c); err != nil {
		return fail(err)
	}
	return 0
}

//go:wasmexport kv_barrier
func kvBarrier(h int32) int32 {
	st, err := store("kv_barrier", h)
	if err != nil {
		return fail(err)
	}
	if err := st.s.Barrier(bg); err != nil {
		return fail(err)
	}
	return 0
}

//go:wasmexport kv_save_states
func kvSaveStates(h, dump int32, buf, capacity uint32) int32 {
	st, err := store("kv_save_states", h)
	if err != nil {
		return fail(err)
	}
	var w bytes.Buffer
	if err := st.s.SaveOptimizerStates(bg, &w, dump != 0); err != nil {
		return fail(err)
	}
	if w.Len() > math.MaxInt32 {
		return fail(fmt.Errorf("kv_save_states: %d bytes of states do not fit the ABI's i32", w.Len()))
	}
	if uint64(w.Len()) <= uint64(capacity) && w.Len() > 0 {
		b, err := mem("kv_save_states: buf", buf, uint32(w.Len()))
		if err != nil {
			return fail(err)
		}
		copy(b, w.Bytes())
	}
	return int32(w.Len())
}

//go:wasmexport kv_load_states
func kvLoadStates(h int32, buf, n uint32) int32 {
	st, err := store("kv_load_states", h)
	if err != nil {
		return fail(err)
	}
	b, err := mem("kv_load_states: buf", buf, n)
	if err != nil {
		return fail(err)
	}
	if err := st.s.LoadOptimizerStates(bg, bytes.NewReader(b)); err != nil {
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
		a, err := kvcore.NewArray(kvcore.CPU(0), st.shapeOf(key, n)...)
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

// shapeOf is key's shape when it holds n floats, else [n] (kvcore then
// reports the mismatch).
func (st *handle) shapeOf(key int32, n uint32) []int {
	if sh, ok := st.shapes[key]; ok {
		c := 1
		for _, d := range sh {
			c *= d
		}
		if c == int(n) {
			return sh
		}
	}
	return []int{int(n)}
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
	a, err := kvcore.NewArray(kvcore.CPU(0), st.shapeOf(key, n)...)
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
	k, err := st.key("kv_push", key)
	if err != nil {
		return fail(err)
	}
	if err := st.s.Push(k, in...); err != nil {
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
	k, err := st.key("kv_pull", key)
	if err != nil {
		return fail(err)
	}
	if err := st.s.Pull(k, a); err != nil {
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
	k, err := st.key("kv_pushpull", key)
	if err != nil {
		return fail(err)
	}
	if err := st.s.PushPullTo(k, in, a); err != nil {
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
