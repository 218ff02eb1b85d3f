//go:build js

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall/js"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/relay"
)

// jsStore is one store created by the page, known to JavaScript by id.
type jsStore struct {
	id       int
	s        *kvcore.Store
	gpu      bool   // the store computes on the WebGPU backend
	fallback string // why a device store runs on the CPU ("" if it does not)
	ctx      context.Context
	cancel   context.CancelFunc
	dist     distLink      // nil unless dist
	traffic  relay.Traffic // a dist store's websocket bytes

	mu     sync.Mutex
	shapes map[kvcore.Key][]int // shapes of initialized keys, to shape pushed values
	// rank and numWorkers as last read by a goroutine: the synchronous
	// api.info must not take the dist link's lock from a js.FuncOf
	// callback (a callback that blocks can deadlock the page's event loop).
	rank, numWorkers int
	// tail is closed once the last call made so far has been enqueued on
	// kvcore; each call waits for its predecessor's (see storeCall).
	tail chan struct{}
}

// refresh reads rank and numWorkers (from a goroutine, never a callback)
// for api.info. "membership" events come from kvcore's (see onEvent).
func (st *jsStore) refresh() {
	r, n := st.s.Rank(), st.s.NumWorkers()
	st.mu.Lock()
	st.rank, st.numWorkers = r, n
	st.mu.Unlock()
}

var (
	storesMu sync.Mutex
	stores   = map[int]*jsStore{}
	nextID   = 1
	emitter  js.Value // webkv.js's event dispatcher: emitter(id, name, detail)
)

// distLink is what a dist store's relay connection offers beyond kvcore's
// Transport (events, close); see dist.go.
type distLink interface {
	close() error
}

