package kernels

import (
	"fmt"
	"math"
)

// CPU reference kernels of the optimizers. Each one is the element loop of
// the MXNet 1.x operator named in its doc, written in float32 in the same
// order of operations, so results agree with MXNet's CPU operators up to
// float32 rounding (and exactly where no fused multiply-add is involved).
// The WGSL kernels in package shaders implement the same loops; these are
// their oracle. The CPU backend (package compute) runs them over chunks of
// the arrays; each element's result depends on that element only, except
// LAMB's norms (LAMBPhase1 returns per-block sums).
//
// Order of gradient preprocessing differs between MXNet's operators, and the
// kernels keep each operator's order:
//
//	sgd, nag, signum, lamb, ftrl, adagrad, adamw, adadelta:
//	    g = clip(rescale_grad*grad)             (wd applied separately)
//	adam, rmsprop:
//	    g = clip(rescale_grad*grad + wd*weight) (wd inside the clip)
//
// Rounding. Every product that feeds an addition or subtraction is written
// float32(x*y): Go may fuse x*y+z into one multiply-add that rounds once (it
// does on arm64 and with GOAMD64=v3), and the explicit conversion keeps the
// rounding after each operation that MXNet's loops are written with, so the
// reference gives the same bits on every platform. The vector loops (AVX2 on
// amd64, unrolled on wasm) rely on that: they do the same IEEE operations in
// the same order and give the same bits (optimizers_vec_test.go checks every kernel
// on random and special inputs). NaN payloads are not part of that promise:
// x86 passes on the first operand's payload and the compiler may swap the
// operands of a commutative operation.
//
// Structure. Each exported kernel runs its vector loop (xxxVec, one per
// platform; it returns how many leading elements it did, 0 where there is
// none) and then the reference loop (xxxRef, the loop the doc comment
// describes) over the rest.
//
// "clip(x)" is mshadow_op::clip: min(max(x, -c), c) when ClipGradient >= 0,
// else x. Parameters come from optimizer.Spec.Params; ClipGradient < 0 means
// off.

//go:generate go run ./genopt -o optimizers_wasm.go

// Params is compute.StepParams: the same fields in the same order, so that
// the CPU backend converts a *compute.StepParams to a *Params for free (the
// conversion compiles only while the two types stay identical).
type Params struct {
	LR           float32
	WD           float32
	RescaleGrad  float32
	ClipGradient float32

	Momentum float32
	Beta1    float32
	Beta2    float32
	Epsilon  float32

	Gamma1 float32
	Gamma2 float32
	Rho    float32
	Lamda1 float32

	Beta        float32
	WDLH        float32
	LowerBound  float32
	UpperBound  float32
	ClipWeights float32
	Eta         float32

	Coef1 float32
	Coef2 float32
	T     float32
	Flags uint32
	Pad0  uint32
	Pad1  uint32
}

// Step flags: the values of compute's Flag constants (a test checks).
const (
	FlagCentered       uint32 = 1 << iota // RMSProp: centered variant
	FlagBiasCorrection                    // LAMB: bias-corrected moments
	FlagClipWeights                       // RMSProp: clip weights
	FlagBounds                            // LAMB: bounds on the weight norm
)

// clip32 is mshadow_op::clip::Map: NaN passes through unchanged.
func clip32(x, c float32) float32 {
	if x > c {
		return c
	}
	if x < -c {
		return -c
	}
	return x
}

// sign32 is (x > 0) - (x < 0): 0 for zero and NaN. The value is selected
// as bits, which the compiler turns into conditional moves: a branch on the
// sign of random gradients mispredicts half the time.
func sign32(x float32) float32 {
	var b uint32 // +0
	if x > 0 {
		b = 0x3f800000 // 1
	}
	if x < 0 {
		b = 0xbf800000 // -1
	}
	return math.Float32frombits(b)
}

