package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// The vector loops (AVX2 on amd64, unrolled on wasm) must give the bits of
// the reference loops (xxxRef) for every kernel, every switch (weight
// decay, clipping on, off and at 0, rescale, flags), every length around
// the vector width and every alignment, on random inputs with special
// values mixed in: ±0, subnormals, values at the clip bounds, huge values,
// ±Inf and NaN. NaNs must stay NaNs; their payloads may differ (see the
// comment at the top of optimizers.go).

func seedFor(t testing.TB) uint64 {
	s := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("WEBKV_SEED"), 10, 64); err == nil {
		s = v
	}
	t.Logf("seed %d (rerun with WEBKV_SEED=%d)", s, s)
	return s
}

// vecKernel is one kernel as the tests drive it: run is the exported kernel
// (vector loop + reference tail), ref the reference loop alone. Both return
// LAMB phase 1's sums (0 for the others).
type vecKernel struct {
	name   string
	states int
	// positive: states that must be >= 0 to be meaningful (variances).
	positive []int
	run, ref func(p *Params, w, g []float32, st [][]float32) (float64, float64)
	params   []Params
}

func none(f func()) (float64, float64) { f(); return 0, 0 }

func vecKernels() []vecKernel {
	// base switches: every combination of weight decay, clipping (off, 0 and
	// a bound that random gradients cross) and rescale.
	var base []Params
	for _, wd := range []float32{0, 1e-3} {
		for _, clip := range []float32{-1, 0, 0.5} {
			for _, rs := range []float32{1, 0.37} {
				base = append(base, Params{LR: 0.05, WD: wd, RescaleGrad: rs, ClipGradient: clip,
					ClipWeights: -1, LowerBound: -1, UpperBound: -1})
			}
		}
	}
	with := func(f func(p *Params)) []Params {
		out := make([]Params, len(base))
		for i, p := range base {
			f(&p)
			out[i] = p
		}
		return out
	}
	both := func(a, b []Params) []Params { return append(a, b...) }
	mom := with(func(p *Params) { p.Momentum = 0.9 })
	adam := both(with(func(p *Params) { p.Beta1, p.Beta2, p.Epsilon, p.Coef1 = 0.9, 0.999, 1e-8, 0.0031 }),
		with(func(p *Params) { p.Beta1, p.Beta2, p.Epsilon, p.Coef1 = 0.5, 0.75, 0.3, 0.7 }))
	rms := both(with(func(p *Params) { p.Gamma1, p.Epsilon = 0.95, 1e-8 }),
		with(func(p *Params) { p.Gamma1, p.Epsilon, p.Flags, p.ClipWeights = 0.9, 1e-6, FlagClipWeights, 0.7 }))
	rmsc := both(with(func(p *Params) { p.Gamma1, p.Gamma2, p.Epsilon = 0.95, 0.9, 1e-8 }),
		with(func(p *Params) {
			p.Gamma1, p.Gamma2, p.Epsilon, p.Flags, p.ClipWeights = 0.9, 0.8, 1e-4, FlagCentered|FlagClipWeights, 0
		}))
	lamb := both(with(func(p *Params) {
		p.Beta1, p.Beta2, p.Epsilon, p.Coef1, p.Coef2, p.Flags = 0.9, 0.999, 1e-6, 0.271, 0.003, FlagBiasCorrection
	}), with(func(p *Params) { p.Beta1, p.Beta2, p.Epsilon, p.Coef1, p.Coef2 = 0.8, 0.99, 1e-6, 0.5, 0.5 }))
	return []vecKernel{
		{name: "sgd", params: base,
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { SGD(p, w, g) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { sgdRef(p, w, g) })
			}},
		{name: "sgd_mom", states: 1, params: mom,
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { SGDMom(p, w, g, st[0]) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { sgdMomRef(p, w, g, st[0]) })
			}},
		{name: "nag", states: 1, params: mom,
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { NAG(p, w, g, st[0]) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { nagRef(p, w, g, st[0]) })
			}},
		{name: "adam", states: 2, positive: []int{1}, params: adam,
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { Adam(p, w, g, st[0], st[1]) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { adamRef(p, w, g, st[0], st[1]) })
			}},
		{name: "adamw", states: 2, positive: []int{1}, params: adam,
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { AdamW(p, w, g, st[0], st[1]) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { adamWRef(p, w, g, st[0], st[1]) })
			}},
		{name: "adagrad", states: 1, positive: []int{0}, params: with(func(p *Params) { p.Epsilon = 1e-7 }),
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { AdaGrad(p, w, g, st[0]) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { adaGradRef(p, w, g, st[0]) })
			}},
		{name: "rmsprop", states: 1, positive: []int{0}, params: rms,
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { RMSProp(p, w, g, st[0]) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { rmsPropRef(p, w, g, st[0]) })
			}},
		{name: "rmsprop_centered", states: 3, positive: []int{0}, params: rmsc,
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { RMSPropCentered(p, w, g, st[0], st[1], st[2]) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { rmsPropCenteredRef(p, w, g, st[0], st[1], st[2]) })
			}},
		{name: "adadelta", states: 2, positive: []int{0, 1}, params: with(func(p *Params) { p.Rho, p.Epsilon = 0.9, 1e-5 }),
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { AdaDelta(p, w, g, st[0], st[1]) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { adaDeltaRef(p, w, g, st[0], st[1]) })
			}},
		{name: "signsgd", params: with(func(p *Params) { p.WDLH = 0.01 }),
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { SignSGD(p, w, g) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { signSGDRef(p, w, g) })
			}},
		{name: "signum", states: 1, params: with(func(p *Params) { p.Momentum, p.WDLH = 0.9, 0.01 }),
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { Signum(p, w, g, st[0]) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { signumRef(p, w, g, st[0]) })
			}},
		{name: "ftrl", states: 2, positive: []int{1}, params: with(func(p *Params) { p.Lamda1, p.Beta = 0.01, 1 }),
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { FTRL(p, w, g, st[0], st[1]) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { ftrlRef(p, w, g, st[0], st[1]) })
			}},
		{name: "lamb_phase1", states: 2, positive: []int{1}, params: lamb,
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return LAMBPhase1(p, w, g, st[0], st[1])
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return lambPhase1Ref(p, w, g, st[0], st[1], 0, 0)
			}},
		{name: "lamb_phase2", states: 2, positive: []int{1}, params: lamb,
			run: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { LAMBPhase2(p, 0.013, w, st[0], st[1]) })
			},
			ref: func(p *Params, w, g []float32, st [][]float32) (float64, float64) {
				return none(func() { lambPhase2Ref(p, 0.013, w, st[0], st[1]) })
			}},
	}
}

