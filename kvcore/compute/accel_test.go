package compute_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/compute/backendtest"
)

// refAccel is an Accelerator that runs each call on a plain CPU backend
// (copying the slices in and out) and counts the calls, to check what a CPU
// with an accelerator hands it.
type refAccel struct {
	min   int
	ref   *compute.CPU
	calls atomic.Int64
	fail  error
}

func newRefAccel(min int) *refAccel { return &refAccel{min: min, ref: compute.NewCPU(nil)} }

func (a *refAccel) Name() string { return "ref" }
func (a *refAccel) MinLen() int  { return a.min }

// run copies ins into buffers of the reference, runs f, and copies them back.
func (a *refAccel) run(f func(b []compute.Buffer) error, ins ...[]float32) error {
	a.calls.Add(1)
	if a.fail != nil {
		return a.fail
	}
	bufs := make([]compute.Buffer, len(ins))
	for i, in := range ins {
		b, err := a.ref.Alloc(len(in))
		if err != nil {
			return err
		}
		defer a.ref.Free(b)
		if err := a.ref.Write(b, 0, in); err != nil {
			return err
		}
		bufs[i] = b
	}
	if err := f(bufs); err != nil {
		return err
	}
	for i, in := range ins {
		if err := a.ref.Read(bufs[i], 0, in); err != nil {
			return err
		}
	}
	return nil
}

func (a *refAccel) Fill(d []float32, v float32) error {
	return a.run(func(b []compute.Buffer) error { return a.ref.Fill(b[0], v) }, d)
}

func (a *refAccel) Reduce(d []float32, srcs [][]float32, scale float32) error {
	if &d[0] == &srcs[0][0] {
		return a.run(func(b []compute.Buffer) error { return a.ref.Reduce(b[0], b, scale) }, srcs...)
	}
	return a.run(func(b []compute.Buffer) error { return a.ref.Reduce(b[0], b[1:], scale) }, append([][]float32{d}, srcs...)...)
}

func (a *refAccel) Step(kind compute.OptKind, p *compute.StepParams, w, g []float32, states [][]float32) error {
	return a.run(func(b []compute.Buffer) error { return a.ref.Step(kind, p, b[0], b[1], b[2:]) }, append([][]float32{w, g}, states...)...)
}

func (a *refAccel) ReduceStep(kind compute.OptKind, p *compute.StepParams, w []float32, srcs [][]float32, scale float32, states [][]float32) error {
	g := make([]float32, len(w))
	if err := a.Reduce(g, srcs, scale); err != nil {
		return err
	}
	return a.Step(kind, p, w, g, states)
}

func (a *refAccel) Quantize(c compute.Compression, out, g, r []float32) error {
	return a.run(func(b []compute.Buffer) error { return a.ref.Quantize(c, b[1], b[2], b[0]) }, out, g, r)
}

func (a *refAccel) Dequantize(c compute.Compression, out, in []float32) error {
	return a.run(func(b []compute.Buffer) error { return a.ref.Dequantize(c, b[1], b[0]) }, out, in)
}

// TestAccelConformance runs the conformance suite on a CPU whose calls on
// 100 elements or more go to an accelerator.
func TestAccelConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) compute.Backend {
		return compute.NewCPU(&compute.CPUOptions{Accel: newRefAccel(100)})
	}, backendtest.Short())
}