// keep32 is FTRL's gt::Map(abs(z), lamda1) as a factor: 1 where
// |z| > lamda1, else 0 (NaN: 0); selected as sign32 is.
func keep32(z, l1 float32) float32 {
	var b uint32
	if z > l1 {
		b = 0x3f800000
	}
	if -z > l1 {
		b = 0x3f800000
	}
	return math.Float32frombits(b)
}

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// SGD is SGD without momentum, MXNet's sgd_update (SGDKernel in
// src/operator/optimizer_op-inl.h):
//
//	w = (1 - lr*wd)*w - lr*clip(rescale*g)
//
// without clipping the product lr*rescale is formed first, as there.
func SGD(p *Params, w, g []float32) {
	g = g[:len(w)]
	n := sgdVec(p, w, g)
	sgdRef(p, w[n:], g[n:])
}

func sgdRef(p *Params, w, g []float32) {
	g = g[:len(w)]
	decay := 1 - float32(p.LR*p.WD)
	if c := p.ClipGradient; c >= 0 {
		lr, rs := p.LR, p.RescaleGrad
		for i := range w {
			w[i] = float32(decay*w[i]) - float32(lr*clip32(rs*g[i], c))
		}
		return
	}
	lrs := p.LR * p.RescaleGrad
	for i := range w {
		w[i] = float32(decay*w[i]) - float32(lrs*g[i])
	}
}

// SGDMom is SGD with momentum, MXNet's sgd_mom_update (SGDMomKernel in
// src/operator/optimizer_op-inl.h); mom is state 0:
//
//	mom = momentum*mom - lr*wd*w - lr*clip(rescale*g)
//	w   = w + mom
func SGDMom(p *Params, w, g, mom []float32) {
	g, mom = g[:len(w)], mom[:len(w)]
	n := sgdMomVec(p, w, g, mom)
	sgdMomRef(p, w[n:], g[n:], mom[n:])
}

func sgdMomRef(p *Params, w, g, mom []float32) {
	g, mom = g[:len(w)], mom[:len(w)]
	mu, lr, lrwd := p.Momentum, p.LR, p.LR*p.WD
	if c := p.ClipGradient; c >= 0 {
		rs := p.RescaleGrad
		for i := range w {
			m := float32(mu*mom[i]) - float32(lrwd*w[i]) - float32(lr*clip32(rs*g[i], c))
			mom[i] = m
			w[i] += m
		}
		return
	}
	lrs := lr * p.RescaleGrad
	for i := range w {
		m := float32(mu*mom[i]) - float32(lrwd*w[i]) - float32(lrs*g[i])
		mom[i] = m
		w[i] += m
	}
}

// NAG is Nesterov momentum, MXNet's nag_mom_update (NAGMomKernel in
// src/operator/optimizer_op-inl.h, used by optimizer.NAG when momentum > 0;
// with momentum 0 NAG runs sgd_update). mom is state 0:
//
//	mom = momentum*mom
//	w   = w - mom + (momentum+1)*(mom - lr*(clip(rescale*g) + wd*w))
//	mom = mom - lr*(clip(rescale*g) + wd*w)
//
// MXNet runs it in place (out=weight), so the last line reads the weight
// already updated by the line before; this loop does the same.
func NAG(p *Params, w, g, mom []float32) {
	g, mom = g[:len(w)], mom[:len(w)]
	n := nagVec(p, w, g, mom)
	nagRef(p, w[n:], g[n:], mom[n:])
}

func nagRef(p *Params, w, g, mom []float32) {
	g, mom = g[:len(w)], mom[:len(w)]
	mu, lr, wd, rs, c := p.Momentum, p.LR, p.WD, p.RescaleGrad, p.ClipGradient
	mu1 := mu + 1
	for i := range w {
		gr := float32(rs * g[i])
		if c >= 0 {
			gr = clip32(gr, c)
		}
		m := float32(mu * mom[i])
		wi := w[i] - m + float32(mu1*(m-float32(lr*(gr+float32(wd*w[i])))))
		w[i] = wi
		mom[i] = m - float32(lr*(gr+float32(wd*wi)))
	}
}

