package compute_test

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// runSteps runs steps updates of opt on a copy of w0 through the CPU
// backend, with grads[s] as the gradient of step s (t = numUpdate = s+1),
// and returns the weight and states after each step.
func runSteps(t *testing.T, opt *optimizer.Spec, key string, w0 []float32, grads [][]float32) (ws [][]float32, sts [][][]float32) {
	t.Helper()
	if err := opt.Validate(); err != nil {
		t.Fatal(err)
	}
	be := compute.NewCPU(nil)
	n := len(w0)
	wb, _ := be.Alloc(n)
	gb, _ := be.Alloc(n)
	if err := be.Write(wb, 0, w0); err != nil {
		t.Fatal(err)
	}
	var states []compute.Buffer
	for s, g := range grads {
		var p compute.StepParams
		opt.Params(key, s+1, s+1, &p)
		if want := opt.Kind().NumStates(&p); len(states) != want {
			for len(states) < want {
				b, _ := be.Alloc(n)
				states = append(states, b)
			}
		}
		if err := be.Write(gb, 0, g); err != nil {
			t.Fatal(err)
		}
		if err := be.Step(opt.Kind(), &p, wb, gb, states); err != nil {
			t.Fatalf("step %d: %v", s+1, err)
		}
		w := make([]float32, n)
		be.Read(wb, 0, w)
		ws = append(ws, w)
		var st [][]float32
		for _, b := range states {
			h := make([]float32, n)
			be.Read(b, 0, h)
			st = append(st, h)
		}
		sts = append(sts, st)
	}
	return ws, sts
}

// near reports whether got is within float32-fit tolerance of want.
func near(got float32, want, rel, abs float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(float64(got))
	}
	return math.Abs(float64(got)-want) <= abs+rel*math.Abs(want)
}

