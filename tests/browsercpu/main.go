//go:build js

// Command browsercpu is the webkv side of BenchmarkBrowserCPU
// (tests/browser_bench_test.go, page tests/browser/cpubench.js): kvcore's
// CPU path in the browser, on arrays that live in the Go program's memory as
// tfjs-backend-wasm's tensors live in its own, so that a reduce or an Adam
// step is timed without the copy of JavaScript arrays in and out (which
// webkv's page API makes on every push and tf.tensor on every upload, and
// which the page times separately). It runs each operation on two
// backends: "simd", the CPU backend accelerated by the WebAssembly SIMD
// kernels (package wasm/js/simd, loaded by webkv.js exactly as for
// webkv.wasm), and "go", the CPU backend's Go loops; each one's stores are
// 'local' stores on it, their arrays on kvcore.CPU(0).
//
// The page loads it with webkv.js: load({wasmURL}) resolves to the object
// this program hands to __webkvInit:
//
//	setup({n, k, data: Float32Array[k], grad, w0}) -> {simd: name or error}
//	run(backend, op)        op: 'reduce' | 'adam' | 'reduceAdam' | 'kreduce' | 'kadam' | 'kquant2' | 'tiny'
//	pull(backend, op)       the result of op (Float32Array), after a run
//	sweep({sizes, ms})      per size: ns of a 4-input reduce and an Adam step, SIMD vs Go
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"syscall/js"
	"time"
	"unsafe"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/wasm/js/simd"
)

// rig is one backend's stores and arrays.
type rig struct {
	be     *compute.CPU
	red    *kvcore.Store // key 0: push of k arrays, assigned (a reduce)
	adam   *kvcore.Store // key 1: push of grad with adam; key 2: push of k arrays with adam
	ins    []*kvcore.Array
	tiny   []*kvcore.Array // 4 values each, pushed to key 3: the fixed cost of a push
	grad   *kvcore.Array
	out    *kvcore.Array
	bufs   []compute.Buffer // the backend-level reduce's inputs and output (last)
	w, g   compute.Buffer   // the backend-level Adam step
	states []compute.Buffer
	params compute.StepParams
	resid  compute.Buffer // the backend-level 2-bit quantization of g
	packed compute.Buffer
}

var (
	rigs    = map[string]*rig{}
	simdErr string
	n, k    int
)

func main() {
	api := js.Global().Get("Object").New()
	// webkv.js hands every runtime its error class and event emitter
	// first; this program raises neither.
	api.Set("setErrorClass", js.FuncOf(func(js.Value, []js.Value) any { return nil }))
	api.Set("setEmitter", js.FuncOf(func(js.Value, []js.Value) any { return nil }))
	api.Set("setup", js.FuncOf(func(_ js.Value, args []js.Value) any { return promise(func() (any, error) { return setup(args[0]) }) }))
	api.Set("run", js.FuncOf(func(_ js.Value, args []js.Value) any {
		name, op := args[0].String(), args[1].String()
		return promise(func() (any, error) { return nil, run(name, op) })
	}))
	api.Set("pull", js.FuncOf(func(_ js.Value, args []js.Value) any {
		name, op := args[0].String(), args[1].String()
		return promise(func() (any, error) { return pull(name, op) })
	}))
	api.Set("sweep", js.FuncOf(func(_ js.Value, args []js.Value) any { return promise(func() (any, error) { return sweep(args[0]) }) }))
	js.Global().Call("__webkvInit", api)
	select {}
}