// Adam is Adam, MXNet's adam_update (AdamUpdateKernel in
// src/operator/optimizer_op-inl.h) with the learning rate that
// optimizer.Adam passes, lr*sqrt(1-beta2^t)/(1-beta1^t), in p.Coef1.
// mean and var are states 0 and 1; weight decay goes into the gradient
// before clipping:
//
//	g    = clip(rescale*g + wd*w)
//	mean = beta1*mean + (1-beta1)*g
//	var  = beta2*var + (1-beta2)*g*g
//	w    = w - Coef1*mean/(sqrt(var) + epsilon)
//
// MXNet's lazy_update only differs for row_sparse gradients, which webkv
// does not have: dense Adam is the one update.
func Adam(p *Params, w, g, mean, vr []float32) {
	g, mean, vr = g[:len(w)], mean[:len(w)], vr[:len(w)]
	n := adamVec(p, w, g, mean, vr)
	adamRef(p, w[n:], g[n:], mean[n:], vr[n:])
}

func adamRef(p *Params, w, g, mean, vr []float32) {
	g, mean, vr = g[:len(w)], mean[:len(w)], vr[:len(w)]
	b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
	rs, wd, lr, eps, c := p.RescaleGrad, p.WD, p.Coef1, p.Epsilon, p.ClipGradient
	if c < 0 {
		for i := range w {
			gr := float32(g[i]*rs) + float32(w[i]*wd)
			m := float32(b1*mean[i]) + float32(nb1*gr)
			v := float32(b2*vr[i]) + float32(nb2*gr*gr)
			mean[i], vr[i] = m, v
			w[i] -= lr * m / (sqrt32(v) + eps)
		}
		return
	}
	for i := range w {
		gr := clip32(float32(g[i]*rs)+float32(w[i]*wd), c)
		m := float32(b1*mean[i]) + float32(nb1*gr)
		v := float32(b2*vr[i]) + float32(nb2*gr*gr)
		mean[i], vr[i] = m, v
		w[i] -= lr * m / (sqrt32(v) + eps)
	}
}

// AdamW is AdamW, MXNet's contrib adamw_update (AdamWUpdate in
// src/operator/contrib/adamw-inl.h) as optimizer.AdamW calls it: lr = 1 and
// eta = the bias-corrected learning rate times the spec's eta, in p.Coef1.
// mean and var are states 0 and 1; weight decay is decoupled from the
// gradient:
//
//	g    = clip(rescale*g)
//	mean = beta1*mean + (1-beta1)*g
//	var  = beta2*var + (1-beta2)*g*g
//	w    = w - Coef1*(mean/(sqrt(var) + epsilon) + wd*w)
//
// (MXNet also skips the whole update when rescale_grad is not finite or 0;
// Validate rejects such a rescale_grad instead.)
func AdamW(p *Params, w, g, mean, vr []float32) {
	g, mean, vr = g[:len(w)], mean[:len(w)], vr[:len(w)]
	n := adamWVec(p, w, g, mean, vr)
	adamWRef(p, w[n:], g[n:], mean[n:], vr[n:])
}

func adamWRef(p *Params, w, g, mean, vr []float32) {
	g, mean, vr = g[:len(w)], mean[:len(w)], vr[:len(w)]
	b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
	rs, wd, eta, eps, c := p.RescaleGrad, p.WD, p.Coef1, p.Epsilon, p.ClipGradient
	for i := range w {
		gr := float32(rs * g[i])
		if c >= 0 {
			gr = clip32(gr, c)
		}
		m := float32(b1*mean[i]) + float32(nb1*gr)
		v := float32(b2*vr[i]) + float32(nb2*gr*gr)
		mean[i], vr[i] = m, v
		w[i] -= float32(eta * (m/(sqrt32(v)+eps) + float32(wd*w[i])))
	}
}

