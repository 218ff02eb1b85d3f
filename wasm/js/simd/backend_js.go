//go:build js

package simd

import (
	"errors"
	"fmt"
	"syscall/js"

	"github.com/webkv/webkv/kvcore"
)

// Backend is the CPU backend (kvcore.CPU()) with its element loops run by
// the SIMD kernels: its buffers are the CPU backend's, so both may use
// them, and every result has the reference's bits. Arrays shorter than
// MinLen stay on the Go loops, where one call into the module costs more
// than it saves.
type Backend struct {
	cpu kvcore.Backend
	k   *kernels
	min int
}

// DefaultMinLen is the length from which Backend runs an operation through
// the kernels rather than Go's loops: below it the cost of a call from Go
// into the module (about a microsecond through syscall/js) is more than the
// kernel saves. Measured in Chromium, see RATIONALE.md.
const DefaultMinLen = 1024

// Options configure New.
type Options struct {
	// MinLen is the length from which operations run through the kernels
	// (0: DefaultMinLen; 1: always).
	MinLen int
}

// ErrUnavailable is returned by Load when the page has no SIMD kernels:
// the browser lacks WebAssembly SIMD, or webkv.js did not load them.
var ErrUnavailable = errors.New("simd: no WebAssembly SIMD kernels")

// Load returns a backend on the kernels that webkv.js instantiated over
// this program's memory (globalThis.__webkvSIMD: the instance's exports,
// or {error} saying why there are none).
func Load(opts *Options) (*Backend, error) {
	v := js.Global().Get("__webkvSIMD")
	switch {
	case v.IsUndefined() || v.IsNull():
		return nil, fmt.Errorf("%w: the loader did not provide them (load webkv.wasm through webkv.js)", ErrUnavailable)
	case v.Type() == js.TypeObject && v.Get("error").Type() == js.TypeString:
		return nil, fmt.Errorf("%w: %s", ErrUnavailable, v.Get("error").String())
	}
	return New(v, opts)
}

// New returns a backend on the exports of an instance of kernels.wasm whose
// imported memory ("go" "mem") is this program's.
func New(exports js.Value, opts *Options) (be *Backend, err error) {
	e, err := newJSEngine(exports)
	if err != nil {
		return nil, err
	}
	min := DefaultMinLen
	if opts != nil && opts.MinLen > 0 {
		min = opts.MinLen
	}
	b := &Backend{cpu: kvcore.CPU(), k: newKernels(e), min: min}
	// One call proves the module reads and writes this program's memory.
	defer func() {
		if r := recover(); r != nil {
			be, err = nil, fmt.Errorf("simd: the kernels do not run on this program's memory: %v", r)
		}
	}()
	probe := []float32{0, 0, 0, 0}
	b.k.fill(probe, 2)
	if probe[3] != 2 {
		return nil, errors.New("simd: the kernels do not see this program's memory (instantiated with another memory?)")
	}
	return b, nil
}

// Name is "cpu+wasm-simd".
func (b *Backend) Name() string { return "cpu+wasm-simd" }

// MinLen is the length from which operations run through the kernels.
func (b *Backend) MinLen() int { return b.min }

func (b *Backend) Alloc(n int) (kvcore.Buffer, error) { return b.cpu.Alloc(n) }
func (b *Backend) Free(buf kvcore.Buffer)             { b.cpu.Free(buf) }
func (b *Backend) Write(dst kvcore.Buffer, off int, src []float32) error {
	return b.cpu.Write(dst, off, src)
}
func (b *Backend) Read(src kvcore.Buffer, off int, dst []float32) error {
	return b.cpu.Read(src, off, dst)
}
func (b *Backend) Copy(dst, src kvcore.Buffer) error { return b.cpu.Copy(dst, src) }
func (b *Backend) Sync() error                       { return nil }

// data returns the slice of a CPU buffer, or nil.
func data(buf kvcore.Buffer) []float32 {
	cb, ok := buf.(*kvcore.CPUBuffer)
	if !ok || cb == nil {
		return nil
	}
	return cb.Float32s()
}

// guard turns a failure inside a kernel call (a JavaScript exception, which
// would be a bug) into an error.
func guard(op string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("simd: %s: kernel failed: %v", op, r)
	}
}

func (b *Backend) Fill(dst kvcore.Buffer, v float32) (err error) {
	d := data(dst)
	if len(d) < b.min {
		return b.cpu.Fill(dst, v)
	}
	defer guard("fill", &err)
	b.k.fill(d, v)
	return nil
}