func f64s(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// clip64 is mshadow_op::clip in float64; c < 0 means no clipping.
func clip64(x, c float64) float64 {
	if c < 0 {
		return x
	}
	return math.Max(-c, math.Min(c, x))
}

func sign64(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// ref is a float64 transcription of one MXNet optimizer update, written from
// the Python/C++ source named in each case (not from the Go kernels). It
// updates w and st in place for update number t (numUpdate = t).
type ref func(t int, w, g []float64, st [][]float64)

type goldenCase struct {
	name    string
	spec    string
	nStates int
	ref     ref
}

// Shared fixed inputs: 5 weights, 3 gradient steps, chosen to cover both
// signs, clipping (|rescale*g| > 1.5 for clip cases) and a zero.
var (
	goldenW0 = []float32{0.5, -1.25, 2, 0.03, -0.7}
	goldenG  = [][]float32{
		{0.2, -0.4, 1.5, -3, 0.01},
		{-0.1, 0.3, 2.5, 0.5, -0.02},
		{0.05, -0.6, -1, 4, 0},
	}
)

func goldenCases() []goldenCase {
	return []goldenCase{
		{
			// python/mxnet/optimizer/optimizer.py SGD -> sgd_update (SGDKernel):
			// w = (1-lr*wd)*w - lr*clip(rescale*g)
			name: "sgd", spec: `{"name":"sgd","learning_rate":0.1,"wd":0.01,"rescale_grad":0.5,"clip_gradient":1.0}`,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, wd, rs, c := 0.1, 0.01, 0.5, 1.0
				for i := range w {
					w[i] = (1-lr*wd)*w[i] - lr*clip64(rs*g[i], c)
				}
			},
		},
		{
			// SGD with momentum -> sgd_mom_update (SGDMomKernel):
			// mom = momentum*mom - lr*wd*w - lr*clip(rescale*g); w += mom
			name: "sgd_momentum", spec: `{"name":"sgd","learning_rate":0.05,"momentum":0.9,"wd":0.001}`, nStates: 1,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, wd, mu := 0.05, 0.001, 0.9
				for i := range w {
					st[0][i] = mu*st[0][i] - lr*wd*w[i] - lr*g[i]
					w[i] += st[0][i]
				}
			},
		},
		{
			// NAG -> nag_mom_update (NAGMomKernel), in place:
			// mom = momentum*mom
			// w = w - mom + (momentum+1)*(mom - lr*(clip(rs*g) + wd*w))
			// mom = mom - lr*(clip(rs*g) + wd*w_new)
			name: "nag", spec: `{"name":"nag","learning_rate":0.1,"momentum":0.8,"wd":0.05,"clip_gradient":2}`, nStates: 1,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, wd, mu, c := 0.1, 0.05, 0.8, 2.0
				for i := range w {
					gr := clip64(g[i], c)
					st[0][i] *= mu
					w[i] = w[i] - st[0][i] + (mu+1)*(st[0][i]-lr*(gr+wd*w[i]))
					st[0][i] -= lr * (gr + wd*w[i])
				}
			},
		},
		{
			// Adam (optimizer.py) -> adam_update (AdamUpdateKernel):
			// lr_t = lr*sqrt(1-b2^t)/(1-b1^t); g = clip(rs*g + wd*w)
			name: "adam", spec: `{"name":"adam","learning_rate":0.01,"wd":0.1,"clip_gradient":1.5}`, nStates: 2,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, b1, b2, eps, wd, c := 0.01, 0.9, 0.999, 1e-8, 0.1, 1.5
				tf := float64(t)
				lrt := lr * math.Sqrt(1-math.Pow(b2, tf)) / (1 - math.Pow(b1, tf))
				for i := range w {
					gr := clip64(g[i]+wd*w[i], c)
					st[0][i] = b1*st[0][i] + (1-b1)*gr
					st[1][i] = b2*st[1][i] + (1-b2)*gr*gr
					w[i] -= lrt * st[0][i] / (math.Sqrt(st[1][i]) + eps)
				}
			},
		},
		{
			// AdamW (python/mxnet/optimizer/adamW.py fused_step) -> contrib
			// adamw_update(lr=1, eta=lr_t*eta_spec): w -= eta*(m/(sqrt(v)+eps) + wd*w)
			name: "adamw", spec: `{"name":"adamw","learning_rate":0.01,"wd":0.1,"rescale_grad":2,"eta":0.5}`, nStates: 2,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, b1, b2, eps, wd, rs, eta := 0.01, 0.9, 0.999, 1e-6, 0.1, 2.0, 0.5
				tf := float64(t)
				e := eta * lr * math.Sqrt(1-math.Pow(b2, tf)) / (1 - math.Pow(b1, tf))
				for i := range w {
					gr := rs * g[i]
					st[0][i] = b1*st[0][i] + (1-b1)*gr
					st[1][i] = b2*st[1][i] + (1-b2)*gr*gr
					w[i] -= e * (st[0][i]/(math.Sqrt(st[1][i])+eps) + wd*w[i])
				}
			},
		},
		{
			// AdamW without bias correction (correct_bias=False): eta = lr*eta_spec.
			name: "adamw_nocorrect", spec: `{"name":"adamw","learning_rate":0.02,"wd":0.01,"correct_bias":false,"clip_gradient":1}`, nStates: 2,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, b1, b2, eps, wd, c := 0.02, 0.9, 0.999, 1e-6, 0.01, 1.0
				for i := range w {
					gr := clip64(g[i], c)
					st[0][i] = b1*st[0][i] + (1-b1)*gr
					st[1][i] = b2*st[1][i] + (1-b2)*gr*gr
					w[i] -= lr * (st[0][i]/(math.Sqrt(st[1][i])+eps) + wd*w[i])
				}
			},
		},
		{
			// AdaGrad (optimizer.py, dense branch):
			// g = clip(rs*g); h += g^2; w += (g/sqrt(h+eps) + w*wd) * -lr
			name: "adagrad", spec: `{"name":"adagrad","learning_rate":0.1,"wd":0.01,"clip_gradient":2}`, nStates: 1,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, wd, eps, c := 0.1, 0.01, 1e-7, 2.0
				for i := range w {
					gr := clip64(g[i], c)
					st[0][i] += gr * gr
					w[i] += (gr/math.Sqrt(st[0][i]+eps) + w[i]*wd) * -lr
				}
			},
		},
		{
			// RMSProp, centered=False (optimizer.py) -> rmsprop_update
			// (RMSPropUpdateKernel): g = clip(rs*g + wd*w); n = (1-g1)*g^2 + g1*n;
			// w = clip_w(w - lr*g/sqrt(n+eps))
			name: "rmsprop", spec: `{"name":"rmsprop","learning_rate":0.01,"gamma1":0.95,"wd":0.1,"clip_weights":1.9}`, nStates: 1,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, g1, eps, wd, cw := 0.01, 0.95, 1e-8, 0.1, 1.9
				for i := range w {
					gr := g[i] + wd*w[i]
					st[0][i] = (1-g1)*gr*gr + g1*st[0][i]
					w[i] = clip64(w[i]-lr*gr/math.Sqrt(st[0][i]+eps), cw)
				}
			},
		},
		{
			// RMSProp, centered=True -> rmspropalex_update (RMSPropAlexUpdateKernel):
			// n = (1-g1)g^2 + g1 n; gm = (1-g1)g + g1 gm;
			// delta = g2 delta - lr g/sqrt(n - gm^2 + eps); w += delta
			name: "rmsprop_centered", spec: `{"name":"rmsprop","learning_rate":0.01,"centered":true,"gamma2":0.8,"clip_gradient":2,"epsilon":1e-6}`, nStates: 3,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, g1, g2, eps, c := 0.01, 0.9, 0.8, 1e-6, 2.0
				for i := range w {
					gr := clip64(g[i], c)
					st[0][i] = (1-g1)*gr*gr + g1*st[0][i]
					st[1][i] = (1-g1)*gr + g1*st[1][i]
					st[2][i] = g2*st[2][i] - lr*gr/math.Sqrt(st[0][i]-st[1][i]*st[1][i]+eps)
					w[i] += st[2][i]
				}
			},
		},
		{
			// AdaDelta (optimizer.py 1.x code): no learning rate, wd on the weight.
			name: "adadelta", spec: `{"name":"adadelta","rho":0.9,"epsilon":1e-5,"wd":0.01,"rescale_grad":0.5}`, nStates: 2,
			ref: func(t int, w, g []float64, st [][]float64) {
				rho, eps, wd, rs := 0.9, 1e-5, 0.01, 0.5
				for i := range w {
					gr := rs * g[i]
					st[0][i] = rho*st[0][i] + (1-rho)*gr*gr
					d := math.Sqrt(st[1][i]+eps) / math.Sqrt(st[0][i]+eps) * gr
					st[1][i] = rho*st[1][i] + (1-rho)*d*d
					w[i] -= d + wd*w[i]
				}
			},
		},
		{
			// Signum (optimizer.py) -> signum_update (SignumKernel):
			// mom = mu*mom - (1-mu)*wd*w - (1-mu)*clip(rs*g); w = (1-lr*wd_lh)*w + lr*sign(mom)
			name: "signum", spec: `{"name":"signum","learning_rate":0.01,"wd":0.1,"wd_lh":0.5,"clip_gradient":1}`, nStates: 1,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, wd, mu, wdlh, c := 0.01, 0.1, 0.9, 0.5, 1.0
				for i := range w {
					st[0][i] = mu*st[0][i] - (1-mu)*wd*w[i] - (1-mu)*clip64(g[i], c)
					w[i] = (1-lr*wdlh)*w[i] + lr*sign64(st[0][i])
				}
			},
		},
		{
			// Signum with momentum 0 -> signsgd_update (SignSGDKernel), wd + wd_lh:
			// w = (1-lr*wd)*w - lr*sign(g)
			name: "signsgd", spec: `{"name":"signum","learning_rate":0.01,"momentum":0,"wd":0.1,"wd_lh":0.2}`,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, wd := 0.01, 0.1+0.2
				for i := range w {
					w[i] = (1-lr*wd)*w[i] - lr*sign64(g[i])
				}
			},
		},
		{
			// Ftrl (optimizer.py) -> ftrl_update (FtrlUpdateKernel):
			// z += g - (sqrt(n+g^2) - sqrt(n))*w/lr; n += g^2;
			// w = (sign(z)*l1 - z)/((beta+sqrt(n))/lr + wd) * (|z| > l1)
			name: "ftrl", spec: `{"name":"ftrl","learning_rate":0.1,"lamda1":0.05,"beta":1,"wd":0.01}`, nStates: 2,
			ref: func(t int, w, g []float64, st [][]float64) {
				lr, l1, beta, wd := 0.1, 0.05, 1.0, 0.01
				for i := range w {
					z, n := st[0], st[1]
					z[i] += g[i] - (math.Sqrt(n[i]+g[i]*g[i])-math.Sqrt(n[i]))*w[i]/lr
					n[i] += g[i] * g[i]
					if math.Abs(z[i]) > l1 {
						w[i] = (sign64(z[i])*l1 - z[i]) / ((beta+math.Sqrt(n[i]))/lr + wd)
					} else {
						w[i] = 0
					}
				}
			},
		},
		{
			// LAMB (python/mxnet/optimizer/lamb.py) -> lamb_update_phase1/phase2.
			name: "lamb", spec: `{"name":"lamb","learning_rate":0.01,"wd":0.01,"clip_gradient":2}`, nStates: 2,
			ref: lambRef(0.01, 0.9, 0.999, 1e-6, 0.01, 1, 2, true, -1, -1),
		},
		{
			name: "lamb_nobias_bounds", spec: `{"name":"lamb","learning_rate":0.02,"bias_correction":false,"lower_bound":0.5,"upper_bound":1.0,"rescale_grad":0.5}`, nStates: 2,
			ref: lambRef(0.02, 0.9, 0.999, 1e-6, 0, 0.5, -1, false, 0.5, 1.0),
		},
	}
}

