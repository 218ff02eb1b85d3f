package optimizer

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
)

// TestOptDefaults checks that a bare spec gets MXNet 1.x's constructor
// defaults (python/mxnet/optimizer/optimizer.py; lamb.py; adamW.py).
func TestOptDefaults(t *testing.T) {
	t.Parallel()
	type want struct {
		lr, eps, b1, b2, mom float32
	}
	for name, w := range map[string]want{
		"sgd":     {lr: 0.01},
		"nag":     {lr: 0.01},
		"adam":    {lr: 0.001, eps: 1e-8, b1: 0.9, b2: 0.999},
		"adamw":   {lr: 0.001, eps: 1e-6, b1: 0.9, b2: 0.999},
		"adagrad": {lr: 0.01, eps: 1e-7},
		"rmsprop": {lr: 0.001, eps: 1e-8},
		"signum":  {lr: 0.01, mom: 0.9},
		"ftrl":    {lr: 0.1},
		"lamb":    {lr: 0.001, eps: 1e-6, b1: 0.9, b2: 0.999},
	} {
		opt, err := Parse([]byte(`{"name":"` + name + `"}`))
		if err != nil {
			t.Fatal(err)
		}
		var p compute.StepParams
		opt.Params("0", 1, 1, &p)
		if p.LR != w.lr || p.Epsilon != w.eps || p.Beta1 != w.b1 || p.Beta2 != w.b2 || p.Momentum != w.mom {
			t.Errorf("%s: lr %v eps %v beta1 %v beta2 %v momentum %v, want %+v", name, p.LR, p.Epsilon, p.Beta1, p.Beta2, p.Momentum, w)
		}
		if p.RescaleGrad != 1 || p.ClipGradient != -1 || p.WD != 0 || p.T != 1 {
			t.Errorf("%s: rescale %v clip %v wd %v t %v, want 1 -1 0 1", name, p.RescaleGrad, p.ClipGradient, p.WD, p.T)
		}
	}
	var p compute.StepParams
	opt, _ := Parse([]byte(`{"name":"rmsprop"}`))
	opt.Params("0", 1, 1, &p)
	if p.Gamma1 != 0.9 || p.Flags != 0 || p.ClipWeights != -1 {
		t.Errorf("rmsprop: gamma1 %v flags %b clip_weights %v", p.Gamma1, p.Flags, p.ClipWeights)
	}
	opt, _ = Parse([]byte(`{"name":"rmsprop","centered":true}`))
	opt.Params("0", 1, 1, &p)
	if p.Gamma2 != 0.9 || p.Flags != compute.FlagCentered {
		t.Errorf("centered rmsprop: gamma2 %v flags %b", p.Gamma2, p.Flags)
	}
	opt, _ = Parse([]byte(`{"name":"adadelta"}`))
	opt.Params("0", 1, 1, &p)
	if p.Rho != 0.9 || p.Epsilon != 1e-5 || p.LR != 0 {
		t.Errorf("adadelta: rho %v eps %v lr %v", p.Rho, p.Epsilon, p.LR)
	}
	opt, _ = Parse([]byte(`{"name":"ftrl"}`))
	opt.Params("0", 1, 1, &p)
	if p.Lamda1 != 0.01 || p.Beta != 1 {
		t.Errorf("ftrl: lamda1 %v beta %v", p.Lamda1, p.Beta)
	}
	opt, _ = Parse([]byte(`{"name":"lamb"}`))
	opt.Params("0", 2, 2, &p)
	if p.Flags != compute.FlagBiasCorrection || p.LowerBound != -1 || p.UpperBound != -1 {
		t.Errorf("lamb: flags %b bounds %v %v", p.Flags, p.LowerBound, p.UpperBound)
	}
	if c1 := 1 - math.Pow(float64(float32(0.9)), 2); math.Abs(float64(p.Coef1)-c1) > 1e-7 {
		t.Errorf("lamb t=2: Coef1 = %v, want %v", p.Coef1, c1)
	}
}