// AdaGrad is AdaGrad, the dense branch of optimizer.AdaGrad.update in
// python/mxnet/optimizer/optimizer.py (1.x; the sparse operator
// AdagradDnsRspDnsKernel is the same without wd). hist is state 0:
//
//	g    = clip(rescale*g)
//	hist = hist + g*g
//	w    = w + (g/sqrt(hist + epsilon) + w*wd) * -lr
func AdaGrad(p *Params, w, g, hist []float32) {
	g, hist = g[:len(w)], hist[:len(w)]
	n := adaGradVec(p, w, g, hist)
	adaGradRef(p, w[n:], g[n:], hist[n:])
}

func adaGradRef(p *Params, w, g, hist []float32) {
	g, hist = g[:len(w)], hist[:len(w)]
	rs, wd, nlr, eps, c := p.RescaleGrad, p.WD, -p.LR, p.Epsilon, p.ClipGradient
	for i := range w {
		gr := float32(rs * g[i])
		if c >= 0 {
			gr = clip32(gr, c)
		}
		h := hist[i] + float32(gr*gr)
		hist[i] = h
		w[i] += float32((gr/sqrt32(h+eps) + float32(w[i]*wd)) * nlr)
	}
}

// RMSProp is RMSProp after Tieleman & Hinton, MXNet's rmsprop_update
// (RMSPropUpdateKernel in src/operator/optimizer_op-inl.h). n is state 0;
// epsilon is inside the square root, as there:
//
//	g = clip(rescale*g + wd*w)
//	n = (1-gamma1)*g*g + gamma1*n
//	w = w - lr*(g/sqrt(n + epsilon))
//	w = clip(w, clip_weights)  if clip_weights is set
func RMSProp(p *Params, w, g, n []float32) {
	g, n = g[:len(w)], n[:len(w)]
	k := rmsPropVec(p, w, g, n)
	rmsPropRef(p, w[k:], g[k:], n[k:])
}

func rmsPropRef(p *Params, w, g, n []float32) {
	g, n = g[:len(w)], n[:len(w)]
	g1, ng1 := p.Gamma1, 1-p.Gamma1
	rs, wd, lr, eps, c, cw := p.RescaleGrad, p.WD, p.LR, p.Epsilon, p.ClipGradient, p.ClipWeights
	clipW := p.Flags&FlagClipWeights != 0 && cw >= 0
	for i := range w {
		gr := float32(rs*g[i]) + float32(wd*w[i])
		if c >= 0 {
			gr = clip32(gr, c)
		}
		ni := float32(ng1*(gr*gr)) + float32(g1*n[i])
		n[i] = ni
		wi := w[i] - float32(lr*(gr/sqrt32(ni+eps)))
		if clipW {
			wi = clip32(wi, cw)
		}
		w[i] = wi
	}
}

// RMSPropCentered is centered RMSProp after Graves 2013 (eqs. 38-45),
// MXNet's rmspropalex_update (RMSPropAlexUpdateKernel in
// src/operator/optimizer_op-inl.h). n, gm and delta are states 0, 1, 2:
//
//	g     = clip(rescale*g + wd*w)
//	n     = (1-gamma1)*g*g + gamma1*n
//	gm    = (1-gamma1)*g + gamma1*gm
//	delta = gamma2*delta - lr*g/sqrt(n - gm*gm + epsilon)
//	w     = w + delta, then clip(w, clip_weights) if set
func RMSPropCentered(p *Params, w, g, n, gm, delta []float32) {
	g, n, gm, delta = g[:len(w)], n[:len(w)], gm[:len(w)], delta[:len(w)]
	k := rmsPropCenteredVec(p, w, g, n, gm, delta)
	rmsPropCenteredRef(p, w[k:], g[k:], n[k:], gm[k:], delta[k:])
}

