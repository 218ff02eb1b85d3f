package optimizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/webkv/webkv/kvcore/compute"
)

// Version is the version of the optimizer spec format that this package
// writes and the newest it reads. A spec without "version" is read as
// version 1.
const Version = 1

// Spec is a declarative optimizer spec: MXNet's optimizer name and
// constructor arguments, as JSON with MXNet's parameter names, e.g.
//
//	{"version":1,"name":"adam","learning_rate":0.001,"wd":0.0001,
//	 "lr_scheduler":{"type":"factor","step":1000,"factor":0.9}}
//
// A spec is data, never code, so a dist store can send it to its servers and
// SaveOptimizerStates can write it next to the states.
//
// Optional hyper-parameters are pointers: nil means MXNet's default for the
// named optimizer (the table in optimizerDefaults), so a spec that leaves a
// value out keeps meaning "MXNet's default" after a JSON round trip. Go code
// can set one with new(v), e.g. Spec{Name: "sgd", Momentum: new(0.9)}.
// A parameter that the named optimizer does not take is an error, as it is
// for MXNet's constructors (TypeError).
//
// The update formulas are those of MXNet 1.x (python/mxnet/optimizer and
// src/operator/optimizer_op-inl.h); the doc of each kernel in
// kvcore/internal/kernels/optimizers.go gives the reference loop and its source.
type Spec struct {
	// Version of the spec format; 0 (absent) means 1.
	Version int `json:"version,omitempty"`
	// Name is one of sgd, nag, adam, adamw, adagrad, rmsprop, adadelta,
	// signum, ftrl, lamb (case-insensitive, as MXNet's registry).
	Name string `json:"name"`

	// Taken by every optimizer (AdaDelta takes no learning rate: MXNet 1.x
	// ignores it there, so a spec giving one is an error). It is >= 0,
	// except for sgd, where a negative rate (without lr_scheduler) makes
	// the update add the gradient, as MXNet allows.
	LearningRate *float64 `json:"learning_rate,omitempty"`
	WD           *float64 `json:"wd,omitempty"`            // weight decay, default 0
	RescaleGrad  *float64 `json:"rescale_grad,omitempty"`  // default 1
	ClipGradient *float64 `json:"clip_gradient,omitempty"` // nil or 0: no clipping

	Momentum       *float64 `json:"momentum,omitempty"`        // sgd, nag (default 0), signum (0.9)
	Beta1          *float64 `json:"beta1,omitempty"`           // adam, adamw, lamb (0.9)
	Beta2          *float64 `json:"beta2,omitempty"`           // adam, adamw, lamb (0.999)
	Epsilon        *float64 `json:"epsilon,omitempty"`         // see optimizerDefaults; AdaGrad's eps in MXNet 1.x
	Gamma1         *float64 `json:"gamma1,omitempty"`          // rmsprop (0.9)
	Gamma2         *float64 `json:"gamma2,omitempty"`          // rmsprop, centered only (0.9)
	Centered       *bool    `json:"centered,omitempty"`        // rmsprop (false)
	ClipWeights    *float64 `json:"clip_weights,omitempty"`    // rmsprop; nil or 0: none
	Rho            *float64 `json:"rho,omitempty"`             // adadelta (0.9)
	Lamda1         *float64 `json:"lamda1,omitempty"`          // ftrl L1 (0.01); MXNet's spelling
	Beta           *float64 `json:"beta,omitempty"`            // ftrl (1)
	WDLH           *float64 `json:"wd_lh,omitempty"`           // signum decoupled decay (0)
	LowerBound     *float64 `json:"lower_bound,omitempty"`     // lamb; nil or 0: none
	UpperBound     *float64 `json:"upper_bound,omitempty"`     // lamb; nil or 0: none
	BiasCorrection *bool    `json:"bias_correction,omitempty"` // lamb (true)
	CorrectBias    *bool    `json:"correct_bias,omitempty"`    // adamw (true)
	Eta            *float64 `json:"eta,omitempty"`             // adamw step multiplier (1)
	LazyUpdate     *bool    `json:"lazy_update,omitempty"`     // sgd, adam (true): see Lazy

	// LRScheduler makes the learning rate a function of the store's update
	// count (MXNet's lr_scheduler). Its base learning rate is learning_rate.
	LRScheduler *LRScheduler `json:"lr_scheduler,omitempty"`

	// LRMult and WDMult scale the learning rate and weight decay of single
	// keys (MXNet's set_lr_mult / set_wd_mult). Map keys are the store keys
	// as text: "3" for int key 3, "w0" for string key "w0" (kvcore's
	// Key.Name).
	LRMult map[string]float64 `json:"lr_mult,omitempty"`
	WDMult map[string]float64 `json:"wd_mult,omitempty"`
}