// lambRef transcribes LambUpdatePhaseOneKernel, the norms of lamb.py and
// LambUpdatePhaseTwoKernel in float64.
func lambRef(lr, b1, b2, eps, wd, rs, c float64, bias bool, lb, ub float64) ref {
	return func(t int, w, g []float64, st [][]float64) {
		tf := float64(t)
		u := make([]float64, len(w))
		var r1, r2 float64
		for i := range w {
			gr := clip64(rs*g[i], c)
			st[0][i] = b1*st[0][i] + (1-b1)*gr
			st[1][i] = b2*st[1][i] + (1-b2)*gr*gr
			if bias {
				mh := st[0][i] / (1 - math.Pow(b1, tf))
				vh := st[1][i] / (1 - math.Pow(b2, tf))
				u[i] = mh/(math.Sqrt(vh)+eps) + wd*w[i]
			} else {
				u[i] = st[0][i]/(math.Sqrt(st[1][i])+eps) + wd*w[i]
			}
			r1 += w[i] * w[i]
			r2 += u[i] * u[i]
		}
		r1, r2 = math.Sqrt(r1), math.Sqrt(r2)
		if lb >= 0 {
			r1 = math.Max(r1, lb)
		}
		if ub >= 0 {
			r1 = math.Min(r1, ub)
		}
		l := lr
		if r1 != 0 && r2 != 0 {
			l = lr * r1 / r2
		}
		for i := range w {
			w[i] -= l * u[i]
		}
	}
}