func rmsPropCenteredRef(p *Params, w, g, n, gm, delta []float32) {
	g, n, gm, delta = g[:len(w)], n[:len(w)], gm[:len(w)], delta[:len(w)]
	g1, ng1, g2 := p.Gamma1, 1-p.Gamma1, p.Gamma2
	rs, wd, lr, eps, c, cw := p.RescaleGrad, p.WD, p.LR, p.Epsilon, p.ClipGradient, p.ClipWeights
	clipW := p.Flags&FlagClipWeights != 0 && cw >= 0
	for i := range w {
		gr := float32(rs*g[i]) + float32(wd*w[i])
		if c >= 0 {
			gr = clip32(gr, c)
		}
		ni := float32(ng1*gr*gr) + float32(g1*n[i])
		gi := float32(ng1*gr) + float32(g1*gm[i])
		di := float32(g2*delta[i]) - lr*gr/sqrt32(ni-float32(gi*gi)+eps)
		n[i], gm[i], delta[i] = ni, gi, di
		wi := w[i] + di
		if clipW {
			wi = clip32(wi, cw)
		}
		w[i] = wi
	}
}

// AdaDelta is AdaDelta, optimizer.AdaDelta.update in
// python/mxnet/optimizer/optimizer.py (1.x, a Python loop: there is no
// operator). accG and accD are states 0 and 1. The code (not its
// docstring, which puts wd into the gradient) applies weight decay to the
// weight directly, and there is no learning rate:
//
//	g     = clip(rescale*g)
//	accG  = rho*accG + (1-rho)*g*g
//	delta = sqrt(accD + epsilon)/sqrt(accG + epsilon)*g
//	accD  = rho*accD + (1-rho)*delta*delta
//	w     = w - (delta + wd*w)
func AdaDelta(p *Params, w, g, accG, accD []float32) {
	g, accG, accD = g[:len(w)], accG[:len(w)], accD[:len(w)]
	n := adaDeltaVec(p, w, g, accG, accD)
	adaDeltaRef(p, w[n:], g[n:], accG[n:], accD[n:])
}

func adaDeltaRef(p *Params, w, g, accG, accD []float32) {
	g, accG, accD = g[:len(w)], accG[:len(w)], accD[:len(w)]
	rho, nrho := p.Rho, 1-p.Rho
	rs, wd, eps, c := p.RescaleGrad, p.WD, p.Epsilon, p.ClipGradient
	for i := range w {
		gr := float32(rs * g[i])
		if c >= 0 {
			gr = clip32(gr, c)
		}
		ag := float32(rho*accG[i]) + float32(nrho*gr*gr)
		d := float32(sqrt32(accD[i]+eps) / sqrt32(ag+eps) * gr)
		accG[i] = ag
		accD[i] = float32(rho*accD[i]) + float32(nrho*d*d)
		w[i] -= d + float32(wd*w[i])
	}
}

// SignSGD is signSGD (Signum with momentum 0), MXNet's signsgd_update
// (SignSGDKernel in src/operator/optimizer_op-inl.h). The kernel ignores
// rescale_grad and clip_gradient (neither changes the sign of a gradient
// rescaled by a positive factor); wd_lh adds to wd, as MXNet 2's Signum
// passes wd + wd_lh here (1.x would fail on the unknown argument):
//
//	w = (1 - lr*(wd + wd_lh))*w - lr*sign(g)
func SignSGD(p *Params, w, g []float32) {
	g = g[:len(w)]
	n := signSGDVec(p, w, g)
	signSGDRef(p, w[n:], g[n:])
}

func signSGDRef(p *Params, w, g []float32) {
	g = g[:len(w)]
	lr := p.LR
	decay := 1 - float32(lr*(p.WD+p.WDLH))
	for i := range w {
		w[i] = float32(decay*w[i]) - float32(lr*sign32(g[i]))
	}
}

// Signum is Signum, MXNet's signum_update (SignumKernel in
// src/operator/optimizer_op-inl.h). mom is state 0:
//
//	mom = momentum*mom - (1-momentum)*wd*w - (1-momentum)*clip(rescale*g)
//	w   = (1 - lr*wd_lh)*w + lr*sign(mom)
func Signum(p *Params, w, g, mom []float32) {
	g, mom = g[:len(w)], mom[:len(w)]
	n := signumVec(p, w, g, mom)
	signumRef(p, w[n:], g[n:], mom[n:])
}

