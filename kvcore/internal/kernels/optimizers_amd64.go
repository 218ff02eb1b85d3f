//go:build amd64 && !purego

package kernels

// The AVX2 optimizer loops (optimizers_amd64.s). Each xxxVec runs the
// leading multiple of 8 elements through its assembly loop and returns how
// many it did (0 without AVX2 or for fewer than 8 elements); the reference
// loop does the rest. Switches of the reference loops become values that
// change nothing: clipping off is a clip to ±Inf (min/max with infinities
// return x, NaN too), SGD's lr*rescale without clipping is A*(1*g) with
// A = lr*rescale (1*g == g), LAMB without bias correction divides by 1.

import "math"

// vk holds a vector kernel's constants, each repeated in 8 lanes so that the
// assembly takes them as 32-byte memory operands. Slots 0 and 1 are the
// gradient clip bound and its negation in every kernel.
type vk [12][8]float32

func (k *vk) set(i int, v float32) {
	for j := range k[i] {
		k[i][j] = v
	}
}

var inf32 = float32(math.Inf(1))

// bound is a clip bound as the vector loops take it: c when the reference
// clips (on and c >= 0), else +Inf: clip32(x, +Inf) and the AVX2 min/max
// pair return x unchanged, NaN included.
func bound(c float32, on bool) float32 {
	if on && c >= 0 {
		return c
	}
	return inf32
}

// newVK returns constants with the gradient clip bound set.
func newVK(clip float32) vk {
	var k vk
	c := bound(clip, true)
	k.set(0, c)
	k.set(1, -c)
	return k
}

func vecLen(n int) int {
	if !hasAVX2 {
		return 0
	}
	return n &^ 7
}

func sgdVec(p *Params, w, g []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	k := newVK(p.ClipGradient)
	if p.ClipGradient >= 0 {
		k.set(2, p.RescaleGrad)
		k.set(3, p.LR)
	} else {
		k.set(2, 1)
		k.set(3, p.LR*p.RescaleGrad)
	}
	k.set(4, 1-float32(p.LR*p.WD))
	sgdAVX2(&k, m, &w[0], &g[0], nil, nil, nil)
	return m
}

func sgdMomVec(p *Params, w, g, mom []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	k := newVK(p.ClipGradient)
	if p.ClipGradient >= 0 {
		k.set(2, p.RescaleGrad)
		k.set(3, p.LR)
	} else {
		k.set(2, 1)
		k.set(3, p.LR*p.RescaleGrad)
	}
	k.set(4, p.Momentum)
	k.set(5, p.LR*p.WD)
	sgdMomAVX2(&k, m, &w[0], &g[0], &mom[0], nil, nil)
	return m
}

func nagVec(p *Params, w, g, mom []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	k := newVK(p.ClipGradient)
	k.set(2, p.RescaleGrad)
	k.set(3, p.Momentum)
	k.set(4, p.Momentum+1)
	k.set(5, p.LR)
	k.set(6, p.WD)
	nagAVX2(&k, m, &w[0], &g[0], &mom[0], nil, nil)
	return m
}

// adamConsts fills the slots Adam and AdamW share: 2 rs, 3 wd, 4 b1,
// 5 nb1, 6 b2, 7 nb2, 8 Coef1, 9 eps.
func adamConsts(p *Params) vk {
	k := newVK(p.ClipGradient)
	k.set(2, p.RescaleGrad)
	k.set(3, p.WD)
	k.set(4, p.Beta1)
	k.set(5, 1-p.Beta1)
	k.set(6, p.Beta2)
	k.set(7, 1-p.Beta2)
	k.set(8, p.Coef1)
	k.set(9, p.Epsilon)
	return k
}

func adamVec(p *Params, w, g, mean, vr []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	k := adamConsts(p)
	adamAVX2(&k, m, &w[0], &g[0], &mean[0], &vr[0], nil)
	return m
}

func adamWVec(p *Params, w, g, mean, vr []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	k := adamConsts(p)
	adamWAVX2(&k, m, &w[0], &g[0], &mean[0], &vr[0], nil)
	return m
}

func adaGradVec(p *Params, w, g, hist []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	k := newVK(p.ClipGradient)
	k.set(2, p.RescaleGrad)
	k.set(3, p.WD)
	k.set(4, -p.LR)
	k.set(5, p.Epsilon)
	adaGradAVX2(&k, m, &w[0], &g[0], &hist[0], nil, nil)
	return m
}

func rmsPropVec(p *Params, w, g, n []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	k := newVK(p.ClipGradient)
	k.set(2, p.RescaleGrad)
	k.set(3, p.WD)
	k.set(4, 1-p.Gamma1)
	k.set(5, p.Gamma1)
	k.set(6, p.LR)
	k.set(7, p.Epsilon)
	cw := bound(p.ClipWeights, p.Flags&FlagClipWeights != 0)
	k.set(8, cw)
	k.set(9, -cw)
	rmsPropAVX2(&k, m, &w[0], &g[0], &n[0], nil, nil)
	return m
}