// TestOptGolden checks three steps of every optimizer, run through
// optimizer.Parse, Params and the CPU backend, against the float64
// transcription of MXNet's formula in goldenCases.
func TestOptGolden(t *testing.T) {
	t.Parallel()
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			opt, err := optimizer.Parse([]byte(c.spec))
			if err != nil {
				t.Fatal(err)
			}
			ws, sts := runSteps(t, opt, "0", goldenW0, goldenG)
			w := f64s(goldenW0)
			st := make([][]float64, c.nStates)
			for i := range st {
				st[i] = make([]float64, len(w))
			}
			for s := range goldenG {
				c.ref(s+1, w, f64s(goldenG[s]), st)
				if len(sts[s]) != c.nStates {
					t.Fatalf("step %d: %d states, want %d", s+1, len(sts[s]), c.nStates)
				}
				for i := range w {
					if !near(ws[s][i], w[i], 2e-5, 1e-6) {
						t.Errorf("step %d: w[%d] = %.9g, MXNet formula gives %.9g", s+1, i, ws[s][i], w[i])
					}
					for j := range st {
						if !near(sts[s][j][i], st[j][i], 2e-5, 1e-6) {
							t.Errorf("step %d: state %d [%d] = %.9g, MXNet formula gives %.9g", s+1, j, i, sts[s][j][i], st[j][i])
						}
					}
				}
			}
		})
	}
}