// inputs returns the slices of srcs when they are CPU buffers of length n
// of which only the first may be dst, else nil (the CPU backend then runs
// the call, and reports what is wrong).
func inputs(d []float32, srcs []kvcore.Buffer, n int) [][]float32 {
	if len(srcs) == 0 {
		return nil
	}
	out := make([][]float32, len(srcs))
	for i, s := range srcs {
		x := data(s)
		if len(x) != n || (i > 0 && d != nil && &x[0] == &d[0]) {
			return nil
		}
		out[i] = x
	}
	return out
}

func (b *Backend) Reduce(dst kvcore.Buffer, srcs []kvcore.Buffer, scale float32) (err error) {
	d := data(dst)
	if len(d) < b.min {
		return b.cpu.Reduce(dst, srcs, scale)
	}
	in := inputs(d, srcs, len(d))
	if in == nil {
		return b.cpu.Reduce(dst, srcs, scale)
	}
	defer guard("reduce", &err)
	b.k.reduce(d, in, scale)
	return nil
}

// stepArrays returns weight, grad and states as slices when the call is
// well formed, else ok false.
func stepArrays(kind kvcore.OptKind, p *kvcore.StepParams, weight kvcore.Buffer, states []kvcore.Buffer) (w []float32, s [][]float32, ok bool) {
	w = data(weight)
	if w == nil || p == nil || kind < kvcore.OptSGD || kind > kvcore.OptLAMB || len(states) != kind.NumStates(p) {
		return nil, nil, false
	}
	s = make([][]float32, len(states))
	for i, st := range states {
		if s[i] = data(st); len(s[i]) != len(w) {
			return nil, nil, false
		}
	}
	return w, s, true
}

func (b *Backend) Step(kind kvcore.OptKind, p *kvcore.StepParams, weight, grad kvcore.Buffer, states []kvcore.Buffer) (err error) {
	w, s, ok := stepArrays(kind, p, weight, states)
	g := data(grad)
	if !ok || len(w) < b.min || len(g) != len(w) {
		return b.cpu.Step(kind, p, weight, grad, states)
	}
	defer guard(kind.String()+" step", &err)
	return b.k.step(kind, p, w, g, s)
}

// ReduceStep is Reduce into a temporary then Step, fused: the sum of each
// block of 2048 elements stays in the L1 cache.
func (b *Backend) ReduceStep(kind kvcore.OptKind, p *kvcore.StepParams, weight kvcore.Buffer, srcs []kvcore.Buffer, scale float32, states []kvcore.Buffer) (err error) {
	w, s, ok := stepArrays(kind, p, weight, states)
	var in [][]float32
	if ok && len(w) >= b.min {
		in = inputs(nil, srcs, len(w))
		written := append(s[:len(s):len(s)], w)
	check:
		for _, x := range in {
			for _, y := range written {
				if &x[0] == &y[0] {
					in = nil // a source that is also written: not fusable
					break check
				}
			}
		}
	}
	if in == nil {
		return b.reduceThenStep(kind, p, weight, srcs, scale, states)
	}
	defer guard(kind.String()+" reduce+step", &err)
	return b.k.reduceStep(kind, p, w, in, scale, s)
}

func (b *Backend) reduceThenStep(kind kvcore.OptKind, p *kvcore.StepParams, weight kvcore.Buffer, srcs []kvcore.Buffer, scale float32, states []kvcore.Buffer) error {
	if weight == nil {
		return errors.New("simd: reduce+step: nil weight")
	}
	m, err := b.cpu.Alloc(max(weight.Len(), 1))
	if err != nil {
		return err
	}
	defer b.cpu.Free(m)
	if err := b.Reduce(m, srcs, scale); err != nil {
		return err
	}
	return b.Step(kind, p, weight, m, states)
}

func (b *Backend) Quantize(c kvcore.Compression, grad, residual, out kvcore.Buffer) (err error) {
	g, r, o := data(grad), data(residual), data(out)
	if len(g) < b.min || len(r) != len(g) || len(o) != c.Kind.PackedLen(len(g)) || c.Kind == kvcore.CompressNone || c.Validate() != nil {
		return b.cpu.Quantize(c, grad, residual, out)
	}
	defer guard("quantize", &err)
	b.k.quantize(c, o, g, r)
	return nil
}

func (b *Backend) Dequantize(c kvcore.Compression, in, out kvcore.Buffer) (err error) {
	i, o := data(in), data(out)
	if len(o) < b.min || len(i) != c.Kind.PackedLen(len(o)) || c.Kind == kvcore.CompressNone || c.Validate() != nil {
		return b.cpu.Dequantize(c, in, out)
	}
	defer guard("dequantize", &err)
	b.k.dequantize(c, o, i)
	return nil
}

var (
	_ kvcore.Backend       = (*Backend)(nil)
	_ kvcore.ReduceStepper = (*Backend)(nil)
)