// TestOptDerivedParams checks the host-side derived values of Params.
func TestOptDerivedParams(t *testing.T) {
	t.Parallel()
	var p compute.StepParams
	opt, _ := Parse([]byte(`{"name":"adam","learning_rate":0.1}`))
	opt.Params("0", 3, 3, &p)
	// lr*sqrt(1-0.999^3)/(1-0.9^3) = 0.1*sqrt(0.002997001)/0.271
	want := 0.1 * math.Sqrt(1-0.999*0.999*0.999) / (1 - 0.9*0.9*0.9)
	if math.Abs(float64(p.Coef1)-want) > 1e-8 {
		t.Errorf("adam t=3: Coef1 = %v, want %v", p.Coef1, want)
	}
	opt, _ = Parse([]byte(`{"name":"adamw","learning_rate":0.1,"eta":2,"correct_bias":false}`))
	opt.Params("0", 3, 3, &p)
	if p.Coef1 != 0.2 || p.Eta != 2 {
		t.Errorf("adamw without correction: Coef1 = %v (want 0.2), Eta = %v", p.Coef1, p.Eta)
	}
	opt, _ = Parse([]byte(`{"name":"lamb","lower_bound":0.1,"upper_bound":10}`))
	opt.Params("0", 1, 1, &p)
	if p.Flags&compute.FlagBounds == 0 || p.LowerBound != 0.1 || p.UpperBound != 10 {
		t.Errorf("lamb bounds: flags %b, %v %v", p.Flags, p.LowerBound, p.UpperBound)
	}
	opt, _ = Parse([]byte(`{"name":"rmsprop","clip_weights":2,"clip_gradient":3}`))
	opt.Params("0", 1, 1, &p)
	if p.Flags&compute.FlagClipWeights == 0 || p.ClipWeights != 2 || p.ClipGradient != 3 {
		t.Errorf("rmsprop clips: flags %b, weights %v, gradient %v", p.Flags, p.ClipWeights, p.ClipGradient)
	}
	// clip_gradient 0 is MXNet's "no clipping" (a falsy value is not passed).
	opt, _ = Parse([]byte(`{"name":"sgd","clip_gradient":0}`))
	opt.Params("0", 1, 1, &p)
	if p.ClipGradient != -1 {
		t.Errorf("clip_gradient 0: ClipGradient = %v, want -1 (off)", p.ClipGradient)
	}
	// t < 1 is treated as the first update, never 1-beta^0 = 0.
	opt, _ = Parse([]byte(`{"name":"adam"}`))
	opt.Params("0", 0, 0, &p)
	if p.T != 1 || math.IsInf(float64(p.Coef1), 0) || math.IsNaN(float64(p.Coef1)) {
		t.Errorf("t=0: T %v, Coef1 %v", p.T, p.Coef1)
	}
}