// TestOptHandValues checks values derived by hand (no shared code with the
// kernels or the float64 references above).
func TestOptHandValues(t *testing.T) {
	t.Parallel()
	one := func(spec string, w0 float32, grads ...float32) []float32 {
		t.Helper()
		opt, err := optimizer.Parse([]byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		var gs [][]float32
		for _, g := range grads {
			gs = append(gs, []float32{g})
		}
		ws, _ := runSteps(t, opt, "0", []float32{w0}, gs)
		out := make([]float32, len(ws))
		for i := range ws {
			out[i] = ws[i][0]
		}
		return out
	}
	for _, c := range []struct {
		name string
		got  []float32
		want []float64
	}{
		// w=1, g=0.5, lr=0.1: 1 - 0.05 = 0.95; then 0.95 - 0.05 = 0.9.
		{"sgd", one(`{"name":"sgd","learning_rate":0.1}`, 1, 0.5, 0.5), []float64{0.95, 0.9}},
		// wd=0.1: (1-0.01)*1 - 0.1*0.5 = 0.94.
		{"sgd_wd", one(`{"name":"sgd","learning_rate":0.1,"wd":0.1}`, 1, 0.5), []float64{0.94}},
		// clip 0.2: g=5 -> 0.2: 1 - 0.02 = 0.98.
		{"sgd_clip", one(`{"name":"sgd","learning_rate":0.1,"clip_gradient":0.2}`, 1, 5), []float64{0.98}},
		// momentum 0.9, g=1, lr=0.1: m=-0.1, w=0.9; m=-0.19, w=0.71.
		{"sgd_mom", one(`{"name":"sgd","learning_rate":0.1,"momentum":0.9}`, 1, 1, 1), []float64{0.9, 0.71}},
		// NAG momentum 0.9, g=1, lr=0.1: step 1 w = 1 - 0 + 1.9*(0-0.1) = 0.81, m=-0.1;
		// step 2: m=-0.09, w = 0.81 + 0.09 + 1.9*(-0.09-0.1) = 0.539.
		{"nag", one(`{"name":"nag","learning_rate":0.1,"momentum":0.9}`, 1, 1, 1), []float64{0.81, 0.539}},
		// Adam step 1 moves by lr*g/|g| (up to eps): 1 - 0.001.
		{"adam", one(`{"name":"adam"}`, 1, 2), []float64{0.999}},
		// AdaGrad step 1: h = g^2, w -= lr*g/|g| = 1 - 0.01.
		{"adagrad", one(`{"name":"adagrad"}`, 1, 3), []float64{0.99}},
		// RMSProp step 1 (gamma1 0.9): n = 0.1*g^2, w -= lr*g/sqrt(0.1 g^2) = lr*sqrt(10).
		{"rmsprop", one(`{"name":"rmsprop","learning_rate":0.01}`, 1, 2), []float64{1 - 0.01*math.Sqrt(10)}},
		// Signum step 1 (momentum 0.9): mom = -0.1*g < 0 for g > 0, w = 1 - 0.01.
		{"signum", one(`{"name":"signum"}`, 1, 4), []float64{0.99}},
		// FTRL step 1, w=0, g=1, lr=0.1, l1=0.01, beta=1: z=1, n=1,
		// w = (0.01 - 1)/((1+1)/0.1) = -0.99/20 = -0.0495.
		{"ftrl", one(`{"name":"ftrl"}`, 0, 1), []float64{-0.0495}},
		// AdaDelta step 1, rho 0.9, eps 1e-5, g=1: accG=0.1,
		// delta = sqrt(1e-5)/sqrt(0.1+1e-5) = 0.0099995.
		{"adadelta", one(`{"name":"adadelta"}`, 1, 1), []float64{1 - math.Sqrt(1e-5)/math.Sqrt(0.1+1e-5)}},
		// LAMB step 1 on one weight w=1, g=1: u = 1/(1+1e-6), r1 = 1, r2 = |u|,
		// lr' = lr/|u|, w = 1 - lr = 0.999.
		{"lamb", one(`{"name":"lamb"}`, 1, 1), []float64{0.999}},
	} {
		if len(c.got) != len(c.want) {
			t.Fatalf("%s: %d values, want %d", c.name, len(c.got), len(c.want))
		}
		for i := range c.want {
			if !near(c.got[i], c.want[i], 1e-6, 1e-7) {
				t.Errorf("%s: step %d: w = %.9g, hand-derived %.9g", c.name, i+1, c.got[i], c.want[i])
			}
		}
	}
}

// propertyConfigs are the element-wise kernel configurations the property
// tests sweep (every branch: clip on/off, momentum on/off, centered, clip
// weights).
var propertyConfigs = []string{
	`{"name":"sgd","learning_rate":0.1,"wd":0.01}`,
	`{"name":"sgd","learning_rate":0.1,"wd":0.01,"clip_gradient":0.5}`,
	`{"name":"sgd","learning_rate":0.1,"momentum":0.9,"wd":0.01}`,
	`{"name":"sgd","learning_rate":0.1,"momentum":0.9,"clip_gradient":0.5}`,
	`{"name":"nag","learning_rate":0.1,"momentum":0.9,"wd":0.01,"clip_gradient":0.5}`,
	`{"name":"nag","learning_rate":0.1}`,
	`{"name":"adam","wd":0.01}`,
	`{"name":"adam","clip_gradient":0.5,"rescale_grad":0.25}`,
	`{"name":"adamw","wd":0.01,"clip_gradient":0.5}`,
	`{"name":"adagrad","wd":0.01,"clip_gradient":0.5}`,
	`{"name":"rmsprop","wd":0.01,"clip_weights":0.8}`,
	`{"name":"rmsprop","centered":true,"clip_gradient":0.5,"clip_weights":0.8}`,
	`{"name":"adadelta","wd":0.01,"clip_gradient":0.5}`,
	`{"name":"signum","wd":0.01,"wd_lh":0.01,"clip_gradient":0.5}`,
	`{"name":"signum","momentum":0}`,
	`{"name":"ftrl","wd":0.01,"clip_gradient":0.5}`,
}

func randSlice(r *rand.Rand, n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64() * scale)
	}
	return s
}

