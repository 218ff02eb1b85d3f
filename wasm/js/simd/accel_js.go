//go:build js

package simd

import (
	"errors"
	"fmt"
	"syscall/js"

	"github.com/webkv/webkv/kvcore/compute"
)

// Accel is a compute.Accelerator on the SIMD kernels: the CPU backend made
// with it,
//
//	cpu := compute.NewCPU(&compute.CPUOptions{Accel: accel})
//
// keeps its buffers (plain Go memory, shared with every CPU backend) and
// its checks, and runs its element loops on arrays from MinLen elements on
// through the kernels, with the reference's bits. Its name is then
// "cpu+wasm-simd".
type Accel struct {
	k   *kernels
	min int
}

// DefaultMinLen is the length from which the kernels run an operation
// rather than Go's loops. Below it the fixed cost of a call from Go into
// the module (1.5–3 µs through syscall/js in Chromium) is more than the
// kernels save: measured with BenchmarkBrowserCPU's sweep (a 4-input reduce
// and an Adam step break even between 512 and 2048 elements, near 1024 in
// most runs), see RATIONALE.md.
const DefaultMinLen = 1024

// Options configure Load and New.
type Options struct {
	// MinLen is the length from which operations run on the kernels (0:
	// DefaultMinLen; 1: every length, as the tests do).
	MinLen int
}

// ErrUnavailable is returned by Load when the page has no SIMD kernels: the
// browser lacks WebAssembly SIMD, or the program was not loaded by webkv.js.
var ErrUnavailable = errors.New("simd: no WebAssembly SIMD kernels")

// Load returns an accelerator on the kernels that webkv.js instantiated
// over this program's memory (globalThis.__webkvSIMD: the instance's
// exports, or {error} saying why there are none).
func Load(opts *Options) (*Accel, error) {
	v := js.Global().Get("__webkvSIMD")
	switch {
	case v.IsUndefined() || v.IsNull():
		return nil, fmt.Errorf("%w: the loader did not provide them (load webkv.wasm through webkv.js)", ErrUnavailable)
	case v.Type() == js.TypeObject && v.Get("error").Type() == js.TypeString:
		return nil, fmt.Errorf("%w: %s", ErrUnavailable, v.Get("error").String())
	}
	return New(v, opts)
}

// New returns an accelerator on the exports of an instance of the kernels
// module (webkv-simd.wasm) whose imported memory ("go" "mem") is this
// program's.
func New(exports js.Value, opts *Options) (a *Accel, err error) {
	e, err := newJSEngine(exports)
	if err != nil {
		return nil, err
	}
	min := DefaultMinLen
	if opts != nil && opts.MinLen > 0 {
		min = opts.MinLen
	}
	a = &Accel{k: newKernels(e), min: min}
	// One call proves the module reads and writes this program's memory.
	probe := []float32{0, 0, 0, 0}
	if err := a.Fill(probe, 2); err != nil {
		return nil, err
	}
	if probe[3] != 2 {
		return nil, errors.New("simd: the kernels do not see this program's memory (instantiated over another memory?)")
	}
	return a, nil
}

// Name is "wasm-simd".
func (a *Accel) Name() string { return "wasm-simd" }

// MinLen is the length from which operations run on the kernels.
func (a *Accel) MinLen() int { return a.min }

// guard turns a failure inside a kernel call (a JavaScript exception: a
// bug, or a module of another version) into an error.
func guard(op string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("simd: %s: the kernel failed: %v", op, r)
	}
}

// Fill sets every element of d to v.
func (a *Accel) Fill(d []float32, v float32) (err error) {
	defer guard("fill", &err)
	a.k.fill(d, v)
	return nil
}

// Reduce sets d to scale times the sum of srcs, left to right.
func (a *Accel) Reduce(d []float32, srcs [][]float32, scale float32) (err error) {
	defer guard("reduce", &err)
	a.k.reduce(d, srcs, scale)
	return nil
}

// Step applies one optimizer update.
func (a *Accel) Step(kind compute.OptKind, p *compute.StepParams, w, g []float32, states [][]float32) (err error) {
	defer guard(kind.String()+" step", &err)
	return a.k.step(kind, p, w, g, states)
}

// ReduceStep is Reduce into a temporary then Step, fused: the sum of each
// block of 2048 elements stays in the L1 cache.
func (a *Accel) ReduceStep(kind compute.OptKind, p *compute.StepParams, w []float32, srcs [][]float32, scale float32, states [][]float32) (err error) {
	defer guard(kind.String()+" reduce+step", &err)
	return a.k.reduceStep(kind, p, w, srcs, scale, states)
}

// Quantize adds g into r and packs the codes of r into out.
func (a *Accel) Quantize(c compute.Compression, out, g, r []float32) (err error) {
	defer guard("quantize", &err)
	a.k.quantize(c, out, g, r)
	return nil
}

// Dequantize unpacks in into out.
func (a *Accel) Dequantize(c compute.Compression, out, in []float32) (err error) {
	defer guard("dequantize", &err)
	a.k.dequantize(c, out, in)
	return nil
}

var _ compute.Accelerator = (*Accel)(nil)
