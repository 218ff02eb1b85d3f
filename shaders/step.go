//go:build js || cgo

package shaders

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
)

// Step applies one optimizer update with the kind's fused kernel; weight and
// states change in place. LAMB runs as three dispatches (lamb.wgsl).
func (b *Backend) Step(kind compute.OptKind, p *compute.StepParams, weight, grad compute.Buffer, states []compute.Buffer) error {
	w, ss, err := b.stepArgs(kind, p, weight, states)
	if err != nil {
		return err
	}
	g, err := b.buffer(grad, fmt.Sprintf("%v step grad", kind))
	if err != nil {
		return err
	}
	if g.n != w.n {
		return fmt.Errorf("shaders: %v step: grad has %d values, weight %d", kind, g.n, w.n)
	}
	if err := distinct(kind, append([]*Buffer{w, g}, ss...)); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.step(kind, p, w, []*Buffer{g}, 1, ss)
}

// ReduceStep is Reduce followed by Step in one pass: the gradient
// scale*(((srcs[0] + srcs[1]) + …)) is summed in registers, in Reduce's
// order, and never written to memory. It saves writing and reading the
// merged gradient (for 4 inputs and Adam, 10 instead of 12 array passes).
// Inputs beyond what one dispatch can bind (8 storage buffers, less the
// weight and states) are first summed into a scratch buffer. The result is
// that of Reduce into a buffer m, then Step(kind, p, weight, m, states).
//
// compute.Backend has no such method yet; a store can use it through an
// interface assertion.
func (b *Backend) ReduceStep(kind compute.OptKind, p *compute.StepParams, weight compute.Buffer, srcs []compute.Buffer, scale float32, states []compute.Buffer) error {
	if len(srcs) == 0 {
		return fmt.Errorf("shaders: %v reduce-step of no inputs", kind)
	}
	w, ss, err := b.stepArgs(kind, p, weight, states)
	if err != nil {
		return err
	}
	ins := make([]*Buffer, len(srcs))
	for i, x := range srcs {
		s, err := b.buffer(x, fmt.Sprintf("%v reduce-step input %d", kind, i))
		if err != nil {
			return err
		}
		if s.n != w.n {
			return fmt.Errorf("shaders: %v reduce-step input %d has %d values, weight %d", kind, i, s.n, w.n)
		}
		for _, o := range append([]*Buffer{w}, ss...) {
			if s.buf == o.buf {
				return fmt.Errorf("shaders: %v reduce-step input %d is the weight or a state", kind, i)
			}
		}
		ins[i] = s
	}
	if err := distinct(kind, append([]*Buffer{w}, ss...)); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	budget := b.maxInputs - len(ss) // storage bindings left besides weight and states
	if kind == compute.OptLAMB {
		budget-- // the norms scratch buffer
	}
	if len(ins) > budget {
		// Sum the leading inputs into scratch first; the fused pass then
		// continues from it, keeping the order of additions.
		m := len(ins) - budget + 1
		scratch, err := b.alloc(w.n)
		if err != nil {
			return err
		}
		defer b.free(scratch) // later recorded work runs after; reuse is safe
		acc := false
		for rest := ins[:m]; len(rest) > 0; {
			k := min(len(rest), b.maxInputs)
			if err := b.reducePass(scratch, rest[:k], acc, 1); err != nil {
				return err
			}
			rest, acc = rest[k:], true
		}
		ins = append([]*Buffer{scratch}, ins[m:]...)
	}
	return b.step(kind, p, w, ins, scale, ss)
}

// stepArgs checks what Step and ReduceStep share.
func (b *Backend) stepArgs(kind compute.OptKind, p *compute.StepParams, weight compute.Buffer, states []compute.Buffer) (*Buffer, []*Buffer, error) {
	if p == nil {
		return nil, nil, fmt.Errorf("shaders: %v step: nil StepParams", kind)
	}
	if kind < compute.OptSGD || kind > compute.OptLAMB {
		return nil, nil, fmt.Errorf("shaders: step: unknown optimizer %v", kind)
	}
	w, err := b.buffer(weight, fmt.Sprintf("%v step weight", kind))
	if err != nil {
		return nil, nil, err
	}
	if want := kind.NumStates(p); len(states) != want {
		return nil, nil, fmt.Errorf("shaders: %v step needs %d states, got %d", kind, want, len(states))
	}
	var ss []*Buffer
	for i, x := range states {
		s, err := b.buffer(x, fmt.Sprintf("%v step state %d", kind, i))
		if err != nil {
			return nil, nil, err
		}
		if s.n != w.n {
			return nil, nil, fmt.Errorf("shaders: %v state %d has %d values, weight %d", kind, i, s.n, w.n)
		}
		ss = append(ss, s)
	}
	return w, ss, nil
}