func cloneStates(st [][]float32) [][]float32 {
	out := make([][]float32, len(st))
	for i := range st {
		out[i] = append([]float32(nil), st[i]...)
	}
	return out
}

// TestOptChunkedEqualsWhole checks that stepRange over random chunks gives
// the same bits as one call over everything: the CPU backend relies on it
// when it splits a step across goroutines.
func TestOptChunkedEqualsWhole(t *testing.T) {
	t.Parallel()
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for _, spec := range propertyConfigs {
		opt, err := optimizer.Parse([]byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		n := 1 + r.IntN(3000)
		w := randSlice(r, n, 1)
		var p compute.StepParams
		opt.Params("1", 3, 3, &p)
		st := make([][]float32, opt.Kind().NumStates(&p))
		for i := range st {
			st[i] = randSlice(r, n, 0.1)
			if opt.Kind() != compute.OptSGD && opt.Kind() != compute.OptNAG && opt.Kind() != compute.OptSignum && !(opt.Kind() == compute.OptRMSProp && i > 0) && !(opt.Kind() == compute.OptFTRL && i == 0) {
				for j := range st[i] { // second moments, histories: >= 0
					st[i][j] = st[i][j] * st[i][j]
				}
			}
		}
		for step := 0; step < 3; step++ {
			g := randSlice(r, n, 1)
			w1, st1 := append([]float32(nil), w...), cloneStates(st)
			compute.StepRange(opt.Kind(), &p, w1, g, st1, 0, n)
			w2, st2 := append([]float32(nil), w...), cloneStates(st)
			for lo := 0; lo < n; {
				hi := min(n, lo+1+r.IntN(700))
				compute.StepRange(opt.Kind(), &p, w2, g, st2, lo, hi)
				lo = hi
			}
			for i := range w1 {
				if math.Float32bits(w1[i]) != math.Float32bits(w2[i]) {
					t.Fatalf("%s: w[%d] whole %v, chunked %v", spec, i, w1[i], w2[i])
				}
				for j := range st1 {
					if math.Float32bits(st1[j][i]) != math.Float32bits(st2[j][i]) {
						t.Fatalf("%s: state %d [%d] whole %v, chunked %v", spec, j, i, st1[j][i], st2[j][i])
					}
				}
			}
			w, st = w1, st1
		}
	}
}

// TestOptBackendParallelMatchesSerial runs arrays above the CPU backend's
// parallel threshold through Backend.Step and compares with one serial
// stepRange (and lambStep for LAMB) on the same inputs.
func TestOptBackendParallelMatchesSerial(t *testing.T) {
	t.Parallel()
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	n := compute.ParallelMin*3 + 77
	specs := append(append([]string(nil), propertyConfigs...), `{"name":"lamb","wd":0.01,"clip_gradient":0.5}`)
	be := compute.NewCPU(nil)
	for _, spec := range specs {
		opt, err := optimizer.Parse([]byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		var p compute.StepParams
		opt.Params("1", 1, 1, &p)
		w, g := randSlice(r, n, 1), randSlice(r, n, 1)
		ns := opt.Kind().NumStates(&p)
		wb, _ := be.Alloc(n)
		gb, _ := be.Alloc(n)
		be.Write(wb, 0, w)
		be.Write(gb, 0, g)
		var sb []compute.Buffer
		st := make([][]float32, ns)
		for i := range ns {
			b, _ := be.Alloc(n)
			sb = append(sb, b)
			st[i] = make([]float32, n)
		}
		if err := be.Step(opt.Kind(), &p, wb, gb, sb); err != nil {
			t.Fatal(err)
		}
		if opt.Kind() == compute.OptLAMB {
			if err := compute.LambStep(&p, w, g, st); err != nil {
				t.Fatal(err)
			}
		} else {
			compute.StepRange(opt.Kind(), &p, w, g, st, 0, n)
		}
		got := make([]float32, n)
		be.Read(wb, 0, got)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(w[i]) {
				t.Fatalf("%s: w[%d] backend %v, serial %v", spec, i, got[i], w[i])
			}
		}
		for j, b := range sb {
			be.Read(b, 0, got)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(st[j][i]) {
					t.Fatalf("%s: state %d [%d] backend %v, serial %v", spec, j, i, got[i], st[j][i])
				}
			}
		}
		for _, b := range append(sb, wb, gb) {
			be.Free(b)
		}
	}
}

