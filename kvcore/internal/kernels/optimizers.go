package kernels

import "math"

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
// "clip(x)" is mshadow_op::clip: min(max(x, -c), c) when ClipGradient >= 0,
// else x. Parameters come from optimizer.Spec.Params; ClipGradient < 0 means
// off.

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

// sign32 is (x > 0) - (x < 0): 0 for zero and NaN.
func sign32(x float32) float32 {
	if x > 0 {
		return 1
	}
	if x < 0 {
		return -1
	}
	return 0
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
	decay := 1 - p.LR*p.WD
	if c := p.ClipGradient; c >= 0 {
		lr, rs := p.LR, p.RescaleGrad
		for i := range w {
			w[i] = decay*w[i] - lr*clip32(rs*g[i], c)
		}
		return
	}
	lrs := p.LR * p.RescaleGrad
	for i := range w {
		w[i] = decay*w[i] - lrs*g[i]
	}
}

// SGDMom is SGD with momentum, MXNet's sgd_mom_update (SGDMomKernel in
// src/operator/optimizer_op-inl.h); mom is state 0:
//
//	mom = momentum*mom - lr*wd*w - lr*clip(rescale*g)
//	w   = w + mom
func SGDMom(p *Params, w, g, mom []float32) {
	g, mom = g[:len(w)], mom[:len(w)]
	mu, lr, lrwd := p.Momentum, p.LR, p.LR*p.WD
	if c := p.ClipGradient; c >= 0 {
		rs := p.RescaleGrad
		for i := range w {
			m := mu*mom[i] - lrwd*w[i] - lr*clip32(rs*g[i], c)
			mom[i] = m
			w[i] += m
		}
		return
	}
	lrs := lr * p.RescaleGrad
	for i := range w {
		m := mu*mom[i] - lrwd*w[i] - lrs*g[i]
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
	mu, lr, wd, rs, c := p.Momentum, p.LR, p.WD, p.RescaleGrad, p.ClipGradient
	mu1 := mu + 1
	for i := range w {
		gr := rs * g[i]
		if c >= 0 {
			gr = clip32(gr, c)
		}
		m := mu * mom[i]
		wi := w[i] - m + mu1*(m-lr*(gr+wd*w[i]))
		w[i] = wi
		mom[i] = m - lr*(gr+wd*wi)
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
	b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
	rs, wd, lr, eps, c := p.RescaleGrad, p.WD, p.Coef1, p.Epsilon, p.ClipGradient
	if c < 0 {
		for i := range w {
			gr := g[i]*rs + w[i]*wd
			m := b1*mean[i] + nb1*gr
			v := b2*vr[i] + nb2*gr*gr
			mean[i], vr[i] = m, v
			w[i] -= lr * m / (sqrt32(v) + eps)
		}
		return
	}
	for i := range w {
		gr := clip32(g[i]*rs+w[i]*wd, c)
		m := b1*mean[i] + nb1*gr
		v := b2*vr[i] + nb2*gr*gr
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
	b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
	rs, wd, eta, eps, c := p.RescaleGrad, p.WD, p.Coef1, p.Epsilon, p.ClipGradient
	for i := range w {
		gr := rs * g[i]
		if c >= 0 {
			gr = clip32(gr, c)
		}
		m := b1*mean[i] + nb1*gr
		v := b2*vr[i] + nb2*gr*gr
		mean[i], vr[i] = m, v
		w[i] -= eta * (m/(sqrt32(v)+eps) + wd*w[i])
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
	rs, wd, nlr, eps, c := p.RescaleGrad, p.WD, -p.LR, p.Epsilon, p.ClipGradient
	for i := range w {
		gr := rs * g[i]
		if c >= 0 {
			gr = clip32(gr, c)
		}
		h := hist[i] + gr*gr
		hist[i] = h
		w[i] += (gr/sqrt32(h+eps) + w[i]*wd) * nlr
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
	g1, ng1 := p.Gamma1, 1-p.Gamma1
	rs, wd, lr, eps, c, cw := p.RescaleGrad, p.WD, p.LR, p.Epsilon, p.ClipGradient, p.ClipWeights
	clipW := p.Flags&FlagClipWeights != 0 && cw >= 0
	for i := range w {
		gr := rs*g[i] + wd*w[i]
		if c >= 0 {
			gr = clip32(gr, c)
		}
		ni := ng1*(gr*gr) + g1*n[i]
		n[i] = ni
		wi := w[i] - lr*(gr/sqrt32(ni+eps))
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
	g1, ng1, g2 := p.Gamma1, 1-p.Gamma1, p.Gamma2
	rs, wd, lr, eps, c, cw := p.RescaleGrad, p.WD, p.LR, p.Epsilon, p.ClipGradient, p.ClipWeights
	clipW := p.Flags&FlagClipWeights != 0 && cw >= 0
	for i := range w {
		gr := rs*g[i] + wd*w[i]
		if c >= 0 {
			gr = clip32(gr, c)
		}
		ni := ng1*gr*gr + g1*n[i]
		gi := ng1*gr + g1*gm[i]
		di := g2*delta[i] - lr*gr/sqrt32(ni-gi*gi+eps)
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
	rho, nrho := p.Rho, 1-p.Rho
	rs, wd, eps, c := p.RescaleGrad, p.WD, p.Epsilon, p.ClipGradient
	for i := range w {
		gr := rs * g[i]
		if c >= 0 {
			gr = clip32(gr, c)
		}
		ag := rho*accG[i] + nrho*gr*gr
		d := sqrt32(accD[i]+eps) / sqrt32(ag+eps) * gr
		accG[i] = ag
		accD[i] = rho*accD[i] + nrho*d*d
		w[i] -= d + wd*w[i]
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
	lr := p.LR
	decay := 1 - lr*(p.WD+p.WDLH)
	for i := range w {
		w[i] = decay*w[i] - lr*sign32(g[i])
	}
}

// Signum is Signum, MXNet's signum_update (SignumKernel in
// src/operator/optimizer_op-inl.h). mom is state 0:
//
//	mom = momentum*mom - (1-momentum)*wd*w - (1-momentum)*clip(rescale*g)
//	w   = (1 - lr*wd_lh)*w + lr*sign(mom)
func Signum(p *Params, w, g, mom []float32) {
	g, mom = g[:len(w)], mom[:len(w)]
	mu, nmu := p.Momentum, 1-p.Momentum
	rs, wd, lr, c := p.RescaleGrad, p.WD, p.LR, p.ClipGradient
	decay := 1 - lr*p.WDLH
	for i := range w {
		gr := rs * g[i]
		if c >= 0 {
			gr = clip32(gr, c)
		}
		m := mu*mom[i] - nmu*wd*w[i] - nmu*gr
		mom[i] = m
		w[i] = decay*w[i] + lr*sign32(m)
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
	rs, wd, lr, l1, beta, c := p.RescaleGrad, p.WD, p.LR, p.Lamda1, p.Beta, p.ClipGradient
	for i := range w {
		gr := rs * g[i]
		if c >= 0 {
			gr = clip32(gr, c)
		}
		ni := n[i]
		gg := gr * gr
		zi := z[i] + (gr - (sqrt32(ni+gg)-sqrt32(ni))*w[i]/lr)
		ni += gg
		z[i], n[i] = zi, ni
		var keep float32 // gt::Map(abs(z), lamda1)
		if zi > l1 || -zi > l1 {
			keep = 1
		}
		w[i] = (sign32(zi)*l1 - zi) / ((beta+sqrt32(ni))/lr + wd) * keep
	}
}

// LAMBBlock is the number of elements whose squared norms are summed into
// one float64 partial. Fixed blocks make the norms independent of how the
// work is split (MXNet sums in float32).
const LAMBBlock = 4096

// lambU is LAMB's per-element update direction u from the updated moments.
func lambU(m, v, w, c1, c2, eps, wd float32, bias bool) float32 {
	if bias {
		return (m/c1)/(sqrt32(v/c2)+eps) + wd*w
	}
	return m/(sqrt32(v)+eps) + wd*w
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
// of w*w and u*u in float64; the caller sums the blocks in order (see
// LAMBBlock).
func LAMBPhase1(p *Params, w, g, mean, vr []float32) (ww, uu float64) {
	g, mean, vr = g[:len(w)], mean[:len(w)], vr[:len(w)]
	b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
	rs, wd, eps, c := p.RescaleGrad, p.WD, p.Epsilon, p.ClipGradient
	c1, c2, bias := p.Coef1, p.Coef2, p.Flags&FlagBiasCorrection != 0
	for i := range w {
		gr := g[i] * rs
		if c >= 0 {
			gr = clip32(gr, c)
		}
		m := b1*mean[i] + nb1*gr
		v := b2*vr[i] + nb2*gr*gr
		mean[i], vr[i] = m, v
		u := lambU(m, v, w[i], c1, c2, eps, wd, bias)
		ww += float64(w[i]) * float64(w[i])
		uu += float64(u) * float64(u)
	}
	return ww, uu
}

// LAMBPhase2 applies phase 2 to one block with lr' already computed.
func LAMBPhase2(p *Params, lr float32, w, mean, vr []float32) {
	mean, vr = mean[:len(w)], vr[:len(w)]
	wd, eps := p.WD, p.Epsilon
	c1, c2, bias := p.Coef1, p.Coef2, p.Flags&FlagBiasCorrection != 0
	for i := range w {
		w[i] -= lr * lambU(mean[i], vr[i], w[i], c1, c2, eps, wd, bias)
	}
}