// jsCreate is webkv.create(type, opts).
func jsCreate(this js.Value, args []js.Value) any {
	if len(args) < 1 || args[0].Type() != js.TypeString {
		return rejected(badArg("webkv: create: the first argument must be the store type (\"local\", \"device\", \"dist_sync\", …)"))
	}
	typ := args[0].String()
	opts := js.Undefined()
	if len(args) > 1 {
		opts = args[1]
	}
	allowCPU, err := optBool(opts, "allowCPUFallback", true)
	if err != nil {
		return rejected(err)
	}
	var pageDev js.Value = js.Undefined()
	if !opts.IsUndefined() && !opts.IsNull() {
		pageDev = opts.Get("device")
	}
	dopts, err := distOptionsFromJS(opts)
	if err != nil {
		return rejected(err)
	}
	return promise(func() (any, error) {
		lt := lower(typ)
		wantGPU := strings.Contains(lt, "device")
		var kopts kvcore.Options
		fallback := ""
		if wantGPU {
			g, err := openGPU(pageDev)
			if err != nil {
				return nil, err
			}
			if g.be == nil {
				if !allowCPU {
					return nil, fmt.Errorf("webkv: create %q: %w: %s (allowCPUFallback is false)", typ, errNoWebGPU, g.reasonText())
				}
				fallback = "WebGPU unavailable: " + g.reasonText()
				// Without a backend a device store runs on the CPU.
			} else {
				kopts.Backend = g.be
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		js := &jsStore{ctx: ctx, cancel: cancel, shapes: map[kvcore.Key][]int{}, fallback: fallback, tail: make(chan struct{})}
		close(js.tail)
		storesMu.Lock()
		js.id = nextID
		nextID++
		storesMu.Unlock()
		setup := context.Background()
		if strings.HasPrefix(lt, "dist") {
			link, o, dctx, err := dialDist(ctx, typ, dopts, js)
			if err != nil {
				cancel()
				return nil, err
			}
			js.dist = link
			kopts.Transport, kopts.Events, setup = o.Transport, o.Events, dctx
		}
		if kopts.Backend == nil {
			kopts.Backend = cpuBackend()
		}
		s, err := kvcore.Create(setup, typ, &kopts)
		if err != nil {
			if js.dist != nil {
				js.dist.close()
			}
			cancel()
			return nil, err
		}
		js.s = s
		_, onCPU := s.Backend().(*compute.CPU)
		js.gpu = !onCPU
		js.mu.Lock()
		js.rank, js.numWorkers = s.Rank(), s.NumWorkers()
		js.mu.Unlock()
		storesMu.Lock()
		stores[js.id] = js
		storesMu.Unlock()
		return js.describe(), nil
	})
}

func (st *jsStore) describe() js.Value {
	o := js.Global().Get("Object").New()
	o.Set("id", st.id)
	o.Set("type", st.s.Type())
	st.mu.Lock()
	o.Set("rank", st.rank)
	o.Set("numWorkers", st.numWorkers)
	st.mu.Unlock()
	o.Set("backend", st.s.Backend().Name())
	o.Set("bytesSent", st.traffic.Sent())
	o.Set("bytesReceived", st.traffic.Received())
	if st.fallback != "" {
		o.Set("fallback", st.fallback)
	} else {
		o.Set("fallback", js.Null())
	}
	return o
}

// jsInfo is the synchronous api.info(id): type, rank, numWorkers, backend
// (rank and numWorkers change as dist workers join and leave).
func jsInfo(this js.Value, args []js.Value) any {
	if len(args) < 1 {
		return js.Null()
	}
	st, err := lookupStore(args[0])
	if err != nil {
		return js.Null()
	}
	return st.describe()
}

func lookupStore(v js.Value) (*jsStore, error) {
	if v.Type() != js.TypeNumber {
		return nil, badArg("not a store handle")
	}
	storesMu.Lock()
	st := stores[v.Int()]
	storesMu.Unlock()
	if st == nil {
		return nil, fmt.Errorf("store %d: %w", v.Int(), kvcore.ErrClosed) // the caller says "webkv: <call>: "
	}
	return st, nil
}

func (st *jsStore) emit(name string, detail map[string]any) {
	if emitter.Type() != js.TypeFunction {
		return
	}
	emitter.Invoke(st.id, name, js.ValueOf(detail))
}

// emitAll sends an event to every open store.
func emitAll(name string, detail map[string]any) {
	storesMu.Lock()
	all := make([]*jsStore, 0, len(stores))
	for _, s := range stores {
		all = append(all, s)
	}
	storesMu.Unlock()
	for _, s := range all {
		s.emit(name, detail)
	}
}

// A call runs in three phases:
//
//  1. parse, in the js.FuncOf callback: arguments are checked and typed
//     arrays copied into Go memory, so the page may reuse them at once.
//     Nothing here may wait on anything (a blocked callback stalls the
//     page's event loop, and the WebGPU backend holds its lock while it
//     awaits mapAsync).
//  2. enqueue, in a goroutine, strictly in the order the page made its
//     calls on the store (a chain of channels): arrays are built (shaped
//     like the key, GPUBuffers wrapped) and the operation is queued on
//     kvcore. Calls that change what later calls see (init,
//     setOptimizer, loadOptimizerStates, close) finish here, so
//     kv.init(k, …); kv.push(k, …) works without awaiting the init.
//  3. the work that settles the Promise: waiting for the operation.
type (
	enqueue func() (work, error)
	method  func(st *jsStore, args []js.Value) (enqueue, error)
)

var storeMethods = map[string]method{
	"init":                   (*jsStore).init,
	"push":                   (*jsStore).push,
	"pull":                   (*jsStore).pull,
	"pushPull":               (*jsStore).pushPull,
	"setOptimizer":           (*jsStore).setOptimizer,
	"setGradientCompression": (*jsStore).setGradientCompression,
	"barrier":                (*jsStore).barrier,
	"sendCommandToServers":   (*jsStore).sendCommand,
	"waitAll":                (*jsStore).waitAll,
	"saveOptimizerStates":    (*jsStore).saveStates,
	"loadOptimizerStates":    (*jsStore).loadStates,
	"close":                  (*jsStore).close,
	"pushRowSparse":          (*jsStore).pushRowSparse, // rowsparse.go
	"rowSparsePull":          (*jsStore).rowSparsePull,
}

func storeCall(name string, m method) func(js.Value, []js.Value) any {
	return func(this js.Value, args []js.Value) any {
		if len(args) < 1 {
			return rejected(badArg("webkv: %s: missing store handle", name))
		}
		st, err := lookupStore(args[0])
		if err != nil {
			return rejected(fmt.Errorf("webkv: %s: %w", name, err))
		}
		var enq enqueue
		func() {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("webkv: %s: internal error: %v", name, r)
				}
			}()
			enq, err = m(st, args[1:])
		}()
		if err != nil {
			return rejected(err)
		}
		st.mu.Lock()
		prev, mine := st.tail, make(chan struct{})
		st.tail = mine
		st.mu.Unlock()
		return promise(func() (any, error) {
			w, err := func() (work, error) {
				defer close(mine)
				<-prev
				return runEnqueue(name, enq)
			}()
			if err != nil {
				return nil, err
			}
			v, err := w()
			if name != "close" {
				st.refresh()
			}
			return v, err
		})
	}
}