// TestOptLAMBEdgeCases covers phase 2's special cases: a zero weight norm
// (the trust ratio falls back to 1), a zero update (nothing moves) and the
// bounds on the weight norm.
func TestOptLAMBEdgeCases(t *testing.T) {
	t.Parallel()
	// w = 0: r1 = 0, so lr' = lr; u = m̂/(sqrt(v̂)+eps) = g/(|g|+eps) per element.
	opt, _ := optimizer.Parse([]byte(`{"name":"lamb","learning_rate":0.1}`))
	ws, _ := runSteps(t, opt, "0", []float32{0, 0}, [][]float32{{2, -3}})
	for i, want := range []float64{-0.1 * 2 / (2 + 1e-6), 0.1 * 3 / (3 + 1e-6)} {
		if !near(ws[0][i], want, 1e-6, 1e-8) {
			t.Errorf("w=0: w[%d] = %v, want %v", i, ws[0][i], want)
		}
	}
	// g = 0 and wd = 0: u = 0, r2 = 0, weights unchanged.
	ws, _ = runSteps(t, opt, "0", []float32{1, 2}, [][]float32{{0, 0}})
	if ws[0][0] != 1 || ws[0][1] != 2 {
		t.Errorf("g=0: w = %v, want [1 2]", ws[0])
	}
	// upper_bound 0.5 on ||w|| = 5 (w = 3, 4), g = (1, 1): u = (1,1)/(1+1e-6),
	// r2 = sqrt(2)/(1+1e-6), lr' = 0.1*0.5/r2, w -= lr'*u = 0.05/sqrt(2) each.
	opt, _ = optimizer.Parse([]byte(`{"name":"lamb","learning_rate":0.1,"upper_bound":0.5}`))
	ws, _ = runSteps(t, opt, "0", []float32{3, 4}, [][]float32{{1, 1}})
	d := 0.05 / math.Sqrt(2)
	if !near(ws[0][0], 3-d, 1e-6, 0) || !near(ws[0][1], 4-d, 1e-6, 0) {
		t.Errorf("upper_bound: w = %v, want [%v %v]", ws[0], 3-d, 4-d)
	}
	// lower_bound 10 on ||w|| = 5: r1 = 10.
	opt, _ = optimizer.Parse([]byte(`{"name":"lamb","learning_rate":0.1,"lower_bound":10}`))
	ws, _ = runSteps(t, opt, "0", []float32{3, 4}, [][]float32{{1, 1}})
	d = 1 / math.Sqrt(2)
	if !near(ws[0][0], 3-d, 1e-6, 0) || !near(ws[0][1], 4-d, 1e-6, 0) {
		t.Errorf("lower_bound: w = %v, want [%v %v]", ws[0], 3-d, 4-d)
	}
	if err := compute.LambStep(&compute.StepParams{}, []float32{1}, []float32{1}, [][]float32{{0}}); err == nil {
		t.Error("lambStep with 1 state: no error")
	}
}