// SGD returns an SGD spec with learning rate lr and momentum (0 for none).
func SGD(lr, momentum float64) *Spec {
	return &Spec{Version: Version, Name: "sgd", LearningRate: &lr, Momentum: &momentum}
}

// Adam returns an Adam spec with learning rate lr and MXNet's other defaults.
func Adam(lr float64) *Spec {
	return &Spec{Version: Version, Name: "adam", LearningRate: &lr}
}

// ErrInvalid is wrapped by every error of Parse and Validate.
var ErrInvalid = errors.New("invalid optimizer spec")

// Parse decodes and validates a JSON optimizer spec. Unknown fields
// are errors, so a misspelled parameter is not silently replaced by its
// default.
func Parse(b []byte) (*Spec, error) {
	var o Spec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return nil, fmt.Errorf("optimizer: %w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("optimizer: %w: trailing data after the JSON object", ErrInvalid)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &o, nil
}

// optDefaults are MXNet 1.x's constructor defaults of one optimizer, and the
// set of parameters it takes beyond learning_rate, wd, rescale_grad,
// clip_gradient, lr_scheduler, lr_mult and wd_mult.
type optDefaults struct {
	kind   compute.OptKind
	lr     float64 // NaN: takes no learning rate
	params map[string]float64
}

// optimizerDefaults is MXNet 1.x's default of every parameter
// (python/mxnet/optimizer/optimizer.py, lamb.py; AdamW from
// python/mxnet/optimizer/adamW.py of MXNet 2, the first Python AdamW: 1.x
// has only the contrib operator). Booleans are 0/1.
var optimizerDefaults = map[string]optDefaults{
	"sgd":      {compute.OptSGD, 0.01, map[string]float64{"momentum": 0, "lazy_update": 1}},
	"nag":      {compute.OptNAG, 0.01, map[string]float64{"momentum": 0}},
	"adam":     {compute.OptAdam, 0.001, map[string]float64{"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "lazy_update": 1}},
	"adamw":    {compute.OptAdamW, 0.001, map[string]float64{"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-6, "correct_bias": 1, "eta": 1}},
	"adagrad":  {compute.OptAdaGrad, 0.01, map[string]float64{"epsilon": 1e-7}},
	"rmsprop":  {compute.OptRMSProp, 0.001, map[string]float64{"gamma1": 0.9, "gamma2": 0.9, "epsilon": 1e-8, "centered": 0, "clip_weights": 0}},
	"adadelta": {compute.OptAdaDelta, math.NaN(), map[string]float64{"rho": 0.9, "epsilon": 1e-5}},
	"signum":   {compute.OptSignum, 0.01, map[string]float64{"momentum": 0.9, "wd_lh": 0}},
	"ftrl":     {compute.OptFTRL, 0.1, map[string]float64{"lamda1": 0.01, "beta": 1}},
	"lamb":     {compute.OptLAMB, 0.001, map[string]float64{"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-6, "lower_bound": 0, "upper_bound": 0, "bias_correction": 1}},
}

// defaults looks the name up case-insensitively without allocating (Params
// runs on every push).
func (o *Spec) defaults() (optDefaults, bool) {
	if d, ok := optimizerDefaults[o.Name]; ok {
		return d, true
	}
	for name, d := range optimizerDefaults {
		if strings.EqualFold(name, o.Name) {
			return d, true
		}
	}
	return optDefaults{}, false
}

// optField is one optional hyper-parameter: its JSON name and pointer.
type optField struct {
	name string
	f    *float64
	b    *bool
}

func (o *Spec) fields() [18]optField {
	return [...]optField{
		{name: "momentum", f: o.Momentum},
		{name: "beta1", f: o.Beta1},
		{name: "beta2", f: o.Beta2},
		{name: "epsilon", f: o.Epsilon},
		{name: "gamma1", f: o.Gamma1},
		{name: "gamma2", f: o.Gamma2},
		{name: "centered", b: o.Centered},
		{name: "clip_weights", f: o.ClipWeights},
		{name: "rho", f: o.Rho},
		{name: "lamda1", f: o.Lamda1},
		{name: "beta", f: o.Beta},
		{name: "wd_lh", f: o.WDLH},
		{name: "lower_bound", f: o.LowerBound},
		{name: "upper_bound", f: o.UpperBound},
		{name: "bias_correction", b: o.BiasCorrection},
		{name: "correct_bias", b: o.CorrectBias},
		{name: "eta", f: o.Eta},
		{name: "lazy_update", b: o.LazyUpdate},
	}
}

func (f optField) set() bool { return f.f != nil || f.b != nil }

// Validate checks the name, that every parameter given belongs to the named
// optimizer, and every value's range. Errors name the field and wrap
// ErrInvalid.
func (o *Spec) Validate() error {
	if o == nil {
		return fmt.Errorf("optimizer: %w: nil optimizer", ErrInvalid)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("optimizer: %w: %s: %s", ErrInvalid, o.Name, fmt.Sprintf(format, args...))
	}
	if o.Version < 0 || o.Version > Version {
		return fmt.Errorf("optimizer: %w: version %d is not supported (this build reads versions 1 to %d)", ErrInvalid, o.Version, Version)
	}
	d, ok := o.defaults()
	if !ok {
		names := make([]string, 0, len(optimizerDefaults))
		for n := range optimizerDefaults {
			names = append(names, n)
		}
		sort.Strings(names)
		return fmt.Errorf("optimizer: %w: unknown optimizer %q (known: %s)", ErrInvalid, o.Name, strings.Join(names, ", "))
	}
	// finite reports whether v fits a float32 (the kernels' precision).
	finite := func(v float64) bool { return !math.IsNaN(v) && math.Abs(v) <= math.MaxFloat32 }
	check := func(name string, p *float64, lo float64, loOpen bool, hi float64, hiOpen bool) error {
		if p == nil {
			return nil
		}
		v := *p
		if !finite(v) {
			return bad("%s = %v is not a finite float32", name, v)
		}
		if (loOpen && !(v > lo)) || (!loOpen && !(v >= lo)) || (hiOpen && !(v < hi)) || (!hiOpen && !(v <= hi)) {
			l, r := "[", "]"
			if loOpen {
				l = "("
			}
			if hiOpen {
				r = ")"
			}
			hs := strconv.FormatFloat(hi, 'g', -1, 64)
			if math.IsInf(hi, 1) {
				hs = "inf"
			}
			return bad("%s = %v is out of range %s%v, %s%s", name, v, l, lo, hs, r)
		}
		return nil
	}
	inf := math.Inf(1)

	// Parameters that the optimizer does not take.
	for _, f := range o.fields() {
		if _, takes := d.params[f.name]; f.set() && !takes {
			return bad("%s is not a parameter of %s", f.name, strings.ToLower(o.Name))
		}
	}
	if math.IsNaN(d.lr) {
		switch {
		case o.LearningRate != nil:
			return bad("learning_rate is not a parameter of adadelta (MXNet's AdaDelta takes no learning rate)")
		case o.LRScheduler != nil:
			return bad("lr_scheduler is not a parameter of adadelta (it takes no learning rate)")
		case len(o.LRMult) > 0:
			return bad("lr_mult is not a parameter of adadelta (it takes no learning rate)")
		}
	}

	lrLo, lrOpen := 0.0, false
	switch d.kind {
	case compute.OptFTRL:
		lrLo, lrOpen = 0, true // FTRL divides by the learning rate
	case compute.OptSGD:
		// MXNet takes any learning rate; a negative one makes SGD add the
		// gradient (its dist tests' server updater, learning_rate=-lr).
		lrLo = math.Inf(-1)
		if o.LearningRate != nil && *o.LearningRate < 0 && o.LRScheduler != nil {
			return bad("a negative learning_rate cannot be scheduled (the schedules decay towards 0)")
		}
	}
	for _, c := range []struct {
		name   string
		p      *float64
		lo     float64
		loOpen bool
		hi     float64
		hiOpen bool
	}{
		{name: "learning_rate", p: o.LearningRate, lo: lrLo, loOpen: lrOpen, hi: inf},
		{name: "wd", p: o.WD, lo: 0, hi: inf},
		{name: "rescale_grad", p: o.RescaleGrad, lo: 0, loOpen: true, hi: inf},
		{name: "clip_gradient", p: o.ClipGradient, lo: 0, hi: inf},
		{name: "momentum", p: o.Momentum, lo: 0, hi: 1, hiOpen: true},
		{name: "beta1", p: o.Beta1, lo: 0, hi: 1, hiOpen: true},
		{name: "beta2", p: o.Beta2, lo: 0, hi: 1, hiOpen: true},
		{name: "epsilon", p: o.Epsilon, lo: 0, loOpen: true, hi: inf},
		{name: "gamma1", p: o.Gamma1, lo: 0, hi: 1, hiOpen: true},
		{name: "gamma2", p: o.Gamma2, lo: 0, hi: 1, hiOpen: true},
		{name: "clip_weights", p: o.ClipWeights, lo: 0, hi: inf},
		{name: "rho", p: o.Rho, lo: 0, hi: 1, hiOpen: true},
		{name: "lamda1", p: o.Lamda1, lo: 0, hi: inf},
		{name: "beta", p: o.Beta, lo: 0, hi: inf},
		{name: "wd_lh", p: o.WDLH, lo: 0, hi: inf},
		{name: "lower_bound", p: o.LowerBound, lo: 0, hi: inf},
		{name: "upper_bound", p: o.UpperBound, lo: 0, hi: inf},
		{name: "eta", p: o.Eta, lo: 0, loOpen: true, hi: inf},
	} {
		if err := check(c.name, c.p, c.lo, c.loOpen, c.hi, c.hiOpen); err != nil {
			return err
		}
	}
	if o.Gamma2 != nil && (o.Centered == nil || !*o.Centered) {
		return bad("gamma2 is used only by centered rmsprop; set centered: true or leave gamma2 out")
	}
	if lb, ub := o.get(o.LowerBound, 0), o.get(o.UpperBound, 0); lb > 0 && ub > 0 && lb > ub {
		return bad("lower_bound = %v is above upper_bound = %v", lb, ub)
	}
	for _, m := range []struct {
		name string
		m    map[string]float64
	}{{"lr_mult", o.LRMult}, {"wd_mult", o.WDMult}} {
		for k, v := range m.m {
			if !finite(v) || v < 0 {
				return bad("%s[%q] = %v must be a finite number >= 0", m.name, k, v)
			}
			if v == 0 && d.kind == compute.OptFTRL && m.name == "lr_mult" {
				return bad("lr_mult[%q] = 0: ftrl divides by the learning rate", k)
			}
		}
	}
	if o.LRScheduler != nil {
		base := o.get(o.LearningRate, d.lr)
		if err := o.LRScheduler.validate(base, o.LearningRate != nil); err != nil {
			return bad("lr_scheduler: %v", err)
		}
		if d.kind == compute.OptFTRL && o.LRScheduler.mayReachZero(base) {
			return bad("lr_scheduler: ftrl divides by the learning rate, so the schedule must stay above 0 (set final_lr > 0, warmup_begin_lr > 0)")
		}
	}
	return nil
}

// Clone returns a deep copy of o, so that a store can keep a spec that its
// caller may change afterwards.
func (o *Spec) Clone() *Spec {
	if o == nil {
		return nil
	}
	c := *o
	for _, p := range []**float64{&c.LearningRate, &c.WD, &c.RescaleGrad, &c.ClipGradient,
		&c.Momentum, &c.Beta1, &c.Beta2, &c.Epsilon, &c.Gamma1, &c.Gamma2, &c.ClipWeights,
		&c.Rho, &c.Lamda1, &c.Beta, &c.WDLH, &c.LowerBound, &c.UpperBound, &c.Eta} {
		if *p != nil {
			*p = new(**p)
		}
	}
	for _, p := range []**bool{&c.Centered, &c.BiasCorrection, &c.CorrectBias, &c.LazyUpdate} {
		if *p != nil {
			*p = new(**p)
		}
	}
	if o.LRScheduler != nil {
		s := *o.LRScheduler
		for _, p := range []**float64{&s.BaseLR, &s.Factor, &s.StopFactorLR, &s.Pwr} {
			if *p != nil {
				*p = new(**p)
			}
		}
		if s.Steps != nil {
			s.Steps = append([]int{}, s.Steps...)
		}
		c.LRScheduler = &s
	}
	for _, m := range []*map[string]float64{&c.LRMult, &c.WDMult} {
		if *m != nil {
			cp := make(map[string]float64, len(*m))
			for k, v := range *m {
				cp[k] = v
			}
			*m = cp
		}
	}
	return &c
}

func (o *Spec) get(p *float64, def float64) float64 {
	if p != nil {
		return *p
	}
	return def
}

func (o *Spec) param(p *float64, d *optDefaults, name string) float64 {
	if p != nil {
		return *p
	}
	return d.params[name]
}

func (o *Spec) flag(p *bool, d *optDefaults, name string) bool {
	if p != nil {
		return *p
	}
	return d.params[name] != 0
}

// Lazy reports whether a row-sparse gradient updates only the rows it
// holds (their weights, weight decay and states; every other row and its
// states stay as they are), as MXNet's sparse update kernels do: sgd and
// adam with lazy_update (true by default; false: the dense update of the
// densified gradient, MXNet's std_update), adagrad and ftrl always (their
// sparse kernels). The other optimizers have no sparse kernel in MXNet,
// which runs the dense update on the densified gradient: so does webkv.
func (o *Spec) Lazy() bool {
	d, _ := o.defaults()
	switch d.kind {
	case compute.OptSGD, compute.OptAdam:
		return o.flag(o.LazyUpdate, &d, "lazy_update")
	case compute.OptAdaGrad, compute.OptFTRL:
		return true
	}
	return false
}

// Kind is the kernel the optimizer runs (0 if the name is unknown).
func (o *Spec) Kind() compute.OptKind {
	d, _ := o.defaults()
	return d.kind
}

// mult returns m[key], or 1.
func mult(m map[string]float64, key string) float64 {
	if v, ok := m[key]; ok {
		return v
	}
	return 1
}

// LR returns the learning rate of key (as text, see LRMult) at store update
// count numUpdate:
// learning_rate, or the schedule's value, times lr_mult of key (MXNet's
// Optimizer._get_lr). It is 0 for AdaDelta, which has none.
func (o *Spec) LR(key string, numUpdate int) float64 {
	d, _ := o.defaults()
	if math.IsNaN(d.lr) {
		return 0
	}
	lr := o.get(o.LearningRate, d.lr)
	if o.LRScheduler != nil {
		lr = o.LRScheduler.at(lr, numUpdate)
	}
	return lr * mult(o.LRMult, key)
}

// Params fills p for update t (t >= 1: the t-th update of key, named as
// text as in LRMult: "3" for int key 3) when the store-wide update count is numUpdate (MXNet's num_update: the largest t of
// any key, which the learning-rate schedule follows). Host-side derived
// values are computed in float64, as MXNet's Python does, and rounded once:
//
//   - adam: Coef1 = lr*sqrt(1-beta2^t)/(1-beta1^t), the step size;
//   - adamw: Coef1 = eta*lr*sqrt(1-beta2^t)/(1-beta1^t) (or eta*lr without
//     correct_bias), the contrib adamw_update's eta with its lr = 1, as
//     MXNet's AdamW optimizer calls it;
//   - lamb: Coef1 = 1-beta1^t, Coef2 = 1-beta2^t (bias corrections, with
//     beta rounded to float32 first, as MXNet's operator computes them).
//
// Switches that MXNet expresses as "value < 0 means off" keep that form:
// ClipGradient, ClipWeights, LowerBound and UpperBound are -1 when off.
func (o *Spec) Params(key string, t, numUpdate int, p *compute.StepParams) {
	d, _ := o.defaults()
	if t < 1 {
		t = 1
	}
	lr := o.LR(key, numUpdate)
	wd := o.get(o.WD, 0) * mult(o.WDMult, key)
	clip := o.get(o.ClipGradient, 0)
	if clip <= 0 {
		clip = -1
	}
	*p = compute.StepParams{
		LR:           float32(lr),
		WD:           float32(wd),
		RescaleGrad:  float32(o.get(o.RescaleGrad, 1)),
		ClipGradient: float32(clip),
		T:            float32(t),
	}
	tf := float64(t)
	switch d.kind {
	case compute.OptSGD, compute.OptNAG, compute.OptSignum:
		p.Momentum = float32(o.param(o.Momentum, &d, "momentum"))
		if d.kind == compute.OptSignum {
			p.WDLH = float32(o.param(o.WDLH, &d, "wd_lh"))
		}
	case compute.OptAdam, compute.OptAdamW:
		b1, b2 := o.param(o.Beta1, &d, "beta1"), o.param(o.Beta2, &d, "beta2")
		p.Beta1, p.Beta2 = float32(b1), float32(b2)
		p.Epsilon = float32(o.param(o.Epsilon, &d, "epsilon"))
		step := lr
		if d.kind == compute.OptAdam || o.flag(o.CorrectBias, &d, "correct_bias") {
			step *= math.Sqrt(1-math.Pow(b2, tf)) / (1 - math.Pow(b1, tf))
		}
		if d.kind == compute.OptAdamW {
			eta := o.param(o.Eta, &d, "eta")
			p.Eta = float32(eta)
			step *= eta
		}
		p.Coef1 = float32(step)
	case compute.OptAdaGrad:
		p.Epsilon = float32(o.param(o.Epsilon, &d, "epsilon"))
	case compute.OptRMSProp:
		p.Gamma1 = float32(o.param(o.Gamma1, &d, "gamma1"))
		p.Epsilon = float32(o.param(o.Epsilon, &d, "epsilon"))
		p.ClipWeights = -1
		if o.flag(o.Centered, &d, "centered") {
			p.Flags |= compute.FlagCentered
			p.Gamma2 = float32(o.param(o.Gamma2, &d, "gamma2"))
		}
		if cw := o.param(o.ClipWeights, &d, "clip_weights"); cw > 0 {
			p.Flags |= compute.FlagClipWeights
			p.ClipWeights = float32(cw)
		}
	case compute.OptAdaDelta:
		p.Rho = float32(o.param(o.Rho, &d, "rho"))
		p.Epsilon = float32(o.param(o.Epsilon, &d, "epsilon"))
	case compute.OptFTRL:
		p.Lamda1 = float32(o.param(o.Lamda1, &d, "lamda1"))
		p.Beta = float32(o.param(o.Beta, &d, "beta"))
	case compute.OptLAMB:
		b1, b2 := o.param(o.Beta1, &d, "beta1"), o.param(o.Beta2, &d, "beta2")
		p.Beta1, p.Beta2 = float32(b1), float32(b2)
		p.Epsilon = float32(o.param(o.Epsilon, &d, "epsilon"))
		if o.flag(o.BiasCorrection, &d, "bias_correction") {
			// As LambUpdatePhaseOne: beta^t from the float32 beta (std::pow
			// of the float parameter), so that 1-beta^t matches the float32
			// (1-beta) the moments were built with.
			p.Flags |= compute.FlagBiasCorrection
			p.Coef1 = float32(1 - math.Pow(float64(float32(b1)), tf))
			p.Coef2 = float32(1 - math.Pow(float64(float32(b2)), tf))
		}
		p.LowerBound, p.UpperBound = -1, -1
		if lb := o.param(o.LowerBound, &d, "lower_bound"); lb > 0 {
			p.Flags |= compute.FlagBounds
			p.LowerBound = float32(lb)
		}
		if ub := o.param(o.UpperBound, &d, "upper_bound"); ub > 0 {
			p.Flags |= compute.FlagBounds
			p.UpperBound = float32(ub)
		}
	}
}

// StateInit is the initial value of state i. Every MXNet 1.x optimizer here
// starts its states at zero (create_state returns zeros), including
// AdaGrad's history, whose eps is added inside the square root instead.
func (o *Spec) StateInit(i int) float32 { return 0 }
