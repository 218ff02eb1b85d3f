package optimizer

import (
	"math"
	"strings"
	"testing"
)

// mxScheduler is a transcription of MXNet 1.x python/mxnet/lr_scheduler.py:
// the stateful __call__ of each class, called with num_update = 1, 2, ...
// as Optimizer._get_lrs does. TestSchedMatchesMXNetStateful compares the
// closed forms in schedule.go against it.
type mxScheduler struct {
	typ                        string
	baseLR, warmupFinal, begin float64
	warmupSteps                int
	mode                       string
	step                       int
	steps                      []int
	factor, stop               float64
	count, curStepInd          int
	maxUpdate                  int
	finalLR, pwr, baseOrig     float64
	maxSteps                   int
}

func (s *mxScheduler) warmup(nu int) float64 {
	if s.mode == "constant" {
		return s.begin
	}
	return s.begin + (s.warmupFinal-s.begin)*float64(nu)/float64(s.warmupSteps)
}

func (s *mxScheduler) call(nu int) float64 {
	if nu < s.warmupSteps {
		return s.warmup(nu)
	}
	switch s.typ {
	case "factor":
		for nu > s.count+s.step {
			s.count += s.step
			s.baseLR *= s.factor
			if s.baseLR < s.stop {
				s.baseLR = s.stop
			}
		}
		return s.baseLR
	case "multifactor":
		for s.curStepInd <= len(s.steps)-1 {
			if nu > s.steps[s.curStepInd] {
				s.count = s.steps[s.curStepInd]
				s.curStepInd++
				s.baseLR *= s.factor
			} else {
				return s.baseLR
			}
		}
		return s.baseLR
	case "poly":
		if nu <= s.maxUpdate {
			s.baseLR = s.finalLR + (s.baseOrig-s.finalLR)*math.Pow(1-float64(nu-s.warmupSteps)/float64(s.maxSteps), s.pwr)
		}
		return s.baseLR
	case "cosine":
		if nu <= s.maxUpdate {
			s.baseLR = s.finalLR + (s.baseOrig-s.finalLR)*(1+math.Cos(math.Pi*float64(nu-s.warmupSteps)/float64(s.maxSteps)))/2
		}
		return s.baseLR
	}
	panic("type")
}

func newMX(s *LRScheduler, base float64) *mxScheduler {
	m := &mxScheduler{typ: s.Type, baseLR: base, warmupFinal: base, begin: s.WarmupBeginLR,
		warmupSteps: s.WarmupSteps, mode: s.WarmupMode, step: s.Step, steps: s.Steps,
		factor: 1, stop: 1e-8, maxUpdate: s.MaxUpdate, finalLR: s.FinalLR, pwr: 2, baseOrig: base}
	if s.Factor != nil {
		m.factor = *s.Factor
	}
	if s.StopFactorLR != nil {
		m.stop = *s.StopFactorLR
	}
	if s.Pwr != nil {
		m.pwr = *s.Pwr
	}
	m.maxSteps = s.MaxUpdate - s.WarmupSteps
	return m
}

var schedSpecs = []string{
	`{"type":"factor","step":3,"factor":0.5}`,
	`{"type":"factor","step":1,"factor":0.5,"stop_factor_lr":0.01}`,
	`{"type":"factor","step":4,"factor":0.9,"warmup_steps":5,"warmup_begin_lr":0.01}`,
	`{"type":"multifactor","steps":[3,7,20],"factor":0.1}`,
	`{"type":"multifactor","steps":[10,12],"factor":0.5,"warmup_steps":6,"warmup_mode":"constant","warmup_begin_lr":0.02}`,
	`{"type":"poly","max_update":30}`,
	`{"type":"poly","max_update":30,"pwr":1.5,"final_lr":0.01,"warmup_steps":10,"warmup_begin_lr":0.001}`,
	`{"type":"cosine","max_update":25}`,
	`{"type":"cosine","max_update":25,"final_lr":0.05,"warmup_steps":5}`,
}

// TestSchedMatchesMXNetStateful checks every schedule, update by update,
// against the transcribed stateful MXNet scheduler.
func TestSchedMatchesMXNetStateful(t *testing.T) {
	t.Parallel()
	for _, spec := range schedSpecs {
		opt, err := Parse([]byte(`{"name":"sgd","learning_rate":0.5,"lr_scheduler":` + spec + `}`))
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		mx := newMX(opt.LRScheduler, 0.5)
		for nu := 1; nu <= 60; nu++ {
			want := mx.call(nu)
			got := opt.LR("0", nu)
			if math.Abs(got-want) > 1e-12*math.Max(1, want) {
				t.Errorf("%s: num_update %d: lr %.15g, MXNet's scheduler %.15g", spec, nu, got, want)
			}
		}
	}
}