func signumRef(p *Params, w, g, mom []float32) {
	g, mom = g[:len(w)], mom[:len(w)]
	mu, nmu := p.Momentum, 1-p.Momentum
	rs, wd, lr, c := p.RescaleGrad, p.WD, p.LR, p.ClipGradient
	decay := 1 - float32(lr*p.WDLH)
	for i := range w {
		gr := float32(rs * g[i])
		if c >= 0 {
			gr = clip32(gr, c)
		}
		m := float32(mu*mom[i]) - float32(nmu*wd*w[i]) - float32(nmu*gr)
		mom[i] = m
		w[i] = float32(decay*w[i]) + float32(lr*sign32(m))
	}
}

// FTRL is FTRL-Proximal, MXNet's ftrl_update (FtrlUpdateKernel in
// src/operator/optimizer_op-inl.h). z and n are states 0 and 1:
//
//	g = clip(rescale*g)
//	z = z + g - (sqrt(n + g*g) - sqrt(n))*w/lr
//	n = n + g*g
//	w = (sign(z)*lamda1 - z)/((beta + sqrt(n))/lr + wd) * (|z| > lamda1)
func FTRL(p *Params, w, g, z, n []float32) {
	g, z, n = g[:len(w)], z[:len(w)], n[:len(w)]
	k := ftrlVec(p, w, g, z, n)
	ftrlRef(p, w[k:], g[k:], z[k:], n[k:])
}

func ftrlRef(p *Params, w, g, z, n []float32) {
	g, z, n = g[:len(w)], z[:len(w)], n[:len(w)]
	rs, wd, lr, l1, beta, c := p.RescaleGrad, p.WD, p.LR, p.Lamda1, p.Beta, p.ClipGradient
	for i := range w {
		gr := float32(rs * g[i])
		if c >= 0 {
			gr = clip32(gr, c)
		}
		ni := n[i]
		gg := float32(gr * gr)
		zi := z[i] + (gr - (sqrt32(ni+gg)-sqrt32(ni))*w[i]/lr)
		ni += gg
		z[i], n[i] = zi, ni
		w[i] = (float32(sign32(zi)*l1) - zi) / ((beta+sqrt32(ni))/lr + wd) * keep32(zi, l1)
	}
}

// LAMBBlock is the number of elements whose squared norms are summed into
// one float64 partial. Fixed blocks make the norms independent of how the
// work is split (MXNet sums in float32).
const LAMBBlock = 4096

// lambU is LAMB's per-element update direction u from the updated moments.
func lambU(m, v, w, c1, c2, eps, wd float32, bias bool) float32 {
	if bias {
		return (m/c1)/(sqrt32(v/c2)+eps) + float32(wd*w)
	}
	return m/(sqrt32(v)+eps) + float32(wd*w)
}

// LAMBPhase1 and LAMBPhase2 are LAMB, MXNet's lamb_update_phase1 /
// lamb_update_phase2 (LambUpdatePhaseOneKernel, LambUpdatePhaseTwoKernel in
// src/operator/optimizer_op-inl.h) as optimizer.LAMB
// (python/mxnet/optimizer/lamb.py) chains them. mean and var are states 0
// and 1; Coef1 = 1-beta1^t and Coef2 = 1-beta2^t:
//
//	phase 1:  g    = clip(rescale*g)
//	          mean = beta1*mean + (1-beta1)*g
//	          var  = beta2*var + (1-beta2)*g*g
//	          u    = mean/Coef1 / (sqrt(var/Coef2) + epsilon) + wd*w   (bias_correction)
//	          u    = mean / (sqrt(var) + epsilon) + wd*w             (without)
//	norms:    r1 = ||w||, r2 = ||u||
//	phase 2:  r1 = max(r1, lower_bound), min(r1, upper_bound) for the bounds set
//	          lr' = lr if r1 == 0 or r2 == 0, else lr*r1/r2
//	          w   = w - lr'*u
//
// MXNet stores u in a temporary array; here phase 2 recomputes u from the
// updated mean and var and the unchanged weight (the same float32
// operations, so the same bits), which needs no scratch array.
//
// LAMBPhase1 updates mean and var of one block and returns the block's sums
// of w*w and u*u in float64, added one element after the other (the
// products are exact in float64, so only the order of the additions could
// change the sums, and it does not); the caller sums the blocks in order
// (see LAMBBlock).
func LAMBPhase1(p *Params, w, g, mean, vr []float32) (ww, uu float64) {
	g, mean, vr = g[:len(w)], mean[:len(w)], vr[:len(w)]
	n, ww, uu := lambPhase1Vec(p, w, g, mean, vr)
	return lambPhase1Ref(p, w[n:], g[n:], mean[n:], vr[n:], ww, uu)
}