// specials are the values mixed into the random inputs.
func specials(clip float32) []float32 {
	sub := math.Float32frombits(1)           // smallest subnormal
	bigSub := math.Float32frombits(0x7fffff) // largest subnormal
	inf := float32(math.Inf(1))
	return []float32{0, float32(math.Copysign(0, -1)), sub, -sub, bigSub, -bigSub,
		math.SmallestNonzeroFloat32 * 3, 1, -1, clip, -clip, clip / 0.37, -clip / 0.37,
		math.Nextafter32(clip, 1), math.Nextafter32(-clip, -1),
		math.MaxFloat32, -math.MaxFloat32, 1e20, -1e20, inf, -inf, float32(math.NaN())}
}

// vecInput returns n random values around scale, with specials mixed in at
// rate 1/every (0: none); positive values only when pos.
func vecInput(r *rand.Rand, n int, scale float32, pos bool, sp []float32, every int) []float32 {
	v := make([]float32, n)
	for i := range v {
		x := float32(r.NormFloat64()) * scale
		if every > 0 && r.IntN(every) == 0 {
			x = sp[r.IntN(len(sp))]
		}
		if pos && !(x >= 0) && !math.IsNaN(float64(x)) {
			x = -x
		}
		v[i] = x
	}
	return v
}

func sameBits(a, b float32) bool {
	if a != a && b != b {
		return true // NaN: payloads may differ
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

func sameBits64(a, b float64) bool {
	if a != a && b != b {
		return true
	}
	return math.Float64bits(a) == math.Float64bits(b)
}

// TestOptimizersVecBitExact: each kernel, for lengths 0..40 and a few long
// ones, at offsets 0..3 (the vector loops load unaligned), with and without
// special values, gives the reference loop's bits in the weight, every state
// and LAMB's sums.
func TestOptimizersVecBitExact(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(seedFor(t), 12))
	var lens []int
	for n := range 41 {
		lens = append(lens, n)
	}
	lens = append(lens, 63, 64, 65, 1000, LAMBBlock+13)
	offsets := 4
	if testing.Short() { // the wasm runs: about 10x slower
		lens, offsets = lens[:len(lens)-2], 2
	}
	for _, k := range vecKernels() {
		for pi, p := range k.params {
			sp := specials(p.ClipGradient)
			for _, n := range lens {
				for off := range offsets {
					if n > 100 && off > 1 {
						continue
					}
					for _, every := range []int{0, 5} {
						what := fmt.Sprintf("%s params %d (%+v) n=%d off=%d specials=1/%d", k.name, pi, p, n, off, every)
						checkVec(t, r, k, p, n, off, sp, every, what)
					}
				}
			}
		}
	}
}

func checkVec(t *testing.T, r *rand.Rand, k vecKernel, p Params, n, off int, sp []float32, every int, what string) {
	t.Helper()
	mk := func(scale float32, pos bool) (a, b []float32) {
		v := vecInput(r, n+off, scale, pos, sp, every)
		return v[off:], append([]float32(nil), v...)[off:]
	}
	w1, w2 := mk(1, false)
	g, _ := mk(2, false)
	g2 := append([]float32(nil), g...)
	st1, st2 := make([][]float32, k.states), make([][]float32, k.states)
	for i := range k.states {
		pos := false
		for _, j := range k.positive {
			pos = pos || j == i
		}
		st1[i], st2[i] = mk(0.5, pos)
	}
	p1, p2 := p, p
	a1, b1 := k.run(&p1, w1, g, st1)
	a2, b2 := k.ref(&p2, w2, g2, st2)
	for i := range w1 {
		if !sameBits(w1[i], w2[i]) {
			t.Fatalf("%s: weight %d = %v (%#x), reference %v (%#x)", what, i, w1[i], math.Float32bits(w1[i]), w2[i], math.Float32bits(w2[i]))
		}
		if !sameBits(g[i], g2[i]) {
			t.Fatalf("%s: gradient %d changed", what, i)
		}
	}
	for s := range st1 {
		for i := range st1[s] {
			if !sameBits(st1[s][i], st2[s][i]) {
				t.Fatalf("%s: state %d element %d = %v, reference %v", what, s, i, st1[s][i], st2[s][i])
			}
		}
	}
	if !sameBits64(a1, a2) || !sameBits64(b1, b2) {
		t.Fatalf("%s: sums %v %v, reference %v %v", what, a1, b1, a2, b2)
	}
}

// TestOptimizersVecNoAlloc: the vector paths allocate nothing (their
// constants stay on the stack).
func TestOptimizersVecNoAlloc(t *testing.T) {
	const n = 1000
	w, g := make([]float32, n), make([]float32, n)
	st := [][]float32{make([]float32, n), make([]float32, n), make([]float32, n)}
	for _, k := range vecKernels() {
		p := k.params[len(k.params)-1]
		if a := testing.AllocsPerRun(10, func() { k.run(&p, w, g, st) }); a != 0 {
			t.Errorf("%s: %v allocations per call", k.name, a)
		}
	}
}

// TestLAMBPhase1BlocksBitExact: LAMB phase 1 over consecutive blocks (two
// at a time where there is a vector loop) gives each block's reference
// sums and the reference's moments.
func TestLAMBPhase1BlocksBitExact(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(seedFor(t), 15))
	var k vecKernel
	for _, x := range vecKernels() {
		if x.name == "lamb_phase1" {
			k = x
		}
	}
	const B = LAMBBlock
	for _, p := range k.params {
		sp := specials(p.ClipGradient)
		for _, n := range []int{0, 1, B - 1, B, B + 1, 2 * B, 2*B + 5, 3 * B, 4 * B, 5*B + 17} {
			for _, every := range []int{0, 50} {
				w := vecInput(r, n, 1, false, sp, every)
				g := vecInput(r, n, 2, false, sp, every)
				m1, v1 := vecInput(r, n, 0.5, false, sp, every), vecInput(r, n, 0.5, true, sp, every)
				m2, v2 := append([]float32(nil), m1...), append([]float32(nil), v1...)
				nb := (n + B - 1) / B
				got := make([]float64, 2*nb)
				p1, p2 := p, p
				LAMBPhase1Blocks(&p1, w, g, m1, v1, got)
				for b := range nb {
					lo, hi := b*B, min(b*B+B, n)
					ww, uu := lambPhase1Ref(&p2, w[lo:hi], g[lo:hi], m2[lo:hi], v2[lo:hi], 0, 0)
					if !sameBits64(got[2*b], ww) || !sameBits64(got[2*b+1], uu) {
						t.Fatalf("%+v n=%d: block %d sums %v %v, reference %v %v", p, n, b, got[2*b], got[2*b+1], ww, uu)
					}
				}
				for i := range m1 {
					if !sameBits(m1[i], m2[i]) || !sameBits(v1[i], v2[i]) {
						t.Fatalf("%+v n=%d: moments of %d differ", p, n, i)
					}
				}
			}
		}
	}
}