func runEnqueue(name string, enq enqueue) (w work, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("webkv: %s: internal error: %v", name, r)
		}
	}()
	return enq()
}

// done is the work of calls that finished while enqueuing.
func done(v any, err error) (work, error) {
	if err != nil {
		return nil, err
	}
	return func() (any, error) { return v, nil }, nil
}

func arg(args []js.Value, i int) js.Value {
	if i < len(args) {
		return args[i]
	}
	return js.Undefined()
}

// rawVal is a value argument after parsing: a Float32Array's values copied
// into a CPU buffer (host, whose Float32s are data), or the page's
// GPUBuffer.
type rawVal struct {
	host compute.Buffer
	data []float32
	buf  js.Value
}

func parseVal(op string, k kvcore.Key, v js.Value) (rawVal, error) {
	switch {
	case isInstance(v, "Float32Array"):
		if v.Length() == 0 {
			return rawVal{}, badArg("webkv: %s key %v: empty Float32Array", op, k)
		}
		host, data := hostFromJS(v)
		return rawVal{host: host, data: data}, nil
	case isInstance(v, "GPUBuffer"):
		return rawVal{buf: v}, nil
	}
	return rawVal{}, badArg("webkv: %s key %v: value must be a Float32Array or a GPUBuffer, got %s", op, k, typeName(v))
}

// parseVals parses one value or an array of values (one per device: they
// are summed).
func parseVals(op string, k kvcore.Key, v js.Value) ([]rawVal, error) {
	if !js.Global().Get("Array").Call("isArray", v).Bool() {
		rv, err := parseVal(op, k, v)
		return []rawVal{rv}, err
	}
	n := v.Length()
	if n == 0 {
		return nil, badArg("webkv: %s key %v: empty list of values", op, k)
	}
	out := make([]rawVal, n)
	for i := range n {
		rv, err := parseVal(op, k, v.Index(i))
		if err != nil {
			return nil, err
		}
		out[i] = rv
	}
	return out, nil
}