// TestOptMults checks lr_mult and wd_mult by int and string key.
func TestOptMults(t *testing.T) {
	t.Parallel()
	opt, err := Parse([]byte(`{"name":"sgd","learning_rate":0.5,"wd":0.1,"lr_mult":{"3":0.5,"123456":2,"-7":4,"bias":0},"wd_mult":{"3":0,"w":3}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key    string
		lr, wd float32
	}{
		{"3", 0.25, 0},
		{"123456", 1, 0.1},
		{"-7", 2, 0.1},
		{"4", 0.5, 0.1},
		{"bias", 0, 0.1},
		{"w", 0.5, float32(0.1 * 3)},
		{"3", 0.25, 0},
	} {
		var p compute.StepParams
		opt.Params(c.key, 1, 1, &p)
		if p.LR != c.lr || p.WD != c.wd {
			t.Errorf("key %v: lr %v wd %v, want %v %v", c.key, p.LR, p.WD, c.lr, c.wd)
		}
	}
}

// TestOptParamsNoAllocs checks that Params (on every push of a store with
// an optimizer) allocates nothing, with schedules and per-key multipliers.
func TestOptParamsNoAllocs(t *testing.T) {
	opt, err := Parse([]byte(`{"name":"adam","lr_mult":{"123456":2,"w":3},"wd_mult":{"7":0},
		"lr_scheduler":{"type":"cosine","max_update":1000,"warmup_steps":10}}`))
	if err != nil {
		t.Fatal(err)
	}
	var p compute.StepParams
	keys := []string{"123456", "7", "w", "zz"}
	for _, name := range []string{"adam", "AdamW"} {
		opt.Name = name
		a := testing.AllocsPerRun(100, func() {
			for i, k := range keys {
				opt.Params(k, i+1, 50, &p)
			}
		})
		if a != 0 {
			t.Errorf("%s: Params allocates %v times per call", name, a)
		}
	}
}

// TestOptJSONRoundTrip checks that Marshal then Parse gives the
// same spec, including values equal to zero that differ from a default.
func TestOptJSONRoundTrip(t *testing.T) {
	t.Parallel()
	specs := []*Spec{
		SGD(0.1, 0.9),
		Adam(0.002),
		{Name: "signum", Momentum: new(0.0), WDLH: new(0.001)},
		{Version: 1, Name: "lamb", Beta1: new(0.0), BiasCorrection: new(false), LowerBound: new(0.5), UpperBound: new(2.0), ClipGradient: new(1.0)},
		{Name: "rmsprop", Centered: new(true), Gamma2: new(0.0), ClipWeights: new(3.0), WD: new(1e-4), RescaleGrad: new(1.0 / 128)},
		{Name: "adamw", CorrectBias: new(false), Eta: new(0.5), LearningRate: new(0.003),
			LRScheduler: &LRScheduler{Type: "cosine", MaxUpdate: 100, FinalLR: 1e-5, WarmupSteps: 10, WarmupBeginLR: 1e-4, WarmupMode: "linear"},
			LRMult:      map[string]float64{"1": 0.5}, WDMult: map[string]float64{"bias": 0}},
		{Name: "sgd", LRScheduler: &LRScheduler{Type: "multifactor", Steps: []int{10, 20}, Factor: new(0.1)}},
		{Name: "nag", LRScheduler: &LRScheduler{Type: "factor", Step: 5, Factor: new(0.5), StopFactorLR: new(0.0)}},
		{Name: "ftrl", Lamda1: new(0.0), Beta: new(0.0), LRScheduler: &LRScheduler{Type: "poly", MaxUpdate: 10, Pwr: new(1.0), FinalLR: 0.01}},
		{Name: "adadelta", Rho: new(0.95), Epsilon: new(1e-6)},
		{Name: "adagrad", Epsilon: new(1e-10)},
	}
	for _, o := range specs {
		if err := o.Validate(); err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(o, back) {
			t.Errorf("round trip changed the spec:\n%s\n%+v", b, back)
		}
		b2, _ := json.Marshal(back)
		if string(b) != string(b2) {
			t.Errorf("re-encoding differs:\n%s\n%s", b, b2)
		}
		// Same Params before and after.
		var p1, p2 compute.StepParams
		o.Params("1", 4, 7, &p1)
		back.Params("1", 4, 7, &p2)
		if p1 != p2 {
			t.Errorf("%s: Params differ after a round trip", b)
		}
	}
}

// TestOptClone checks that a clone shares no memory with the original.
func TestOptClone(t *testing.T) {
	t.Parallel()
	o := &Spec{Name: "lamb", LearningRate: new(0.1), BiasCorrection: new(true), UpperBound: new(3.0),
		LRScheduler: &LRScheduler{Type: "multifactor", Steps: []int{5, 9}, Factor: new(0.5)},
		LRMult:      map[string]float64{"1": 2}, WDMult: map[string]float64{"b": 0}}
	c := o.Clone()
	if !reflect.DeepEqual(o, c) {
		t.Fatalf("clone differs: %+v", c)
	}
	*c.LearningRate, *c.BiasCorrection, *c.UpperBound = 9, false, 9
	c.LRScheduler.Steps[0], *c.LRScheduler.Factor = 1, 0.9
	c.LRMult["1"], c.WDMult["b"] = 7, 7
	if *o.LearningRate != 0.1 || !*o.BiasCorrection || *o.UpperBound != 3 || o.LRScheduler.Steps[0] != 5 ||
		*o.LRScheduler.Factor != 0.5 || o.LRMult["1"] != 2 || o.WDMult["b"] != 0 {
		t.Errorf("changing the clone changed the original: %+v", o)
	}
	if (*Spec)(nil).Clone() != nil {
		t.Error("nil clone")
	}
	// Every pointer, slice and map field, including ones added later, must be
	// copied: set them all by reflection and compare addresses.
	full := &Spec{LRScheduler: &LRScheduler{}}
	for _, v := range []reflect.Value{reflect.ValueOf(full).Elem(), reflect.ValueOf(full.LRScheduler).Elem()} {
		for i := range v.NumField() {
			f := v.Field(i)
			switch f.Kind() {
			case reflect.Pointer:
				if f.IsNil() {
					f.Set(reflect.New(f.Type().Elem()))
				}
			case reflect.Map:
				f.Set(reflect.MakeMap(f.Type()))
				f.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf(1.0))
			case reflect.Slice:
				f.Set(reflect.MakeSlice(f.Type(), 1, 1))
			}
		}
	}
	cl := full.Clone()
	for _, pair := range [][2]reflect.Value{
		{reflect.ValueOf(full).Elem(), reflect.ValueOf(cl).Elem()},
		{reflect.ValueOf(full.LRScheduler).Elem(), reflect.ValueOf(cl.LRScheduler).Elem()},
	} {
		for i := range pair[0].NumField() {
			a, b := pair[0].Field(i), pair[1].Field(i)
			switch a.Kind() {
			case reflect.Pointer, reflect.Map, reflect.Slice:
				if a.Pointer() == b.Pointer() {
					t.Errorf("Clone shares field %s", pair[0].Type().Field(i).Name)
				}
			}
		}
	}
}

// TestOptValidate checks that bad specs give errors that name the field.
func TestOptValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ spec, want string }{
		{`{"name":"sgdd"}`, `unknown optimizer "sgdd"`},
		{`{"name":""}`, `unknown optimizer ""`},
		{`{"name":"adagrad","learning_rate":-0.1}`, "learning_rate = -0.1"},
		{`{"name":"ftrl","learning_rate":0}`, "learning_rate = 0"},
		{`{"name":"sgd","wd":-1}`, "wd = -1"},
		{`{"name":"sgd","rescale_grad":0}`, "rescale_grad = 0"},
		{`{"name":"sgd","clip_gradient":-1}`, "clip_gradient = -1"},
		{`{"name":"sgd","momentum":1}`, "momentum = 1"},
		{`{"name":"sgd","momentum":-0.5}`, "momentum = -0.5"},
		{`{"name":"adam","beta1":1}`, "beta1 = 1"},
		{`{"name":"adam","beta2":1.5}`, "beta2 = 1.5"},
		{`{"name":"adam","beta2":-0.1}`, "beta2 = -0.1"},
		{`{"name":"adam","epsilon":0}`, "epsilon = 0"},
		{`{"name":"adam","learning_rate":1e39}`, "not a finite float32"},
		{`{"name":"sgd","beta1":0.9}`, "beta1 is not a parameter of sgd"},
		{`{"name":"adam","momentum":0.9}`, "momentum is not a parameter of adam"},
		{`{"name":"adam","correct_bias":false}`, "correct_bias is not a parameter of adam"},
		{`{"name":"adamw","bias_correction":false}`, "bias_correction is not a parameter of adamw"},
		{`{"name":"rmsprop","gamma2":0.9}`, "gamma2 is used only by centered rmsprop"},
		{`{"name":"rmsprop","gamma1":1}`, "gamma1 = 1"},
		{`{"name":"rmsprop","clip_weights":-2}`, "clip_weights = -2"},
		{`{"name":"adadelta","learning_rate":0.1}`, "learning_rate is not a parameter of adadelta"},
		{`{"name":"adadelta","lr_mult":{"1":2}}`, "lr_mult is not a parameter of adadelta"},
		{`{"name":"adadelta","rho":1}`, "rho = 1"},
		{`{"name":"ftrl","lamda1":-1}`, "lamda1 = -1"},
		{`{"name":"signum","wd_lh":-1}`, "wd_lh = -1"},
		{`{"name":"lamb","lower_bound":2,"upper_bound":1}`, "lower_bound = 2 is above upper_bound = 1"},
		{`{"name":"adamw","eta":0}`, "eta = 0"},
		{`{"name":"sgd","lr_mult":{"1":-1}}`, `lr_mult["1"] = -1`},
		{`{"name":"sgd","wd_mult":{"x":-2}}`, `wd_mult["x"] = -2`},
		{`{"name":"sgd","version":2}`, "version 2 is not supported"},
		{`{"name":"ftrl","lr_mult":{"3":0}}`, `lr_mult["3"] = 0: ftrl`},
		{`{"name":"sgd","learning_rte":0.1}`, `unknown field "learning_rte"`},
		{`{"name":"sgd"} {}`, "trailing data"},
		{`{"name":"sgd","learning_rate":"0.1"}`, "learning_rate"},
		{`[]`, "cannot unmarshal"},
	} {
		_, err := Parse([]byte(c.spec))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.spec, err, c.want)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error does not wrap ErrInvalid", c.spec)
		}
	}
	var nilOpt *Spec
	if err := nilOpt.Validate(); err == nil {
		t.Error("nil optimizer validates")
	}
	// Names are case-insensitive, as MXNet's registry.
	if o, err := Parse([]byte(`{"name":"Adam"}`)); err != nil || o.Kind() != compute.OptAdam {
		t.Errorf("Adam: %v, kind %v", err, o.Kind())
	}
	if k := (&Spec{Name: "nope"}).Kind(); k != 0 {
		t.Errorf("unknown name: kind %v", k)
	}
}

// FuzzParse checks that no input panics Parse, and that a
// spec it accepts survives a JSON round trip with the same Params.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"name":"sgd","learning_rate":0.1,"momentum":0.9}`,
		`{"name":"lamb","lower_bound":0.5,"upper_bound":2,"bias_correction":false}`,
		`{"name":"adamw","lr_scheduler":{"type":"cosine","max_update":10,"warmup_steps":2},"lr_mult":{"1":2}}`,
		`{"name":"rmsprop","centered":true,"gamma2":0.5}`,
		`{"name":"ftrl","lr_scheduler":{"type":"multifactor","steps":[1,2]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := Parse(b)
		if err != nil {
			return
		}
		js, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(js)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", js, err)
		}
		var p1, p2 compute.StepParams
		o.Params("k", 3, 5, &p1)
		back.Params("k", 3, 5, &p2)
		if p1 != p2 && !(p1.LR != p1.LR) { // NaN never equals itself
			t.Fatalf("Params differ after round trip of %s", js)
		}
	})
}

// TestNegativeLearningRate: SGD takes a negative learning rate (MXNet's
// nightly dist tests run learning_rate=-lr, so the update adds the
// gradient); other optimizers and schedules refuse one.
func TestNegativeLearningRate(t *testing.T) {
	t.Parallel()
	s, err := Parse([]byte(`{"name":"sgd","learning_rate":-0.5}`))
	if err != nil {
		t.Fatal(err)
	}
	var p compute.StepParams
	s.Params("0", 1, 1, &p)
	if p.LR != -0.5 {
		t.Fatalf("LR %v, want -0.5", p.LR)
	}
	for _, bad := range []string{
		`{"name":"adam","learning_rate":-0.1}`,
		`{"name":"nag","learning_rate":-0.1}`,
		`{"name":"sgd","learning_rate":-0.1,"lr_scheduler":{"type":"factor","step":10,"factor":0.5}}`,
	} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", bad, err)
		}
	}
}