func rmsPropCenteredVec(p *Params, w, g, n, gm, delta []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	k := newVK(p.ClipGradient)
	k.set(2, p.RescaleGrad)
	k.set(3, p.WD)
	k.set(4, 1-p.Gamma1)
	k.set(5, p.Gamma1)
	k.set(6, p.Gamma2)
	k.set(7, p.LR)
	k.set(8, p.Epsilon)
	cw := bound(p.ClipWeights, p.Flags&FlagClipWeights != 0)
	k.set(9, cw)
	k.set(10, -cw)
	rmsPropCenteredAVX2(&k, m, &w[0], &g[0], &n[0], &gm[0], &delta[0])
	return m
}

func adaDeltaVec(p *Params, w, g, accG, accD []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	k := newVK(p.ClipGradient)
	k.set(2, p.RescaleGrad)
	k.set(3, p.WD)
	k.set(4, p.Rho)
	k.set(5, 1-p.Rho)
	k.set(6, p.Epsilon)
	adaDeltaAVX2(&k, m, &w[0], &g[0], &accG[0], &accD[0], nil)
	return m
}

func signSGDVec(p *Params, w, g []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	var k vk
	k.set(2, 1-float32(p.LR*(p.WD+p.WDLH)))
	k.set(3, p.LR)
	k.set(4, 1)
	k.set(5, -1)
	signSGDAVX2(&k, m, &w[0], &g[0], nil, nil, nil)
	return m
}

func signumVec(p *Params, w, g, mom []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	k := newVK(p.ClipGradient)
	nmu := 1 - p.Momentum
	k.set(2, p.RescaleGrad)
	k.set(3, p.Momentum)
	k.set(4, nmu*p.WD)
	k.set(5, nmu)
	k.set(6, 1-float32(p.LR*p.WDLH))
	k.set(7, p.LR)
	k.set(8, 1)
	k.set(9, -1)
	signumAVX2(&k, m, &w[0], &g[0], &mom[0], nil, nil)
	return m
}

func ftrlVec(p *Params, w, g, z, n []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	k := newVK(p.ClipGradient)
	k.set(2, p.RescaleGrad)
	k.set(3, p.WD)
	k.set(4, p.LR)
	k.set(5, p.Lamda1)
	k.set(6, -p.Lamda1)
	k.set(7, p.Beta)
	k.set(8, 1)
	k.set(9, -1)
	ftrlAVX2(&k, m, &w[0], &g[0], &z[0], &n[0], nil)
	return m
}

// lambPhase1Consts are LAMB phase 1's constants: 2 rs, 3 b1, 4 nb1, 5 b2,
// 6 nb2, 7 c1, 8 c2, 9 eps, 10 wd.
func lambPhase1Consts(p *Params) vk {
	k := newVK(p.ClipGradient)
	c1, c2 := lambCoefs(p)
	k.set(2, p.RescaleGrad)
	k.set(3, p.Beta1)
	k.set(4, 1-p.Beta1)
	k.set(5, p.Beta2)
	k.set(6, 1-p.Beta2)
	k.set(7, c1)
	k.set(8, c2)
	k.set(9, p.Epsilon)
	k.set(10, p.WD)
	return k
}

func lambPhase1Vec(p *Params, w, g, mean, vr []float32) (int, float64, float64) {
	m := vecLen(len(w))
	if m == 0 {
		return 0, 0, 0
	}
	k := lambPhase1Consts(p)
	var sums [2]float64
	lambPhase1AVX2(&k, m, &w[0], &g[0], &mean[0], &vr[0], &sums)
	return m, sums[0], sums[1]
}

// lambPhase1PairsVec runs the leading pairs of full blocks through the
// two-block loop and returns how many blocks it did.
func lambPhase1PairsVec(p *Params, w, g, mean, vr []float32, sums []float64) int {
	pairs := len(w) / (2 * LAMBBlock)
	if !hasAVX2 || pairs == 0 {
		return 0
	}
	k := lambPhase1Consts(p)
	for i := range pairs {
		lo := 2 * i * LAMBBlock
		var s [4]float64
		lambPhase1x2AVX2(&k, LAMBBlock, &w[lo], &g[lo], &mean[lo], &vr[lo], &s, 4*LAMBBlock)
		copy(sums[4*i:4*i+4], s[:])
	}
	return 2 * pairs
}

func lambPhase2Vec(p *Params, lr float32, w, mean, vr []float32) int {
	m := vecLen(len(w))
	if m == 0 {
		return 0
	}
	var k vk
	c1, c2 := lambCoefs(p)
	k.set(2, c1)
	k.set(3, c2)
	k.set(4, p.Epsilon)
	k.set(5, p.WD)
	k.set(6, lr)
	lambPhase2AVX2(&k, m, &w[0], &w[0], &mean[0], &vr[0], nil)
	return m
}

//go:noescape
func sgdAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func sgdMomAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func nagAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func adamAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func adamWAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func adaGradAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func rmsPropAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func rmsPropCenteredAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func adaDeltaAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func signSGDAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func signumAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func ftrlAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func lambPhase2AVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)

//go:noescape
func lambPhase1x2AVX2(k *vk, n int, w, gr, s0, s1 *float32, sums *[4]float64, stride int)

//go:noescape
func lambPhase1AVX2(k *vk, n int, w, gr, s0, s1 *float32, sums *[2]float64)