func count(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// array makes rv a kvcore array shaped like key's stored value (or like
// shape, for init); a value of the wrong size gets shape [len] so that
// kvcore reports the mismatch with its own message.
func (st *jsStore) array(op string, k kvcore.Key, rv rawVal, shape []int) (*kvcore.Array, error) {
	if shape == nil {
		st.mu.Lock()
		shape = st.shapes[k]
		st.mu.Unlock()
	}
	if rv.data == nil {
		if shape == nil {
			if op == "init" {
				return nil, badArg("webkv: init key %v: a GPUBuffer value needs an explicit shape", k)
			}
			return nil, fmt.Errorf("kvcore: %s key %v: %w", op, k, kvcore.ErrUnknownKey)
		}
		return wrapGPUBuffer(fmt.Sprintf("%s key %v", op, k), rv.buf, shape, count(shape))
	}
	if shape == nil || count(shape) != len(rv.data) {
		if shape != nil && op == "init" {
			return nil, fmt.Errorf("webkv: init key %v: %d values do not fill shape %v (%d): %w", k, len(rv.data), shape, count(shape), kvcore.ErrShapeMismatch)
		}
		shape = []int{len(rv.data)}
	}
	// The array is the buffer the values were copied into: one copy from
	// JavaScript to the store's inputs.
	a, err := kvcore.WrapBuffer(kvcore.CPU(0), rv.host, shape...)
	if err != nil {
		return nil, fmt.Errorf("webkv: %s key %v: %w", op, k, err)
	}
	return a, nil
}

func (st *jsStore) arrays(op string, k kvcore.Key, rvs []rawVal) ([]*kvcore.Array, error) {
	out := make([]*kvcore.Array, 0, len(rvs))
	for _, rv := range rvs {
		a, err := st.array(op, k, rv, nil)
		if err != nil {
			releaseAll(out)
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func releaseAll(as []*kvcore.Array) {
	for _, a := range as {
		if a != nil {
			release(a)
		}
	}
}

// rawOut is a parsed output argument: undefined (a new Float32Array), a
// Float32Array to fill, or a GPUBuffer.
type rawOut struct{ v js.Value }

func parseOut(op string, k kvcore.Key, v js.Value) (rawOut, error) {
	if v.IsUndefined() || v.IsNull() || isInstance(v, "Float32Array") || isInstance(v, "GPUBuffer") {
		if v.IsNull() {
			v = js.Undefined()
		}
		return rawOut{v}, nil
	}
	return rawOut{}, badArg("webkv: %s key %v: output must be a Float32Array or a GPUBuffer, got %s", op, k, typeName(v))
}

// output is where a pull lands: a Go array and, for a Float32Array or a new
// one, the JavaScript array it is copied into once done.
type output struct {
	a      *kvcore.Array
	js     js.Value // Float32Array to fill, undefined for a new one
	gpuOut js.Value // the page's GPUBuffer, returned as is
}

func (st *jsStore) output(op string, k kvcore.Key, ro rawOut) (*output, error) {
	v := ro.v
	st.mu.Lock()
	shape := st.shapes[k]
	st.mu.Unlock()
	if shape == nil {
		// Not initialized (or another kind of key): a placeholder output
		// lets kvcore report it with its own message.
		a, err := hostArray(1)
		if err != nil {
			return nil, err
		}
		return &output{a: a, js: js.Undefined()}, nil
	}
	n := count(shape)
	switch {
	case v.IsUndefined():
		a, err := hostArray(shape...)
		if err != nil {
			return nil, err
		}
		return &output{a: a, js: js.Undefined()}, nil
	case isInstance(v, "Float32Array"):
		if v.Length() != n {
			return nil, fmt.Errorf("webkv: %s key %v: output Float32Array has %d values, the key holds shape %v (%d): %w", op, k, v.Length(), shape, n, kvcore.ErrShapeMismatch)
		}
		a, err := hostArray(shape...)
		if err != nil {
			return nil, err
		}
		return &output{a: a, js: v}, nil
	default: // GPUBuffer
		a, err := wrapGPUBuffer(fmt.Sprintf("%s key %v", op, k), v, shape, n)
		if err != nil {
			return nil, err
		}
		return &output{a: a, gpuOut: v}, nil
	}
}

// finish waits for o, submits the GPU work that wrote it (after the wait:
// a dist pull writes its output only when the answer arrives) and hands it
// to JavaScript.
func (o *output) finish(st *jsStore) (any, error) {
	defer release(o.a)
	if err := st.settle(o.a.Wait(st.ctx)); err != nil {
		return nil, err
	}
	if !o.gpuOut.IsUndefined() {
		return o.gpuOut, nil
	}
	data, err := o.a.Data(st.ctx)
	if err != nil {
		return nil, err
	}
	return float32sToJS(data, o.js), nil
}

// settle makes the results of finished work visible to the page: the WebGPU
// backend records kernels and submits them only on Read or Sync, and the
// page's next submit on the same queue must come after them. It also
// reports a WebGPU error raised meanwhile.
func (st *jsStore) settle(err error) error {
	if st.gpu {
		if serr := st.s.Backend().Sync(); serr != nil && err == nil {
			err = serr
		}
		if gerr := theGPU.takeErr(); gerr != nil && err == nil {
			err = gerr
		}
	}
	return err
}

// init(key, value, shape?): finishes while enqueuing, so that later calls
// see the key.
func (st *jsStore) init(args []js.Value) (enqueue, error) {
	k, err := toKey("init", arg(args, 0))
	if err != nil {
		return nil, err
	}
	shape, err := toShape("init", arg(args, 2))
	if err != nil {
		return nil, err
	}
	rv, err := parseVal("init", k, arg(args, 1))
	if err != nil {
		return nil, err
	}
	return func() (work, error) {
		a, err := st.array("init", k, rv, shape)
		if err != nil {
			return nil, err
		}
		defer release(a)
		err = st.s.Init(st.ctx, k, a)
		if err == nil {
			st.mu.Lock()
			st.shapes[k] = a.Shape()
			st.mu.Unlock()
		}
		return done(js.Undefined(), st.settle(err))
	}, nil
}

// keyArgs is the parsed key part of push, pull and pushPull: one key, or
// a list of keys (MXNet's push(keys, values)), with their values and
// outputs, and the priority (higher runs first across keys).
type keyArgs struct {
	list bool
	keys []kvcore.Key
	vals [][]rawVal // per key (push, pushPull)
	outs []rawOut   // per key (pull, pushPull)
	prio int
}

// parseKeyArgs reads (key, value?, out?, priority?) or (keys[], values[]?,
// outs[]?, priority?).
func parseKeyArgs(op string, args []js.Value, withVals, withOuts bool) (*keyArgs, error) {
	ka := &keyArgs{}
	i := 0
	k0 := arg(args, i)
	i++
	ka.list = js.Global().Get("Array").Call("isArray", k0).Bool()
	var vArg, oArg js.Value = js.Undefined(), js.Undefined()
	if withVals {
		vArg = arg(args, i)
		i++
	}
	if withOuts {
		oArg = arg(args, i)
		i++
	}
	if p := arg(args, i); !p.IsUndefined() && !p.IsNull() {
		if p.Type() != js.TypeNumber || p.Float() != float64(p.Int()) {
			return nil, badArg("webkv: %s: priority must be an integer, got %s", op, typeName(p))
		}
		ka.prio = p.Int()
	}
	if !ka.list {
		k, err := toKey(op, k0)
		if err != nil {
			return nil, err
		}
		ka.keys = []kvcore.Key{k}
		if withVals {
			rv, err := parseVals(op, k, vArg)
			if err != nil {
				return nil, err
			}
			ka.vals = [][]rawVal{rv}
		}
		if withOuts {
			ro, err := parseOut(op, k, oArg)
			if err != nil {
				return nil, err
			}
			ka.outs = []rawOut{ro}
		}
		return ka, nil
	}
	n := k0.Length()
	if n == 0 {
		return nil, badArg("webkv: %s: empty list of keys", op)
	}
	isArr := func(v js.Value) bool { return js.Global().Get("Array").Call("isArray", v).Bool() }
	if withVals && (!isArr(vArg) || vArg.Length() != n) {
		return nil, badArg("webkv: %s: %d keys need a list of %d values", op, n, n)
	}
	hasOuts := withOuts && !oArg.IsUndefined() && !oArg.IsNull()
	if hasOuts && (!isArr(oArg) || oArg.Length() != n) {
		return nil, badArg("webkv: %s: %d keys need a list of %d outputs (or none)", op, n, n)
	}
	for j := range n {
		k, err := toKey(op, k0.Index(j))
		if err != nil {
			return nil, err
		}
		ka.keys = append(ka.keys, k)
		if withVals {
			rv, err := parseVals(op, k, vArg.Index(j))
			if err != nil {
				return nil, err
			}
			ka.vals = append(ka.vals, rv)
		}
		if withOuts {
			o := js.Undefined()
			if hasOuts {
				o = oArg.Index(j)
			}
			ro, err := parseOut(op, k, o)
			if err != nil {
				return nil, err
			}
			ka.outs = append(ka.outs, ro)
		}
	}
	return ka, nil
}

// build makes the kvcore arrays of ka (in the enqueue phase).
func (st *jsStore) build(op string, ka *keyArgs) (vals [][]*kvcore.Array, outs []*output, err error) {
	free := func() {
		for _, v := range vals {
			releaseAll(v)
		}
		for _, o := range outs {
			release(o.a)
		}
	}
	for j, k := range ka.keys {
		if ka.vals != nil {
			v, err := st.arrays(op, k, ka.vals[j])
			if err != nil {
				free()
				return nil, nil, err
			}
			vals = append(vals, v)
		}
		if ka.outs != nil {
			o, err := st.output(op, k, ka.outs[j])
			if err != nil {
				free()
				return nil, nil, err
			}
			outs = append(outs, o)
		}
	}
	return vals, outs, nil
}

// results waits for every output and resolves to one result, or to an
// array of them for a key list.
func (st *jsStore) results(list bool, outs []*output) (any, error) {
	var firstErr error
	res := make([]any, len(outs))
	for j, o := range outs {
		v, err := o.finish(st)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		res[j] = v
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if !list {
		return res[0], nil
	}
	return js.ValueOf(res), nil
}

func outArrays(outs []*output) [][]*kvcore.Array {
	r := make([][]*kvcore.Array, len(outs))
	for j, o := range outs {
		r[j] = []*kvcore.Array{o.a}
	}
	return r
}

// push(key | keys[], value | value[] | values[], priority?): resolves once
// every operation the store had queued finished (MXNet's push is
// asynchronous; a Promise that resolves before the value was consumed
// would let the page overwrite a GPUBuffer still in use), and rejects with
// the first error among them.
func (st *jsStore) push(args []js.Value) (enqueue, error) {
	ka, err := parseKeyArgs("push", args, true, false)
	if err != nil {
		return nil, err
	}
	return func() (work, error) {
		vals, _, err := st.build("push", ka)
		if err != nil {
			return nil, err
		}
		if !ka.list && ka.prio == 0 {
			err = st.s.Push(ka.keys[0], vals[0]...)
		} else {
			err = st.s.PushList(ka.keys, vals, ka.prio)
		}
		if err != nil {
			for _, v := range vals {
				releaseAll(v)
			}
			return nil, err
		}
		return func() (any, error) {
			err := st.s.WaitAll(st.ctx)
			for _, v := range vals {
				releaseAll(v)
			}
			return js.Undefined(), st.settle(err)
		}, nil
	}, nil
}

// pull(key | keys[], out? | outs[]?, priority?): fills each out
// (Float32Array or GPUBuffer) or a new Float32Array and resolves to it (to
// an array of them for a key list).
func (st *jsStore) pull(args []js.Value) (enqueue, error) {
	ka, err := parseKeyArgs("pull", args, false, true)
	if err != nil {
		return nil, err
	}
	return func() (work, error) {
		_, outs, err := st.build("pull", ka)
		if err != nil {
			return nil, err
		}
		if !ka.list && ka.prio == 0 {
			err = st.s.Pull(ka.keys[0], outs[0].a)
		} else {
			err = st.s.PullList(ka.keys, outArrays(outs), ka.prio)
		}
		if err != nil {
			for _, o := range outs {
				release(o.a)
			}
			return nil, err
		}
		return func() (any, error) { return st.results(ka.list, outs) }, nil
	}, nil
}

// pushPull(key | keys[], value(s), out? | outs[]?, priority?)
func (st *jsStore) pushPull(args []js.Value) (enqueue, error) {
	ka, err := parseKeyArgs("pushPull", args, true, true)
	if err != nil {
		return nil, err
	}
	return func() (work, error) {
		vals, outs, err := st.build("pushPull", ka)
		if err != nil {
			return nil, err
		}
		if !ka.list && ka.prio == 0 {
			err = st.s.PushPullTo(ka.keys[0], vals[0], outs[0].a)
		} else {
			err = st.s.PushPullList(ka.keys, vals, outArrays(outs), ka.prio)
		}
		if err != nil {
			for _, v := range vals {
				releaseAll(v)
			}
			for _, o := range outs {
				release(o.a)
			}
			return nil, err
		}
		return func() (any, error) {
			defer func() {
				for _, v := range vals {
					releaseAll(v)
				}
			}()
			return st.results(ka.list, outs)
		}, nil
	}, nil
}

// setOptimizer(spec): spec is MXNet's optimizer name and arguments, the JSON
// of an optimizer.Spec (webkv.js stringifies the object).
func (st *jsStore) setOptimizer(args []js.Value) (enqueue, error) {
	spec := arg(args, 0)
	if spec.Type() != js.TypeString {
		return nil, badArg("webkv: setOptimizer: want an object like {name: 'adam', learning_rate: 0.001}, got %s", typeName(spec))
	}
	opt, err := optimizer.Parse([]byte(spec.String()))
	if err != nil {
		return nil, fmt.Errorf("kvcore: set optimizer: %w", err)
	}
	return func() (work, error) {
		return done(js.Undefined(), st.settle(st.s.SetOptimizer(st.ctx, opt)))
	}, nil
}

// setGradientCompression({type: '2bit'|'1bit', threshold})
func (st *jsStore) setGradientCompression(args []js.Value) (enqueue, error) {
	o := arg(args, 0)
	if o.Type() != js.TypeObject {
		return nil, badArg("webkv: setGradientCompression: want {type: '2bit', threshold: 0.5}, got %s", typeName(o))
	}
	t, err := optString(o, "type")
	if err != nil {
		return nil, err
	}
	th, err := optNumber(o, "threshold", 0.5)
	if err != nil {
		return nil, err
	}
	var c compute.Compression
	switch lower(t) {
	case "2bit":
		c = compute.Compression{Kind: compute.Compress2Bit, Threshold: float32(th)}
	case "1bit":
		c = compute.Compression{Kind: compute.Compress1Bit, Threshold: float32(th)}
	default:
		return nil, fmt.Errorf("webkv: setGradientCompression: type %q: %w (want '2bit' or '1bit')", t, kvcore.ErrBadCompression)
	}
	return func() (work, error) {
		return done(js.Undefined(), st.settle(st.s.SetGradientCompression(st.ctx, c)))
	}, nil
}

// sendCommandToServers(head, body) is MXNet's _send_command_to_servers: a
// command (head an integer, body a string) every server of a dist store
// handles before the Promise resolves; local stores ignore it.
func (st *jsStore) sendCommand(args []js.Value) (enqueue, error) {
	h, b := arg(args, 0), arg(args, 1)
	if h.Type() != js.TypeNumber || h.Float() != float64(int32(h.Int())) {
		return nil, badArg("webkv: sendCommandToServers: head must be an integer, got %s", typeName(h))
	}
	if b.Type() != js.TypeString {
		return nil, badArg("webkv: sendCommandToServers: body must be a string, got %s", typeName(b))
	}
	head, body := h.Int(), []byte(b.String())
	return func() (work, error) {
		return done(js.Undefined(), st.settle(st.s.SendCommandToServers(st.ctx, head, body)))
	}, nil
}

// barrier and waitAll wait after enqueuing: later calls need not wait for
// them.
func (st *jsStore) barrier(args []js.Value) (enqueue, error) {
	return func() (work, error) {
		return func() (any, error) { return js.Undefined(), st.s.Barrier(st.ctx) }, nil
	}, nil
}

func (st *jsStore) waitAll(args []js.Value) (enqueue, error) {
	return func() (work, error) {
		return func() (any, error) { return js.Undefined(), st.settle(st.s.WaitAll(st.ctx)) }, nil
	}, nil
}

// saveOptimizerStates(dumpOptimizer?) resolves to a Uint8Array of the
// states as of the call.
func (st *jsStore) saveStates(args []js.Value) (enqueue, error) {
	dump := false
	if d := arg(args, 0); d.Type() == js.TypeBoolean {
		dump = d.Bool()
	} else if !d.IsUndefined() {
		return nil, badArg("webkv: saveOptimizerStates: dumpOptimizer must be a boolean, got %s", typeName(d))
	}
	return func() (work, error) {
		var buf bytes.Buffer
		if err := st.s.SaveOptimizerStates(st.ctx, &buf, dump); err != nil {
			return nil, err
		}
		b := buf.Bytes()
		return func() (any, error) { return bytesToJS(b), nil }, nil
	}, nil
}

// loadOptimizerStates(bytes)
func (st *jsStore) loadStates(args []js.Value) (enqueue, error) {
	b, err := bytesFromJS("loadOptimizerStates", arg(args, 0))
	if err != nil {
		return nil, err
	}
	return func() (work, error) {
		return done(js.Undefined(), st.settle(st.s.LoadOptimizerStates(st.ctx, bytes.NewReader(b))))
	}, nil
}

// close waits for queued work, frees the store and its relay link; later
// calls fail with CLOSED.
func (st *jsStore) close(args []js.Value) (enqueue, error) {
	return func() (work, error) {
		storesMu.Lock()
		delete(stores, st.id)
		storesMu.Unlock()
		err := st.s.Close()
		st.cancel()
		if errors.Is(err, kvcore.ErrClosed) {
			err = nil
		}
		st.emit("close", map[string]any{})
		return done(js.Undefined(), err)
	}, nil
}

// release frees a once its queued operations are done, and gives a host
// buffer back to the pool. They always end (Close fails what still waits
// on the network), so the wait needs no bound, and Release's only error is
// its context's: none here.
func release(a *kvcore.Array) {
	b := a.Buffer()
	_ = a.Release(context.Background())
	if _, onHost := b.(*compute.CPUBuffer); onHost {
		host.Free(b)
	}
}