// TestAccelDispatch checks which calls reach the accelerator: well-formed
// ones from MinLen on, and that its errors come back.
func TestAccelDispatch(t *testing.T) {
	a := newRefAccel(8)
	c := compute.NewCPU(&compute.CPUOptions{Accel: a})
	if c.Name() != "cpu+ref" {
		t.Errorf("Name %q", c.Name())
	}
	buf := func(n int) compute.Buffer {
		b, err := c.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	calls := func(what string, want int64, f func() error) {
		t.Helper()
		before := a.calls.Load()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := a.calls.Load() - before; got != want {
			t.Errorf("%s: %d calls reached the accelerator, want %d", what, got, want)
		}
	}
	small, big := buf(7), buf(8)
	calls("Fill of 7", 0, func() error { return c.Fill(small, 1) })
	calls("Fill of 8", 1, func() error { return c.Fill(big, 1) })
	calls("Reduce of 8", 1, func() error { return c.Reduce(buf(8), []compute.Buffer{big, buf(8)}, 1) })
	p := &compute.StepParams{LR: 0.1, RescaleGrad: 1, ClipGradient: -1, Momentum: 0.9}
	calls("Step of 8", 1, func() error { return c.Step(compute.OptSGD, p, big, buf(8), []compute.Buffer{buf(8)}) })
	calls("ReduceStep of 8", 2, func() error {
		return c.ReduceStep(compute.OptSGD, p, big, []compute.Buffer{buf(8), buf(8)}, 0.5, []compute.Buffer{buf(8)})
	})
	// A source that is also the weight is not fusable: Reduce, then Step.
	calls("ReduceStep with the weight as a source", 2, func() error {
		return c.ReduceStep(compute.OptSGD, p, big, []compute.Buffer{big, buf(8)}, 0.5, []compute.Buffer{buf(8)})
	})
	calls("Step of 7", 0, func() error { return c.Step(compute.OptSGD, p, small, buf(7), []compute.Buffer{buf(7)}) })
	cm := compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}
	calls("Quantize of 32", 1, func() error { return c.Quantize(cm, buf(32), buf(32), buf(2)) })
	calls("Dequantize of 32", 1, func() error { return c.Dequantize(cm, buf(2), buf(32)) })
	// Malformed calls fail in the CPU's checks, before the accelerator.
	before := a.calls.Load()
	if err := c.Step(compute.OptAdam, p, big, buf(8), nil); err == nil {
		t.Error("Step with missing states: no error")
	}
	if err := c.Reduce(big, []compute.Buffer{buf(9)}, 1); err == nil {
		t.Error("Reduce of another length: no error")
	}
	if a.calls.Load() != before {
		t.Error("a malformed call reached the accelerator")
	}
	a.fail = errors.New("kernel trouble")
	if err := c.Fill(big, 2); !errors.Is(err, a.fail) {
		t.Errorf("an accelerator's error: %v", err)
	}
}

// TestReduceStep checks that ReduceStep equals Reduce then Step, on a
// plain CPU and on one with an accelerator, for a kind with states and for
// LAMB (two phases).
func TestReduceStep(t *testing.T) {
	const n = 1000
	vals := func(seed int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((i*7919+seed*104729)%2001-1000) / 1000
		}
		return v
	}
	p := &compute.StepParams{LR: 0.01, RescaleGrad: 1, ClipGradient: -1, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Coef1: 0.003, Coef2: 0.002, T: 1}
	for _, kind := range []compute.OptKind{compute.OptAdam, compute.OptLAMB} {
		for _, c := range []*compute.CPU{compute.NewCPU(nil), compute.NewCPU(&compute.CPUOptions{Accel: newRefAccel(1)})} {
			ref := compute.NewCPU(nil)
			upload := func(be *compute.CPU, v []float32) compute.Buffer {
				b, err := be.Alloc(n)
				if err != nil {
					t.Fatal(err)
				}
				if err := be.Write(b, 0, v); err != nil {
					t.Fatal(err)
				}
				return b
			}
			w, rw := upload(c, vals(1)), upload(ref, vals(1))
			srcs := []compute.Buffer{upload(c, vals(2)), upload(c, vals(3)), upload(c, vals(4))}
			rsrcs := []compute.Buffer{upload(ref, vals(2)), upload(ref, vals(3)), upload(ref, vals(4))}
			states := []compute.Buffer{upload(c, make([]float32, n)), upload(c, make([]float32, n))}
			rstates := []compute.Buffer{upload(ref, make([]float32, n)), upload(ref, make([]float32, n))}
			for range 2 {
				if err := c.ReduceStep(kind, p, w, srcs, 0.5, states); err != nil {
					t.Fatal(err)
				}
				m := upload(ref, make([]float32, n))
				if err := ref.Reduce(m, rsrcs, 0.5); err != nil {
					t.Fatal(err)
				}
				if err := ref.Step(kind, p, rw, m, rstates); err != nil {
					t.Fatal(err)
				}
			}
			for i, pair := range [][2]compute.Buffer{{w, rw}, {states[0], rstates[0]}, {states[1], rstates[1]}} {
				got, want := make([]float32, n), make([]float32, n)
				c.Read(pair[0], 0, got)
				ref.Read(pair[1], 0, want)
				for j := range want {
					if got[j] != want[j] {
						t.Fatalf("%v on %s: array %d value %d is %v, Reduce then Step gives %v", kind, c.Name(), i, j, got[j], want[j])
					}
				}
			}
		}
	}
}
