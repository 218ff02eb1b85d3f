//go:build !wasip1

package simd

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
)

// Inputs and comparisons shared by the native kernel tests (wazero) and the
// browser tests (GOOS=js, in Chromium).

func testSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WEBKV_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WEBKV_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with WEBKV_SEED=%d)", seed, seed)
	return seed
}

// values fills s with random values of about scale, with some special
// values mixed in: zeros of both signs, values near the clip threshold and,
// where special is set, infinities.
func values(r *rand.Rand, s []float32, scale float32, special bool) {
	for i := range s {
		s[i] = (r.Float32()*2 - 1) * scale
		if special {
			switch r.IntN(64) {
			case 0:
				s[i] = 0
			case 1:
				s[i] = float32(math.Copysign(0, -1))
			case 2:
				s[i] = float32(math.Inf(1 - 2*r.IntN(2)))
			case 3:
				s[i] *= 1e6
			}
		}
	}
}

// positive fills s with random values in [lo, hi).
func positive(r *rand.Rand, s []float32, lo, hi float32) {
	for i := range s {
		s[i] = lo + r.Float32()*(hi-lo)
	}
}

// exact reports whether the kernels must agree with the reference bit for
// bit here: where Go may fuse multiply-adds (arm64, ppc64, s390x, riscv64),
// the reference loops may round differently.
func exact() bool {
	return runtime.GOARCH == "amd64" || runtime.GOARCH == "wasm" || runtime.GOARCH == "386"
}

func sameBits(a, b float32) bool {
	if a != a && b != b {
		return true // NaN payloads are not specified by wasm
	}
	if exact() {
		return math.Float32bits(a) == math.Float32bits(b)
	}
	d := math.Abs(float64(a) - float64(b))
	return d <= 1e-6+1e-5*math.Abs(float64(b))
}

// stepCase is one optimizer configuration of the kernel tests.
type stepCase struct {
	name   string
	kind   compute.OptKind
	p      compute.StepParams
	states int
}

// stepCases returns every kernel with each of its switches: weight decay
// on and off, clipping on and off, rescale 1 and not, and each flag.
func stepCases(r *rand.Rand) []stepCase {
	var cs []stepCase
	for variant := range 4 {
		base := compute.StepParams{
			LR:           0.01 + r.Float32()*0.1,
			RescaleGrad:  1,
			ClipGradient: -1,
			Epsilon:      1e-8 + r.Float32()*1e-6,
			T:            float32(1 + r.IntN(10)),
		}
		if variant&1 != 0 {
			base.WD = r.Float32() * 0.01
		}
		if variant&2 != 0 {
			base.ClipGradient = 0.05 + r.Float32()*0.5
			base.RescaleGrad = 0.5 + r.Float32()
		}
		v := fmt.Sprintf("wd=%v,clip=%v", variant&1 != 0, variant&2 != 0)
		add := func(name string, kind compute.OptKind, states int, f func(p *compute.StepParams)) {
			p := base
			f(&p)
			cs = append(cs, stepCase{name + "/" + v, kind, p, states})
		}
		add("sgd", compute.OptSGD, 0, func(p *compute.StepParams) {})
		add("sgd_mom", compute.OptSGD, 1, func(p *compute.StepParams) { p.Momentum = 0.9 })
		add("nag_nomom", compute.OptNAG, 0, func(p *compute.StepParams) {})
		add("nag", compute.OptNAG, 1, func(p *compute.StepParams) { p.Momentum = 0.85 })
		adam := func(p *compute.StepParams) {
			p.Beta1, p.Beta2 = 0.9, 0.999
			p.Coef1 = p.LR * float32(math.Sqrt(1-math.Pow(0.999, float64(p.T)))/(1-math.Pow(0.9, float64(p.T))))
		}
		add("adam", compute.OptAdam, 2, adam)
		add("adamw", compute.OptAdamW, 2, adam)
		add("adagrad", compute.OptAdaGrad, 1, func(p *compute.StepParams) {})
		add("rmsprop", compute.OptRMSProp, 1, func(p *compute.StepParams) { p.Gamma1 = 0.9 })
		add("rmsprop_clipw", compute.OptRMSProp, 1, func(p *compute.StepParams) {
			p.Gamma1, p.Flags, p.ClipWeights = 0.9, compute.FlagClipWeights, 0.3
		})
		add("rmsprop_centered", compute.OptRMSProp, 3, func(p *compute.StepParams) {
			p.Gamma1, p.Gamma2, p.Flags = 0.95, 0.9, compute.FlagCentered
		})
		add("rmsprop_centered_clipw", compute.OptRMSProp, 3, func(p *compute.StepParams) {
			p.Gamma1, p.Gamma2, p.Flags, p.ClipWeights = 0.95, 0.9, compute.FlagCentered|compute.FlagClipWeights, 0.3
		})
		add("adadelta", compute.OptAdaDelta, 2, func(p *compute.StepParams) { p.Rho = 0.9 })
		add("signsgd", compute.OptSignum, 0, func(p *compute.StepParams) { p.WDLH = 0.001 })
		add("signum", compute.OptSignum, 1, func(p *compute.StepParams) { p.Momentum, p.WDLH = 0.9, 0.001 })
		add("ftrl", compute.OptFTRL, 2, func(p *compute.StepParams) { p.Lamda1, p.Beta = 0.01, 1 })
		lamb := func(p *compute.StepParams) {
			p.Beta1, p.Beta2 = 0.9, 0.999
			p.Coef1 = float32(1 - math.Pow(0.9, float64(p.T)))
			p.Coef2 = float32(1 - math.Pow(0.999, float64(p.T)))
		}
		add("lamb", compute.OptLAMB, 2, lamb)
		add("lamb_bias", compute.OptLAMB, 2, func(p *compute.StepParams) { lamb(p); p.Flags = compute.FlagBiasCorrection })
		add("lamb_bounds", compute.OptLAMB, 2, func(p *compute.StepParams) {
			lamb(p)
			p.Flags, p.LowerBound, p.UpperBound = compute.FlagBiasCorrection|compute.FlagBounds, 0.5, 20
		})
	}
	return cs
}

// stateInit fills the states of a case with values the optimizer could
// have produced (accumulators of squares are positive).
func stateInit(r *rand.Rand, c stepCase, states [][]float32) {
	for i, s := range states {
		switch {
		case c.kind == compute.OptAdam || c.kind == compute.OptAdamW || c.kind == compute.OptLAMB:
			if i == 1 {
				positive(r, s, 0, 0.01)
			} else {
				values(r, s, 0.1, false)
			}
		case c.kind == compute.OptAdaGrad, c.kind == compute.OptAdaDelta:
			positive(r, s, 0, 0.1)
		case c.kind == compute.OptRMSProp:
			if i == 0 {
				positive(r, s, 0.01, 0.1)
			} else {
				values(r, s, 0.05, false)
			}
		case c.kind == compute.OptFTRL:
			if i == 1 {
				positive(r, s, 0, 1)
			} else {
				values(r, s, 0.1, false)
			}
		default:
			values(r, s, 0.1, false)
		}
	}
}
