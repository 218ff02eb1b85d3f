//go:build js || cgo

package shaders

import (
	"fmt"

	"github.com/webkv/webkv/kvcore"
)

// Step applies one optimizer update with the kind's fused kernel; weight and
// states change in place. LAMB runs as three dispatches (lamb.wgsl).
func (b *Backend) Step(kind kvcore.OptKind, p *kvcore.StepParams, weight, grad kvcore.Buffer, states []kvcore.Buffer) error {
	if p == nil {
		return fmt.Errorf("shaders: %v step: nil StepParams", kind)
	}
	if kind < kvcore.OptSGD || kind > kvcore.OptLAMB {
		return fmt.Errorf("shaders: step: unknown optimizer %v", kind)
	}
	w, err := b.buffer(weight, fmt.Sprintf("%v step weight", kind))
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
	if want := kind.NumStates(p); len(states) != want {
		return fmt.Errorf("shaders: %v step needs %d states, got %d", kind, want, len(states))
	}
	bufs := []*Buffer{w, g}
	for i, x := range states {
		s, err := b.buffer(x, fmt.Sprintf("%v step state %d", kind, i))
		if err != nil {
			return err
		}
		if s.n != w.n {
			return fmt.Errorf("shaders: %v state %d has %d values, weight %d", kind, i, s.n, w.n)
		}
		bufs = append(bufs, s)
	}
	// One dispatch may not bind a buffer writable twice, or writable and
	// read-only at once.
	for i := range bufs {
		for j := range i {
			if bufs[i].buf == bufs[j].buf {
				return fmt.Errorf("shaders: %v step: weight, grad and states must be distinct buffers", kind)
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if kind == kvcore.OptLAMB {
		return b.lamb(p, bufs)
	}
	vec4 := b.vec4(bufs...)
	k, err := optKernel(kind, len(states), vec4)
	if err != nil {
		return err
	}
	return b.elementwise(func(bool) *kernel { return k }, bufs, &params{SP: *p})
}

// lamb records LAMB's three phases over every piece of the key, with a
// pooled scratch buffer for lr' and the per-workgroup norm partials. The
// scratch buffer goes back to the pool at once: later recorded work runs
// after these dispatches, so reuse is safe.
func (b *Backend) lamb(p *kvcore.StepParams, bufs []*Buffer) error {
	w := bufs[0]
	vec4 := b.vec4(bufs...)
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
	k1, k2, k3 := lambKernel(1, vec4), lambKernel(2, false), lambKernel(3, vec4)
	base := 0
	err = b.pieces(w.n, func(lo, cnt int) error {
		binds := append(b.elemBinds(bufs, lo, cnt, vec4), redAll)
		c := count(cnt)
		if err := b.dispatch(k1, binds, &params{Aux: uint32(cnt), Aux2: uint32(base), SP: *p}, c); err != nil {
			return err
		}
		x, y := b.grid(c)
		base += int(x) * int(y)
		return nil
	})
	if err != nil {
		return err
	}
	if err := b.dispatch(k2, []binding{redAll}, &params{Aux: uint32(partials), SP: *p}, wgSize); err != nil {
		return err
	}
	return b.pieces(w.n, func(lo, cnt int) error {
		binds := append(b.elemBinds([]*Buffer{w, bufs[2], bufs[3]}, lo, cnt, vec4), redAll)
		return b.dispatch(k3, binds, &params{Aux: uint32(cnt), SP: *p}, count(cnt))
	})
}