// promise runs w in a goroutine and settles a Promise with its result.
func promise(w func() (any, error)) js.Value {
	exec := js.FuncOf(func(_ js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		go func() {
			v, err := w()
			if err != nil {
				reject.Invoke(js.Global().Get("Error").New(err.Error()))
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	p := js.Global().Get("Promise").New(exec)
	exec.Release()
	return p
}

func floats(v js.Value) []float32 {
	out := make([]float32, v.Length())
	u8 := js.Global().Get("Uint8Array").New(v.Get("buffer"), v.Get("byteOffset"), len(out)*4)
	js.CopyBytesToGo(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), len(out)*4), u8)
	return out
}

func setup(cfg js.Value) (any, error) {
	n, k = cfg.Get("n").Int(), cfg.Get("k").Int()
	data := make([][]float32, k)
	for i := range k {
		data[i] = floats(cfg.Get("data").Index(i))
	}
	grad, w0 := floats(cfg.Get("grad")), floats(cfg.Get("w0"))
	res := map[string]any{}
	accel, err := simd.Load(nil)
	if err != nil {
		simdErr = err.Error()
		res["simd"] = "unavailable: " + simdErr
	} else {
		cpu := compute.NewCPU(&compute.CPUOptions{Accel: accel})
		res["simd"] = cpu.Name()
		res["minLen"] = accel.MinLen()
		if err := newRig("simd", cpu, data, grad, w0); err != nil {
			return nil, err
		}
	}
	if err := newRig("go", compute.NewCPU(nil), data, grad, w0); err != nil {
		return nil, err
	}
	return js.ValueOf(res), nil
}

func newRig(name string, be *compute.CPU, data [][]float32, grad, w0 []float32) error {
	r := &rig{be: be}
	var err error
	bg := context.Background()
	dev := kvcore.CPU(0)
	if r.red, err = kvcore.Create(bg, "local", &kvcore.Options{Backend: be}); err != nil {
		return err
	}
	if r.adam, err = kvcore.Create(bg, "local", &kvcore.Options{Backend: be}); err != nil {
		return err
	}
	for _, d := range data {
		a, err := kvcore.FromSlice(dev, d)
		if err != nil {
			return err
		}
		r.ins = append(r.ins, a)
	}
	for range k {
		a, err := kvcore.FromSlice(dev, []float32{1, 2, 3, 4})
		if err != nil {
			return err
		}
		r.tiny = append(r.tiny, a)
	}
	if r.grad, err = kvcore.FromSlice(dev, grad); err != nil {
		return err
	}
	if r.out, err = kvcore.NewArray(dev, n); err != nil {
		return err
	}
	zero, _ := kvcore.NewArray(dev, n)
	w, _ := kvcore.FromSlice(dev, w0)
	if err := r.red.InitList(bg, kvcore.Keys(0, 3), []*kvcore.Array{zero, r.tiny[0]}); err != nil {
		return err
	}
	if err := r.adam.InitList(bg, kvcore.Keys(1, 2), []*kvcore.Array{w, w}); err != nil {
		return err
	}
	opt, err := optimizer.Parse([]byte(`{"name": "adam", "learning_rate": 0.001}`))
	if err != nil {
		return err
	}
	if err := r.adam.SetOptimizer(bg, opt); err != nil {
		return err
	}
	// The backend-level operations, without a store.
	for range k + 1 {
		b, err := be.Alloc(n)
		if err != nil {
			return err
		}
		r.bufs = append(r.bufs, b)
	}
	for i, d := range data {
		if err := be.Write(r.bufs[i], 0, d); err != nil {
			return err
		}
	}
	if r.w, err = be.Alloc(n); err != nil {
		return err
	}
	if r.g, err = be.Alloc(n); err != nil {
		return err
	}
	be.Write(r.w, 0, w0)
	be.Write(r.g, 0, grad)
	for range 2 {
		s, err := be.Alloc(n)
		if err != nil {
			return err
		}
		r.states = append(r.states, s)
	}
	if r.resid, err = be.Alloc(n); err != nil {
		return err
	}
	if r.packed, err = be.Alloc(compute.Compress2Bit.PackedLen(n)); err != nil {
		return err
	}
	lr := 0.001 * math.Sqrt(1-0.999) / (1 - 0.9) // step 1's bias correction
	r.params = compute.StepParams{LR: 0.001, RescaleGrad: 1, ClipGradient: -1, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Coef1: float32(lr), T: 1}
	rigs[name] = r
	return nil
}

func run(name, op string) error {
	r := rigs[name]
	if r == nil {
		return fmt.Errorf("no backend %q (simd: %s)", name, simdErr)
	}
	bg := context.Background()
	switch op {
	case "reduce":
		if err := r.red.Push(kvcore.IntKey(0), r.ins...); err != nil {
			return err
		}
		return r.red.WaitAll(bg)
	case "tiny":
		if err := r.red.Push(kvcore.IntKey(3), r.tiny...); err != nil {
			return err
		}
		return r.red.WaitAll(bg)
	case "adam":
		if err := r.adam.Push(kvcore.IntKey(1), r.grad); err != nil {
			return err
		}
		return r.adam.WaitAll(bg)
	case "reduceAdam":
		if err := r.adam.Push(kvcore.IntKey(2), r.ins...); err != nil {
			return err
		}
		return r.adam.WaitAll(bg)
	case "kreduce":
		return r.be.Reduce(r.bufs[k], r.bufs[:k], 1)
	case "kadam":
		return r.be.Step(compute.OptAdam, &r.params, r.w, r.g, r.states)
	case "kquant2":
		return r.be.Quantize(compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.005}, r.g, r.resid, r.packed)
	}
	return fmt.Errorf("unknown op %q", op)
}

func pull(name, op string) (any, error) {
	r := rigs[name]
	if r == nil {
		return nil, fmt.Errorf("no backend %q", name)
	}
	out := make([]float32, n)
	var err error
	switch op {
	case "reduce", "adam", "reduceAdam":
		s, key := r.red, 0
		if op != "reduce" {
			s, key = r.adam, map[string]int{"adam": 1, "reduceAdam": 2}[op]
		}
		if err = s.Pull(kvcore.IntKey(key), r.out); err == nil {
			err = r.out.CopyTo(context.Background(), out)
		}
	case "kreduce":
		err = r.be.Read(r.bufs[k], 0, out)
	case "kadam":
		err = r.be.Read(r.w, 0, out)
	default:
		err = fmt.Errorf("unknown op %q", op)
	}
	if err != nil {
		return nil, err
	}
	dst := js.Global().Get("Float32Array").New(n)
	u8 := js.Global().Get("Uint8Array").New(dst.Get("buffer"), 0, n*4)
	js.CopyBytesToJS(u8, unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), n*4))
	return dst, nil
}

