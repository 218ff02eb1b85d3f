package backendtest

import (
	"fmt"
	"math"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// stepCase is one optimizer configuration: the kernel, its parameters for
// update t (from 1) and the initial value of each state.
type stepCase struct {
	name      string
	kind      compute.OptKind
	params    func(t int) compute.StepParams
	stateInit func(i int) float32
}

// discontinuous reports whether kind's result jumps somewhere, so that
// implementations that round differently may disagree in an element that
// lies within rounding of the jump (see the package comment).
func discontinuous(k compute.OptKind) bool {
	return k == compute.OptSignum || k == compute.OptFTRL
}

// stepSpecs are declarative optimizer specs (JSON, MXNet's parameter names)
// that go through optimizer.Parse and (*optimizer.Spec).Params, so the
// derived parameters (bias corrections, schedules) are the store's own.
var stepSpecs = []struct {
	kind compute.OptKind
	spec string
}{
	{compute.OptSGD, `{"name":"sgd","learning_rate":0.1}`},
	{compute.OptSGD, `{"name":"sgd","learning_rate":0.1,"momentum":0.5,"lr_scheduler":{"type":"factor","step":1,"factor":0.5}}`},
	{compute.OptSGD, `{"name":"sgd","learning_rate":0.1,"momentum":0.9,"wd":0.001,"rescale_grad":0.5,"clip_gradient":0.3}`},
	{compute.OptNAG, `{"name":"nag","learning_rate":0.1,"momentum":0.9,"wd":0.001}`},
	{compute.OptAdam, `{"name":"adam","learning_rate":0.01,"wd":0.0001}`},
	{compute.OptAdamW, `{"name":"adamw","learning_rate":0.01,"wd":0.01}`},
	{compute.OptAdamW, `{"name":"adamw","learning_rate":0.01,"wd":0.01,"correct_bias":false,"eta":0.5}`},
	{compute.OptAdaGrad, `{"name":"adagrad","learning_rate":0.1}`},
	{compute.OptRMSProp, `{"name":"rmsprop","learning_rate":0.01}`},
	{compute.OptRMSProp, `{"name":"rmsprop","learning_rate":0.01,"centered":true,"clip_weights":0.8}`},
	{compute.OptAdaDelta, `{"name":"adadelta","rho":0.95}`},
	{compute.OptSignum, `{"name":"signum","learning_rate":0.01,"momentum":0.9,"wd_lh":0.001}`},
	{compute.OptFTRL, `{"name":"ftrl","learning_rate":0.1,"lamda1":0.01,"beta":1}`},
	{compute.OptLAMB, `{"name":"lamb","learning_rate":0.01,"wd":0.01}`},
	{compute.OptLAMB, `{"name":"lamb","learning_rate":0.01,"lower_bound":0.001,"upper_bound":10,"bias_correction":false}`},
}

func adamParams(t int) compute.StepParams {
	const lr, b1, b2 = 0.01, 0.9, 0.999
	return compute.StepParams{LR: lr, WD: 1e-4, RescaleGrad: 1, ClipGradient: -1,
		ClipWeights: -1, LowerBound: -1, UpperBound: -1,
		Beta1: b1, Beta2: b2, Epsilon: 1e-8, T: float32(t),
		Coef1: float32(lr * math.Sqrt(1-math.Pow(b2, float64(t))) / (1 - math.Pow(b1, float64(t))))}
}

// directCases fill StepParams by hand so that every flag and branch of every
// kernel runs whatever optimizer specs the store accepts.
func directCases() []stepCase {
	zero := func(int) float32 { return 0 }
	fixed := func(p compute.StepParams) func(int) compute.StepParams {
		return func(t int) compute.StepParams { p.T = float32(t); return p }
	}
	// Switches that are off are -1, as (*Optimizer).Params leaves them.
	base := compute.StepParams{LR: 0.1, WD: 1e-3, RescaleGrad: 1, ClipGradient: -1,
		ClipWeights: -1, LowerBound: -1, UpperBound: -1}
	with := func(f func(p *compute.StepParams)) compute.StepParams { p := base; f(&p); return p }
	bias := func(p compute.StepParams, lamb bool) func(int) compute.StepParams {
		return func(t int) compute.StepParams {
			q := p
			q.T = float32(t)
			c1 := 1 - math.Pow(float64(p.Beta1), float64(t))
			c2 := 1 - math.Pow(float64(p.Beta2), float64(t))
			if lamb {
				q.Coef1, q.Coef2 = float32(c1), float32(c2)
			} else {
				q.Coef1 = float32(float64(p.LR) * math.Sqrt(c2) / c1)
			}
			return q
		}
	}
	return []stepCase{
		{"sgd", compute.OptSGD, fixed(base), zero},
		{"sgd momentum clip rescale", compute.OptSGD, fixed(with(func(p *compute.StepParams) {
			p.Momentum, p.ClipGradient, p.RescaleGrad = 0.9, 0.3, 0.5
		})), zero},
		{"nag", compute.OptNAG, fixed(with(func(p *compute.StepParams) { p.Momentum = 0.9 })), zero},
		{"nag no momentum", compute.OptNAG, fixed(base), zero},
		{"adam", compute.OptAdam, adamParams, zero},
		{"adam clip", compute.OptAdam, bias(with(func(p *compute.StepParams) {
			p.LR, p.Beta1, p.Beta2, p.Epsilon, p.ClipGradient, p.RescaleGrad = 0.01, 0.9, 0.999, 1e-8, 0.2, 2
		}), false), zero},
		{"adamw", compute.OptAdamW, bias(with(func(p *compute.StepParams) {
			p.LR, p.WD, p.Beta1, p.Beta2, p.Epsilon, p.Eta = 0.01, 0.01, 0.9, 0.999, 1e-8, 1
		}), false), zero},
		{"adagrad", compute.OptAdaGrad, fixed(with(func(p *compute.StepParams) { p.Epsilon = 1e-7 })), zero},
		{"rmsprop", compute.OptRMSProp, fixed(with(func(p *compute.StepParams) {
			p.LR, p.Gamma1, p.Epsilon = 0.01, 0.9, 1e-8
		})), zero},
		{"rmsprop centered clip weights", compute.OptRMSProp, fixed(with(func(p *compute.StepParams) {
			p.LR, p.Gamma1, p.Gamma2, p.Epsilon = 0.01, 0.95, 0.9, 1e-8
			p.Flags |= compute.FlagCentered | compute.FlagClipWeights
			p.ClipWeights = 0.8
		})), zero},
		{"adadelta", compute.OptAdaDelta, fixed(with(func(p *compute.StepParams) {
			p.LR, p.Rho, p.Epsilon = 1, 0.9, 1e-5
		})), zero},
		{"signum", compute.OptSignum, fixed(with(func(p *compute.StepParams) {
			p.LR, p.Momentum, p.WDLH = 0.01, 0.9, 1e-3
		})), zero},
		{"signsgd", compute.OptSignum, fixed(with(func(p *compute.StepParams) { p.LR, p.WDLH = 0.01, 1e-3 })), zero},
		{"ftrl", compute.OptFTRL, fixed(with(func(p *compute.StepParams) {
			p.Lamda1, p.Beta = 0.01, 1
		})), zero},
		{"lamb", compute.OptLAMB, bias(with(func(p *compute.StepParams) {
			p.LR, p.WD, p.Beta1, p.Beta2, p.Epsilon = 0.01, 0.01, 0.9, 0.999, 1e-6
			p.Flags |= compute.FlagBiasCorrection
		}), true), zero},
		{"lamb bounds no bias correction", compute.OptLAMB, bias(with(func(p *compute.StepParams) {
			p.LR, p.WD, p.Beta1, p.Beta2, p.Epsilon = 0.01, 0.01, 0.9, 0.999, 1e-6
			p.Flags |= compute.FlagBounds
			p.LowerBound, p.UpperBound = 1e-3, 10
		}), true), zero},
	}
}

// parsedCases turns stepSpecs into cases through the optimizer API.
func (s *suite) parsedCases() []stepCase {
	var cases []stepCase
	for _, sp := range stepSpecs {
		o, err := optimizer.Parse([]byte(sp.spec))
		if err != nil {
			s.t.Errorf("optimizer.Parse(%s): %v", sp.spec, err)
			continue
		}
		if o.Kind() != sp.kind {
			s.t.Errorf("optimizer.Parse(%s).Kind() = %v, want %v", sp.spec, o.Kind(), sp.kind)
			continue
		}
		cases = append(cases, stepCase{
			name: sp.spec,
			kind: o.Kind(),
			params: func(t int) compute.StepParams {
				var p compute.StepParams
				o.Params("7", t, t, &p)
				return p
			},
			stateInit: o.StateInit,
		})
	}
	return cases
}

func (s *suite) step() {
	parsed := s.parsedCases()
	for _, c := range append(directCases(), parsed...) {
		for _, n := range Lengths {
			s.stepCase(c, n, 3)
		}
	}
	// Every kernel must also run with parameters made by the store's own
	// optimizer code.
	viaSpec := map[compute.OptKind]bool{}
	for _, c := range parsed {
		viaSpec[c.kind] = true
	}
	for k := compute.OptSGD; k <= compute.OptLAMB; k++ {
		if !viaSpec[k] {
			s.t.Errorf("%v: no optimizer spec ran it", k)
		}
	}
}

// stepCase runs steps updates of case c on arrays of length n on both
// backends and compares the weight and every state after each update.
func (s *suite) stepCase(c stepCase, n, steps int) {
	s.t.Helper()
	p0 := c.params(1)
	ns := c.kind.NumStates(&p0)
	w := s.random(n, 1)
	bw, rw := s.upload(s.b, w), s.upload(s.ref, w)
	bg, rg := s.alloc(s.b, n), s.alloc(s.ref, n)
	bst, rst, prevS := s.states(c, ns, n)
	allowed := 0
	if discontinuous(c.kind) {
		allowed = 1 + n/10000
	}
	prevW := w
	for t := 1; t <= steps; t++ {
		p := c.params(t)
		what := fmt.Sprintf("%v step %d (%s) n=%d", c.kind, t, c.name, n)
		g := s.random(n, 1)
		s.must("Write grad", func() error { return s.b.Write(bg, 0, g) })
		s.must("Write grad (reference)", func() error { return s.ref.Write(rg, 0, g) })
		if err := s.call(what+" (reference)", func() error { return s.ref.Step(c.kind, &p, rw, rg, rst) }); err != nil {
			s.t.Fatalf("%s: reference: %v", what, err)
		}
		pb := p // the backend must not depend on the reference leaving p alone
		s.must(what, func() error { return s.b.Step(c.kind, &pb, bw, bg, bst) })
		wantW := s.download(s.ref, rw)
		s.close(what+": weight", s.download(s.b, bw), wantW, prevW, allowed)
		s.exact(what+": grad unchanged", s.download(s.b, bg), g)
		prevW = wantW
		for i := range ns {
			want := s.download(s.ref, rst[i])
			s.close(fmt.Sprintf("%s: state %d", what, i), s.download(s.b, bst[i]), want, prevS[i], allowed)
			prevS[i] = want
		}
		// Keep going from the reference's values so that an allowed
		// mismatch at a discontinuity does not grow over the steps.
		if allowed > 0 {
			s.must("Write weight", func() error { return s.b.Write(bw, 0, wantW) })
			for i := range ns {
				s.must("Write state", func() error { return s.b.Write(bst[i], 0, prevS[i]) })
			}
		}
	}
}

// states makes the ns optimizer states of case c, n values each, on the
// backend under test and on the reference, filled with their initial
// values, and returns the reference's values as downloaded.
func (s *suite) states(c stepCase, ns, n int) (bst, rst []compute.Buffer, prev [][]float32) {
	bst, rst, prev = make([]compute.Buffer, ns), make([]compute.Buffer, ns), make([][]float32, ns)
	for i := range ns {
		v := c.stateInit(i)
		bst[i], rst[i] = s.alloc(s.b, n), s.alloc(s.ref, n)
		s.must("Fill state", func() error { return s.b.Fill(bst[i], v) })
		s.must("Fill state (reference)", func() error { return s.ref.Fill(rst[i], v) })
		prev[i] = s.download(s.ref, rst[i])
	}
	return bst, rst, prev
}