// TestSchedHandValues checks schedule values worked out by hand.
func TestSchedHandValues(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		spec string
		nu   []int
		want []float64
	}{
		// base 1, step 2, factor 0.5: decay after updates 2, 4, ...
		{`{"type":"factor","step":2,"factor":0.5}`, []int{1, 2, 3, 4, 5, 7}, []float64{1, 1, 0.5, 0.5, 0.25, 0.125}},
		// floor at stop_factor_lr 0.3
		{`{"type":"factor","step":1,"factor":0.5,"stop_factor_lr":0.3}`, []int{1, 2, 3, 4}, []float64{1, 0.5, 0.3, 0.3}},
		// steps 2 and 4: k = #steps below num_update
		{`{"type":"multifactor","steps":[2,4],"factor":0.1}`, []int{1, 2, 3, 4, 5, 100}, []float64{1, 1, 0.1, 0.1, 0.01, 0.01}},
		// poly pwr 2 over 10 updates: (1 - nu/10)^2, then final_lr 0
		{`{"type":"poly","max_update":10}`, []int{1, 5, 10, 11}, []float64{0.81, 0.25, 0, 0}},
		// cosine over 4: (1+cos(pi*nu/4))/2
		{`{"type":"cosine","max_update":4}`, []int{1, 2, 4, 9}, []float64{(1 + math.Sqrt2/2) / 2, 0.5, 0, 0}},
		// linear warm-up over 4 from 0: nu/4, then cosine from update 4 to 8
		{`{"type":"cosine","max_update":8,"warmup_steps":4}`, []int{1, 2, 3, 4, 6, 8}, []float64{0.25, 0.5, 0.75, 1, 0.5, 0}},
		// constant warm-up at 0.1 for updates < 3, then factor
		{`{"type":"factor","step":5,"factor":0.5,"warmup_steps":3,"warmup_mode":"constant","warmup_begin_lr":0.1}`, []int{1, 2, 3, 5, 6}, []float64{0.1, 0.1, 1, 1, 0.5}},
	} {
		opt, err := Parse([]byte(`{"name":"sgd","learning_rate":1,"lr_scheduler":` + c.spec + `}`))
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		for i, nu := range c.nu {
			if got := opt.LR("0", nu); math.Abs(got-c.want[i]) > 1e-12 {
				t.Errorf("%s: num_update %d: lr %v, want %v", c.spec, nu, got, c.want[i])
			}
		}
	}
}

// TestSchedBaseLR checks that base_lr replaces learning_rate and that
// giving both with different values is an error.
func TestSchedBaseLR(t *testing.T) {
	t.Parallel()
	opt, err := Parse([]byte(`{"name":"adam","lr_scheduler":{"type":"factor","step":1,"factor":0.5,"base_lr":0.2}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := opt.LR("0", 2); got != 0.1 {
		t.Errorf("lr at 2 = %v, want 0.1", got)
	}
	if _, err := Parse([]byte(`{"name":"adam","learning_rate":0.1,"lr_scheduler":{"type":"factor","step":1,"base_lr":0.2}}`)); err == nil || !strings.Contains(err.Error(), "base_lr") {
		t.Errorf("conflicting base_lr: err = %v", err)
	}
}

// TestSchedValidate checks that bad schedules are rejected with the field
// named.
func TestSchedValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ spec, want string }{
		{`{"type":"step"}`, `unknown type "step"`},
		{`{"type":"factor"}`, "step = 0"},
		{`{"type":"factor","step":2,"factor":1.5}`, "factor = 1.5"},
		{`{"type":"factor","step":2,"factor":0}`, "factor = 0"},
		{`{"type":"factor","step":2,"stop_factor_lr":-1}`, "stop_factor_lr"},
		{`{"type":"factor","step":2,"steps":[1]}`, "steps is not a parameter of the factor schedule"},
		{`{"type":"multifactor"}`, "steps must list"},
		{`{"type":"multifactor","steps":[3,3]}`, "steps must increase"},
		{`{"type":"multifactor","steps":[0]}`, "steps[0] = 0"},
		{`{"type":"multifactor","steps":[3],"max_update":4}`, "max_update is not a parameter"},
		{`{"type":"poly"}`, "max_update = 0"},
		{`{"type":"poly","max_update":5,"warmup_steps":5}`, "above warmup_steps"},
		{`{"type":"poly","max_update":5,"pwr":0}`, "pwr = 0"},
		{`{"type":"cosine","max_update":5,"pwr":2}`, "pwr is not a parameter"},
		{`{"type":"cosine","max_update":5,"final_lr":-0.1}`, "final_lr"},
		{`{"type":"cosine","max_update":5,"warmup_steps":-1}`, "warmup_steps = -1"},
		{`{"type":"factor","step":5,"warmup_steps":-1}`, "warmup_steps = -1"},
		{`{"type":"factor","step":5,"warmup_steps":2,"warmup_mode":"exp"}`, "warmup_mode"},
		{`{"type":"factor","step":5,"warmup_steps":2,"warmup_begin_lr":2}`, "warmup_begin_lr = 2 is above"},
		{`{"type":"factor","step":5,"warmup_begin_lr":0.001}`, "need warmup_steps"},
		{`{"type":"factor","step":5,"base_lr":-1}`, "base_lr = -1"},
		{`{"type":"factor","step":5,"bogus":1}`, "bogus"},
	} {
		_, err := Parse([]byte(`{"name":"sgd","lr_scheduler":` + c.spec + `}`))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.spec, err, c.want)
		}
	}
	// FTRL divides by the learning rate: a schedule that reaches 0 is refused.
	if _, err := Parse([]byte(`{"name":"ftrl","lr_scheduler":{"type":"cosine","max_update":5}}`)); err == nil {
		t.Error("ftrl with a cosine schedule to 0: no error")
	}
	if _, err := Parse([]byte(`{"name":"ftrl","lr_scheduler":{"type":"cosine","max_update":5,"final_lr":0.01}}`)); err != nil {
		t.Errorf("ftrl with a cosine schedule to 0.01: %v", err)
	}
}
