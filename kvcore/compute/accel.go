package compute

import "fmt"

// Accelerator runs the CPU backend's element loops somewhere faster, with
// the same results: package wasm/js/simd's WebAssembly SIMD kernels in
// browsers, where Go's wasm code has no SIMD. A CPU made with
// CPUOptions.Accel checks every call as usual and hands the accelerator the
// well-formed ones on at least MinLen elements, as the slices of its
// buffers: lengths agree, a reduce's output may alias its first input only,
// ReduceStep's sources are distinct from the weight and the states, and a
// step has the states its kind needs. Each method must give the bits of the
// CPU's own loops (the reference) and return an error rather than panic;
// it may be called from several goroutines at once.
type Accelerator interface {
	// Name is appended to the backend's: "cpu+" + Name().
	Name() string
	// MinLen is the length from which calls go to the accelerator; shorter
	// arrays stay on Go's loops (a call into the accelerator has a fixed
	// cost).
	MinLen() int
	Fill(d []float32, v float32) error
	Reduce(d []float32, srcs [][]float32, scale float32) error
	Step(kind OptKind, p *StepParams, w, g []float32, states [][]float32) error
	ReduceStep(kind OptKind, p *StepParams, w []float32, srcs [][]float32, scale float32, states [][]float32) error
	Quantize(c Compression, out, g, r []float32) error
	Dequantize(c Compression, out, in []float32) error
}

// accelerates reports whether an operation on n elements goes to the
// accelerator.
func (c *CPU) accelerates(n int) bool { return c.accel != nil && n >= c.accel.MinLen() }

// ReduceStep is Reduce of srcs into a temporary, then Step with it as the
// gradient (ReduceStepper), in one pass: on Go's loops each goroutine sums
// blocks that stay in cache and steps from them (see reduceStep); with an
// accelerator the accelerator's fused pass. An accelerated call whose
// sources alias the weight or a state is not fusable there: it reduces into
// a temporary from the pool (without zeroing it), then steps.
func (c *CPU) ReduceStep(kind OptKind, p *StepParams, weight Buffer, srcs []Buffer, scale float32, states []Buffer) error {
	w, err := cpuData(weight)
	if err != nil {
		return err
	}
	if !c.accelerates(len(w)) {
		return c.reduceStep(kind, p, w, srcs, scale, states)
	}
	if in, st, ok := fusable(kind, p, w, srcs, states); ok {
		return c.accel.ReduceStep(kind, p, w, in, scale, st)
	}
	m := c.scratch(max(len(w), 1))
	defer c.Free(m)
	if err := c.Reduce(m, srcs, scale); err != nil {
		return fmt.Errorf("compute: cpu reduce+step: %w", err)
	}
	return c.Step(kind, p, weight, m, states)
}

// fusable returns the slices of a well-formed ReduceStep call, or ok false
// (the unfused path then reports what is wrong).
func fusable(kind OptKind, p *StepParams, w []float32, srcs, states []Buffer) (in, st [][]float32, ok bool) {
	if p == nil || kind < OptSGD || kind > OptLAMB || len(states) != kind.NumStates(p) || len(srcs) == 0 || len(w) == 0 {
		return nil, nil, false
	}
	for _, b := range states {
		s, err := cpuData(b)
		if err != nil || len(s) != len(w) {
			return nil, nil, false
		}
		st = append(st, s)
	}
	for _, b := range srcs {
		s, err := cpuData(b)
		if err != nil || len(s) != len(w) || &s[0] == &w[0] {
			return nil, nil, false
		}
		for _, x := range st {
			if &s[0] == &x[0] {
				return nil, nil, false
			}
		}
		in = append(in, s)
	}
	return in, st, true
}

// scratch returns a buffer of n words for the caller to overwrite: a
// pooled one as it was, or a new one.
func (c *CPU) scratch(n int) *CPUBuffer {
	c.mu.Lock()
	if l := c.free[n]; len(l) > 0 {
		b := l[len(l)-1]
		l[len(l)-1] = nil
		c.free[n] = l[:len(l)-1]
		c.pooled -= n
		c.mu.Unlock()
		return b
	}
	c.mu.Unlock()
	return newCPUBuffer(n)
}

var (
	_ ReduceStepper = (*CPU)(nil)
	_ FiniteWriter  = (*CPU)(nil)
)