// TestOptLAMBNoAllocs checks that a LAMB step allocates nothing, on the
// serial and on the parallel path.
func TestOptLAMBNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	opt, _ := optimizer.Parse([]byte(`{"name":"lamb"}`))
	var p compute.StepParams
	opt.Params("0", 1, 1, &p)
	for _, n := range []int{10000, compute.LambParallelMin + 5000} {
		w, g := make([]float32, n), make([]float32, n)
		st := [][]float32{make([]float32, n), make([]float32, n)}
		for i := range w {
			w[i], g[i] = float32(i%7)-3, float32(i%5)-2
		}
		compute.LambStep(&p, w, g, st) // fills the pool
		if a := testing.AllocsPerRun(10, func() { compute.LambStep(&p, w, g, st) }); a != 0 {
			t.Errorf("n=%d: lambStep allocates %v times per call", n, a)
		}
	}
}

// TestOptLAMBParallelMatchesOneGoroutine checks that the parallel LAMB
// gives the same bits as with GOMAXPROCS=1, from several goroutines at
// once (the pool of helpers is shared).
func TestOptLAMBParallelMatchesOneGoroutine(t *testing.T) {
	t.Parallel()
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 4))
	opt, _ := optimizer.Parse([]byte(`{"name":"lamb","wd":0.01,"lower_bound":0.001}`))
	var p compute.StepParams
	opt.Params("0", 2, 2, &p)
	n := 2*compute.LambParallelMin + 1234
	w0, g := randSlice(r, n, 1), randSlice(r, n, 1)
	m0, v0 := randSlice(r, n, 0.1), randSlice(r, n, 0.1)
	for i := range v0 {
		v0[i] *= v0[i]
	}
	prev := runtime.GOMAXPROCS(1)
	w1, st1 := append([]float32(nil), w0...), cloneStates([][]float32{m0, v0})
	err := compute.LambStep(&p, w1, g, st1)
	runtime.GOMAXPROCS(max(prev, 2))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w2, st2 := append([]float32(nil), w0...), cloneStates([][]float32{m0, v0})
			if err := compute.LambStep(&p, w2, g, st2); err != nil {
				t.Error(err)
				return
			}
			for i := range w1 {
				if math.Float32bits(w1[i]) != math.Float32bits(w2[i]) || math.Float32bits(st1[0][i]) != math.Float32bits(st2[0][i]) ||
					math.Float32bits(st1[1][i]) != math.Float32bits(st2[1][i]) {
					t.Errorf("element %d differs: w %v/%v", i, w1[i], w2[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	runtime.GOMAXPROCS(prev)
}

// TestOptNumStates checks the state counts the kernels expect against the
// MXNet create_state of each optimizer.
func TestOptNumStates(t *testing.T) {
	t.Parallel()
	for spec, want := range map[string]int{
		`{"name":"sgd"}`:                         0,
		`{"name":"sgd","momentum":0.5}`:          1,
		`{"name":"nag"}`:                         0,
		`{"name":"nag","momentum":0.5}`:          1,
		`{"name":"signum"}`:                      1,
		`{"name":"signum","momentum":0}`:         0,
		`{"name":"adam"}`:                        2,
		`{"name":"adamw"}`:                       2,
		`{"name":"adagrad"}`:                     1,
		`{"name":"rmsprop"}`:                     1,
		`{"name":"rmsprop","centered":true}`:     3,
		`{"name":"adadelta"}`:                    2,
		`{"name":"ftrl"}`:                        2,
		`{"name":"lamb"}`:                        2,
		`{"name":"LAMB","bias_correction":true}`: 2,
	} {
		opt, err := optimizer.Parse([]byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		var p compute.StepParams
		opt.Params("0", 1, 1, &p)
		if got := opt.Kind().NumStates(&p); got != want {
			t.Errorf("%s: %d states, want %d", spec, got, want)
		}
		for i := range want {
			if v := opt.StateInit(i); v != 0 {
				t.Errorf("%s: state %d starts at %v, MXNet starts at 0", spec, i, v)
			}
		}
	}
	if n := compute.OptKind(0).NumStates(&compute.StepParams{}); n != 0 {
		t.Errorf("unknown kind: %d states", n)
	}
}