// LAMBPhase1Blocks is LAMBPhase1 on consecutive blocks: w, g, mean and vr
// cover len(sums)/2 blocks of LAMBBlock elements (the last may be shorter),
// and sums[2i], sums[2i+1] get block i's sums. The bits are those of
// LAMBPhase1 block by block; where there is a vector loop it runs two
// blocks at a time, so that their addition chains overlap.
func LAMBPhase1Blocks(p *Params, w, g, mean, vr []float32, sums []float64) {
	nb := (len(w) + LAMBBlock - 1) / LAMBBlock
	if len(sums) != 2*nb {
		panic(fmt.Sprintf("kernels: LAMBPhase1Blocks of %d values (%d blocks) with %d sums", len(w), nb, len(sums)))
	}
	g, mean, vr = g[:len(w)], mean[:len(w)], vr[:len(w)]
	for b := lambPhase1PairsVec(p, w, g, mean, vr, sums); b < nb; b++ {
		lo := b * LAMBBlock
		hi := min(lo+LAMBBlock, len(w))
		sums[2*b], sums[2*b+1] = LAMBPhase1(p, w[lo:hi], g[lo:hi], mean[lo:hi], vr[lo:hi])
	}
}

// lambPhase1Ref is LAMBPhase1's loop, adding to the sums ww and uu.
func lambPhase1Ref(p *Params, w, g, mean, vr []float32, ww, uu float64) (float64, float64) {
	g, mean, vr = g[:len(w)], mean[:len(w)], vr[:len(w)]
	b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
	rs, wd, eps, c := p.RescaleGrad, p.WD, p.Epsilon, p.ClipGradient
	c1, c2, bias := p.Coef1, p.Coef2, p.Flags&FlagBiasCorrection != 0
	for i := range w {
		gr := float32(g[i] * rs)
		if c >= 0 {
			gr = clip32(gr, c)
		}
		m := float32(b1*mean[i]) + float32(nb1*gr)
		v := float32(b2*vr[i]) + float32(nb2*gr*gr)
		mean[i], vr[i] = m, v
		u := lambU(m, v, w[i], c1, c2, eps, wd, bias)
		ww += float64(float64(w[i]) * float64(w[i]))
		uu += float64(float64(u) * float64(u))
	}
	return ww, uu
}

// LAMBPhase2 applies phase 2 to one block with lr' already computed.
func LAMBPhase2(p *Params, lr float32, w, mean, vr []float32) {
	mean, vr = mean[:len(w)], vr[:len(w)]
	n := lambPhase2Vec(p, lr, w, mean, vr)
	lambPhase2Ref(p, lr, w[n:], mean[n:], vr[n:])
}

func lambPhase2Ref(p *Params, lr float32, w, mean, vr []float32) {
	mean, vr = mean[:len(w)], vr[:len(w)]
	wd, eps := p.WD, p.Epsilon
	c1, c2, bias := p.Coef1, p.Coef2, p.Flags&FlagBiasCorrection != 0
	for i := range w {
		w[i] -= float32(lr * lambU(mean[i], vr[i], w[i], c1, c2, eps, wd, bias))
	}
}