// sweep times, for each size, a 4-input reduce and an Adam step on the
// SIMD kernels (every length through them) and on the Go loops, each for
// about ms milliseconds, three times in turn, keeping each one's fastest, so
// the page can tell where the kernels start to pay (the crossover that
// simd.DefaultMinLen is set from).
func sweep(cfg js.Value) (any, error) {
	if simdErr != "" {
		return nil, errors.New("no SIMD kernels: " + simdErr)
	}
	accel, err := simd.Load(&simd.Options{MinLen: 1})
	if err != nil {
		return nil, err
	}
	always := compute.NewCPU(&compute.CPUOptions{Accel: accel})
	ms := cfg.Get("ms").Float()
	// Warm up both paths (the engines compile hot code in tiers).
	for _, be := range []*compute.CPU{always, compute.NewCPU(nil)} {
		if _, _, err := sweepOne(be, 4096, ms); err != nil {
			return nil, err
		}
	}
	var rows []any
	for i := range cfg.Get("sizes").Length() {
		size := cfg.Get("sizes").Index(i).Int()
		row := map[string]any{"n": size}
		for range 3 {
			for _, c := range []struct {
				name string
				be   *compute.CPU
			}{{"simd", always}, {"go", compute.NewCPU(nil)}} {
				red, adam, err := sweepOne(c.be, size, ms)
				if err != nil {
					return nil, err
				}
				for key, v := range map[string]float64{c.name + "ReduceNs": red, c.name + "AdamNs": adam} {
					if old, ok := row[key].(float64); !ok || v < old {
						row[key] = v
					}
				}
			}
		}
		rows = append(rows, row)
	}
	return js.ValueOf(rows), nil
}

func sweepOne(be *compute.CPU, size int, ms float64) (red, adam float64, err error) {
	var bufs []compute.Buffer
	for range 7 {
		b, err := be.Alloc(size)
		if err != nil {
			return 0, 0, err
		}
		defer be.Free(b)
		bufs = append(bufs, b)
	}
	p := compute.StepParams{LR: 0.001, RescaleGrad: 1, ClipGradient: -1, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Coef1: 0.001, T: 1}
	timeIt := func(f func() error) (float64, error) {
		iters := 0
		start := time.Now()
		for time.Since(start) < time.Duration(ms*float64(time.Millisecond)) {
			for range 16 {
				if err := f(); err != nil {
					return 0, err
				}
			}
			iters += 16
		}
		return float64(time.Since(start).Nanoseconds()) / float64(iters), nil
	}
	if red, err = timeIt(func() error { return be.Reduce(bufs[4], bufs[:4], 1) }); err != nil {
		return 0, 0, err
	}
	adam, err = timeIt(func() error { return be.Step(compute.OptAdam, &p, bufs[4], bufs[5], bufs[2:4]) })
	return red, adam, err
}
