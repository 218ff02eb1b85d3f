//go:build cgo && !js

package shaders_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
)

// stepCases are hyper-parameters reaching every optimizer kernel and flag.
func stepCases() []struct {
	kind compute.OptKind
	p    compute.StepParams
} {
	base := compute.StepParams{LR: 0.05, WD: 0.01, RescaleGrad: 0.5, ClipGradient: -1, T: 2,
		LowerBound: -1, UpperBound: -1, ClipWeights: -1}
	with := func(f func(p *compute.StepParams)) compute.StepParams { p := base; f(&p); return p }
	return []struct {
		kind compute.OptKind
		p    compute.StepParams
	}{
		{compute.OptSGD, base},
		{compute.OptSGD, with(func(p *compute.StepParams) { p.Momentum, p.ClipGradient = 0.9, 0.3 })},
		{compute.OptNAG, with(func(p *compute.StepParams) { p.Momentum = 0.9 })},
		{compute.OptAdam, with(func(p *compute.StepParams) { p.Beta1, p.Beta2, p.Epsilon, p.Coef1 = 0.9, 0.999, 1e-8, 0.01 })},
		{compute.OptAdamW, with(func(p *compute.StepParams) {
			p.Beta1, p.Beta2, p.Epsilon, p.Coef1, p.ClipGradient = 0.9, 0.999, 1e-8, 0.01, 0.4
		})},
		{compute.OptAdaGrad, with(func(p *compute.StepParams) { p.Epsilon = 1e-7 })},
		{compute.OptRMSProp, with(func(p *compute.StepParams) { p.Gamma1, p.Epsilon = 0.9, 1e-8 })},
		{compute.OptRMSProp, with(func(p *compute.StepParams) {
			p.Gamma1, p.Gamma2, p.Epsilon, p.ClipWeights = 0.9, 0.9, 1e-8, 0.8
			p.Flags = compute.FlagCentered | compute.FlagClipWeights
		})},
		{compute.OptAdaDelta, with(func(p *compute.StepParams) { p.Rho, p.Epsilon = 0.9, 1e-5 })},
		{compute.OptSignum, with(func(p *compute.StepParams) { p.WDLH = 0.01 })},
		{compute.OptSignum, with(func(p *compute.StepParams) { p.Momentum, p.WDLH = 0.9, 0.01 })},
		{compute.OptFTRL, with(func(p *compute.StepParams) { p.Lamda1, p.Beta = 0.01, 1 })},
		{compute.OptLAMB, with(func(p *compute.StepParams) {
			p.Beta1, p.Beta2, p.Epsilon, p.Coef1, p.Coef2 = 0.9, 0.999, 1e-6, 0.19, 0.002
			p.LowerBound, p.UpperBound = 0.1, 50
			p.Flags = compute.FlagBiasCorrection | compute.FlagBounds
		})},
	}
}

// TestReduceStep checks the fused reduce-and-update against the CPU
// backend's Reduce then Step, for every optimizer kernel, with 1 input,
// inputs that fit one dispatch, and more (the scratch path), over two steps.
func TestReduceStep(t *testing.T) {
	b := newBackend(t, nil)
	r := seeded(t)
	cpu := compute.NewCPU(nil)
	const n = 1031
	for _, c := range stepCases() {
		p := c.p
		ns := c.kind.NumStates(&p)
		for _, k := range []int{1, 3, 9} {
			t.Run(fmt.Sprintf("%v/states=%d/inputs=%d", c.kind, ns, k), func(t *testing.T) {
				w0 := randData(r, n)
				gw, cw := upload(t, b, w0), upload(t, cpu, w0)
				var gs, cs []compute.Buffer
				for range ns {
					gs = append(gs, upload(t, b, make([]float32, n)))
					cs = append(cs, upload(t, cpu, make([]float32, n)))
				}
				cm := upload(t, cpu, make([]float32, n))
				for step := 0; step < 2; step++ {
					var gi, ci []compute.Buffer
					for range k {
						d := randData(r, n)
						gi = append(gi, upload(t, b, d))
						ci = append(ci, upload(t, cpu, d))
					}
					scale := float32(1) / float32(k)
					if err := b.ReduceStep(c.kind, &p, gw, gi, scale, gs); err != nil {
						t.Fatal(err)
					}
					if err := cpu.Reduce(cm, ci, scale); err != nil {
						t.Fatal(err)
					}
					if err := cpu.Step(c.kind, &p, cw, cm, cs); err != nil {
						t.Fatal(err)
					}
					for _, x := range gi {
						b.Free(x)
					}
				}
				bad := 0
				check := func(what string, got, want []float32) {
					for i := range want {
						if d := math.Abs(float64(got[i] - want[i])); !(d <= 1e-6+1e-5*math.Abs(float64(want[i]))) {
							bad++
							if bad > 2 { // signum and ftrl may flip an element at a jump
								t.Fatalf("%s %d: got %v, want %v", what, i, got[i], want[i])
							}
							t.Logf("%s %d: got %v, want %v (allowed: discontinuity)", what, i, got[i], want[i])
						}
					}
				}
				check("weight", download(t, b, gw), download(t, cpu, cw))
				for i := range gs {
					check(fmt.Sprintf("state %d", i), download(t, b, gs[i]), download(t, cpu, cs[i]))
				}
			})
		}
	}
}