// distinct rejects a buffer bound twice where one binding writes: WebGPU
// forbids it within one dispatch.
func distinct(kind compute.OptKind, bufs []*Buffer) error {
	for i := range bufs {
		for j := range i {
			if bufs[i].buf == bufs[j].buf {
				return fmt.Errorf("shaders: %v step: weight, grad and states must be distinct buffers", kind)
			}
		}
	}
	return nil
}

// step records the update with the gradient in grads: one buffer (Step,
// scale 1) or the inputs of a fused reduction.
func (b *Backend) step(kind compute.OptKind, p *compute.StepParams, w *Buffer, grads []*Buffer, scale float32, ss []*Buffer) error {
	ins := len(grads)
	if ins == 1 && scale == 1 {
		ins = 0 // the plain kernel, which reads the gradient as is
	}
	bufs := append(append(append(make([]*Buffer, 0, 1+len(grads)+len(ss)), w), grads...), ss...)
	vec4 := b.vec4(bufs...)
	prm := &params{Scale: scale, SP: *p}
	if kind == compute.OptLAMB {
		return b.lamb(prm, bufs, ins, vec4)
	}
	k, err := optKernel(kind, len(ss), ins, vec4, !plainGrad(p), scale != 1)
	if err != nil {
		return err
	}
	return b.elementwise(func(bool) *kernel { return k }, bufs, prm)
}

// lamb records LAMB's three phases over every piece of the key, with a
// pooled scratch buffer for lr' and the per-workgroup norm partials. The
// scratch buffer goes back to the pool at once: later recorded work runs
// after these dispatches, so reuse is safe. bufs is weight, the gradient
// buffer(s), mean, var.
func (b *Backend) lamb(prm *params, bufs []*Buffer, ins int, vec4 bool) error {
	w := bufs[0]
	mean, vr := bufs[len(bufs)-2], bufs[len(bufs)-1]
	count := func(cnt int) int {
		if vec4 {
			return (cnt + 3) / 4
		}
		return cnt
	}
	partials := 0
	b.pieces(w.n, func(lo, cnt int) error {
		x, y := b.grid(count(cnt))
		partials += int(x) * int(y)
		return nil
	})
	red, err := b.alloc(4 + 2*partials)
	if err != nil {
		return err
	}
	defer b.free(red)
	redAll := binding{red, 0, red.capWords}
	k1, k2, k3 := lambKernel(1, ins, vec4), lambKernel(2, 0, false), lambKernel(3, 0, vec4)
	base := 0
	err = b.pieces(w.n, func(lo, cnt int) error {
		binds := append(b.elemBinds(bufs, lo, cnt, vec4), redAll)
		c := count(cnt)
		p1 := *prm
		p1.Aux, p1.Aux2 = uint32(cnt), uint32(base)
		if err := b.dispatch(k1, binds, &p1, c); err != nil {
			return err
		}
		x, y := b.grid(c)
		base += int(x) * int(y)
		return nil
	})
	if err != nil {
		return err
	}
	p2 := *prm
	p2.Aux = uint32(partials)
	if err := b.dispatch(k2, []binding{redAll}, &p2, wgSize); err != nil {
		return err
	}
	return b.pieces(w.n, func(lo, cnt int) error {
		binds := append(b.elemBinds([]*Buffer{w, mean, vr}, lo, cnt, vec4), redAll)
		p3 := *prm
		p3.Aux = uint32(cnt)
		return b.dispatch(k3, binds, &p3, count(cnt))
	})
}

// plainGrad reports whether p leaves the gradient as is: rescale_grad 1
// (x*1 == x in float32) and no clipping (the kernels clip where
// clip_gradient >= 0, so NaN means none too).
func plainGrad(p *compute.StepParams) bool {
	return p.RescaleGrad == 1 && !(p.ClipGradient >= 0)
}
