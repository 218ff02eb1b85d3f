//go:build !wasip1

package simd

import (
	"fmt"
	"math"
	"sync"
	"unsafe"

	"github.com/webkv/webkv/kvcore/compute"
)

// The kernels of kernels.wat, driven from Go: this file splits each
// operation into the kernels' whole vectors (or words) and a short tail run
// through the same kernel on a zero-padded scratch block, fills the
// parameter slots from StepParams, and orchestrates LAMB's two phases. It
// runs wherever an engine can call the module: the browser (engine_js.go,
// over the Go program's own memory) and, in this package's native tests,
// wazero (with every slice inside wazero's memory).

// fn names a kernel export.
type fn uint8

const (
	fnFill fn = iota
	fnReduce
	fnStep // followed by the 12 element-wise optimizer kernels in table order
	fnReduceStep
	fnLamb1
	fnLamb2
	fnReduceLamb1
	fnQuantize2
	fnQuantize1
	fnDequantize2
	fnDequantize1
	numFns
)

// kernel ids: the optimizer kernels in the module's table order.
const (
	kSGD = iota
	kSGDMom
	kNAG
	kAdam
	kAdamW
	kAdaGrad
	kRMSProp
	kRMSPropCentered
	kAdaDelta
	kSignSGD
	kSignum
	kFTRL
	numStepKernels
)

// fnNames are the exports of the module, by fn; step kernels by id.
var (
	fnNames   = [numFns]string{"fill", "reduce", "", "reduce_step", "lamb1", "lamb2", "reduce_lamb1", "quantize2", "quantize1", "dequantize2", "dequantize1"}
	stepNames = [numStepKernels]string{"sgd", "sgd_mom", "nag", "adam", "adamw", "adagrad", "rmsprop", "rmsprop_centered", "adadelta", "signsgd", "signum", "ftrl"}
)

// engine calls the module's exports.
type engine interface {
	// addr is the module's address of s[0] (len(s) > 0); s must live in
	// the memory the module imported.
	addr(s unsafe.Pointer) uint32
	// call runs export f (a step kernel when f == fnStep) with args, each
	// an i32 (an address, a count, or a float32's bits: see bits), exact as
	// a float64.
	call(f fn, step int, args ...float64)
	// alloc returns n zeroed words of the module's memory, kept for the
	// engine's lifetime.
	alloc(n int) []float32
}

// fusedBlock is the block of reduce_step and reduce_lamb1 (elements); their
// scratch holds one block.
const fusedBlock = 2048

// lambBlock is the reference's block of LAMB's norm partial sums.
const lambBlock = 4096

// kernels runs the operations of a Backend through an engine. Its
// workspace (parameter slots, pointer lists, tail blocks, the fused block,
// LAMB's partial sums) lives in the module's memory and is used under mu.
type kernels struct {
	e  engine
	mu sync.Mutex

	slots    []float32 // 16 parameter slots
	ptrs     []uint32  // input pointers of reduce
	tail     []float32 // padded tail vectors: 4 floats per array
	tailW    []float32 // one word's values (32) and more, for quantizer tails
	block    []float32 // fusedBlock floats
	partials []float64 // LAMB: w*w and u*u per 4096-element block
}

func newKernels(e engine) *kernels {
	k := &kernels{e: e}
	k.slots = e.alloc(16)
	k.block = e.alloc(fusedBlock)
	k.tailW = e.alloc(3 * 32)
	k.growPtrs(16)
	k.growTail(16)
	return k
}

func (k *kernels) growPtrs(n int) {
	if len(k.ptrs) >= n {
		return
	}
	f := k.e.alloc(n)
	k.ptrs = unsafe.Slice((*uint32)(unsafe.Pointer(&f[0])), n)
}

// growTail makes room for the padded tails of n arrays.
func (k *kernels) growTail(n int) {
	if len(k.tail) >= 4*n {
		return
	}
	k.tail = k.e.alloc(4 * n)
}

func (k *kernels) growPartials(nb int) {
	if len(k.partials) >= 2*nb {
		return
	}
	f := k.e.alloc(4 * nb) // 2*nb float64
	k.partials = unsafe.Slice((*float64)(unsafe.Pointer(&f[0])), 2*nb)
}

func (k *kernels) a(s []float32) float64 { return float64(k.e.addr(unsafe.Pointer(&s[0]))) }

// bits passes a float32 argument as its bits (the kernels reinterpret it):
// a float through JavaScript would lose the sign of -0.
func bits(v float32) float64 { return float64(math.Float32bits(v)) }

// vec is the i-th padded tail vector.
func (k *kernels) vec(i int) []float32 { return k.tail[4*i : 4*i+4] }

// padded copies the tail s[n4:] (1 to 3 values) into tail vector i, zeros
// after it, and returns the vector.
func (k *kernels) padded(i int, s []float32, n4 int) []float32 {
	v := k.vec(i)
	clear(v)
	copy(v, s[n4:])
	return v
}

// fill sets every element of d to v.
func (k *kernels) fill(d []float32, v float32) {
	n4 := len(d) &^ 3
	if n4 > 0 {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.e.call(fnFill, 0, k.a(d), float64(n4), bits(v))
	}
	for i := n4; i < len(d); i++ {
		d[i] = v
	}
}

// reduce sets d = scale*(srcs[0] + ... ) left to right. d may be srcs[0].
func (k *kernels) reduce(d []float32, srcs [][]float32, scale float32) {
	n := len(d)
	n4 := n &^ 3
	k.mu.Lock()
	defer k.mu.Unlock()
	k.growPtrs(len(srcs))
	if n4 > 0 {
		for i, s := range srcs {
			k.ptrs[i] = uint32(k.a(s))
		}
		k.e.call(fnReduce, 0, k.a(d), k.a(k.tailPtrs()), float64(len(srcs)), float64(n4), bits(scale))
	}
	if n4 < n {
		out := k.reduceTail(srcs, n4, scale)
		copy(d[n4:], out)
	}
}

// tailPtrs is ptrs as floats, for its address.
func (k *kernels) tailPtrs() []float32 {
	return unsafe.Slice((*float32)(unsafe.Pointer(&k.ptrs[0])), len(k.ptrs))
}

// reduceTail reduces the tails srcs[j][n4:] into a padded vector (tail
// vector len(srcs)) and returns it; tail vectors 0..len(srcs)-1 hold the
// padded inputs.
func (k *kernels) reduceTail(srcs [][]float32, n4 int, scale float32) []float32 {
	// Room for the callers' padded weight and states after the output.
	k.growTail(len(srcs) + 5)
	for i, s := range srcs {
		k.ptrs[i] = uint32(k.a(k.padded(i, s, n4)))
	}
	out := k.vec(len(srcs))
	k.e.call(fnReduce, 0, k.a(out), k.a(k.tailPtrs()), float64(len(srcs)), 4, bits(scale))
	return out
}

// stepKernel returns the kernel of kind with nstates states and fills the
// parameter slots from p exactly as the reference kernel derives its
// constants (the same float32 expressions, so the same bits).
func stepKernel(kind compute.OptKind, p *compute.StepParams, nstates int, s []float32) (int, error) {
	clear(s)
	inf := float32(math.Inf(1))
	// clip is c where the reference clips (c >= 0), else +inf.
	clip := func(c float32) float32 {
		if c >= 0 {
			return c
		}
		return inf
	}
	switch kind {
	case compute.OptSGD, compute.OptNAG:
		if nstates == 0 { // sgdStep, for both
			s[0] = 1 - p.LR*p.WD
			if c := p.ClipGradient; c >= 0 {
				s[1], s[2], s[3] = p.LR, p.RescaleGrad, c
			} else {
				s[1], s[2], s[3] = p.LR*p.RescaleGrad, 1, inf
			}
			return kSGD, nil
		}
		if kind == compute.OptNAG {
			s[0], s[1], s[2], s[3], s[4], s[5] = p.Momentum, p.Momentum+1, p.LR, p.WD, p.RescaleGrad, clip(p.ClipGradient)
			return kNAG, nil
		}
		s[0], s[1] = p.Momentum, p.LR*p.WD
		if c := p.ClipGradient; c >= 0 {
			s[2], s[3], s[4] = p.LR, p.RescaleGrad, c
		} else {
			s[2], s[3], s[4] = p.LR*p.RescaleGrad, 1, inf
		}
		return kSGDMom, nil
	case compute.OptAdam, compute.OptAdamW:
		s[0], s[1], s[2], s[3] = p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
		s[4], s[5], s[6], s[7], s[8] = p.RescaleGrad, p.WD, p.Coef1, p.Epsilon, clip(p.ClipGradient)
		if kind == compute.OptAdam {
			return kAdam, nil
		}
		return kAdamW, nil
	case compute.OptAdaGrad:
		s[0], s[1], s[2], s[3], s[4] = p.RescaleGrad, p.WD, -p.LR, p.Epsilon, clip(p.ClipGradient)
		return kAdaGrad, nil
	case compute.OptRMSProp:
		cw := inf
		if p.Flags&compute.FlagClipWeights != 0 && p.ClipWeights >= 0 {
			cw = p.ClipWeights
		}
		if nstates < 3 {
			s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7] = p.Gamma1, 1-p.Gamma1, p.RescaleGrad, p.WD, p.LR, p.Epsilon, clip(p.ClipGradient), cw
			return kRMSProp, nil
		}
		s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8] = p.Gamma1, 1-p.Gamma1, p.Gamma2, p.RescaleGrad, p.WD, p.LR, p.Epsilon, clip(p.ClipGradient), cw
		return kRMSPropCentered, nil
	case compute.OptAdaDelta:
		s[0], s[1], s[2], s[3], s[4], s[5] = p.Rho, 1-p.Rho, p.RescaleGrad, p.WD, p.Epsilon, clip(p.ClipGradient)
		return kAdaDelta, nil
	case compute.OptSignum:
		if nstates == 0 {
			s[0], s[1] = 1-p.LR*(p.WD+p.WDLH), p.LR
			return kSignSGD, nil
		}
		nmu := 1 - p.Momentum
		s[0], s[1], s[2], s[3], s[4], s[5], s[6] = p.Momentum, nmu, nmu*p.WD, p.RescaleGrad, p.LR, 1-p.LR*p.WDLH, clip(p.ClipGradient)
		return kSignum, nil
	case compute.OptFTRL:
		s[0], s[1], s[2], s[3], s[4], s[5] = p.RescaleGrad, p.WD, p.LR, p.Lamda1, p.Beta, clip(p.ClipGradient)
		return kFTRL, nil
	}
	return 0, fmt.Errorf("no kernel for optimizer %v", kind)
}

// lambCoefs are LAMB's bias corrections as the kernels use them: 1 and 1
// without bias correction (x/1 == x).
func lambCoefs(p *compute.StepParams) (c1, c2 float32) {
	if p.Flags&compute.FlagBiasCorrection != 0 {
		return p.Coef1, p.Coef2
	}
	return 1, 1
}

// step applies one element-wise optimizer update (not LAMB).
func (k *kernels) step(kind compute.OptKind, p *compute.StepParams, w, g []float32, states [][]float32) error {
	if kind == compute.OptLAMB {
		return k.lamb(p, w, g, nil, 0, states)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	id, err := stepKernel(kind, p, len(states), k.slots)
	if err != nil {
		return err
	}
	n := len(w)
	n4 := n &^ 3
	if n4 > 0 {
		k.e.call(fnStep, id, k.stepArgs(w, g, states, n4)...)
	}
	if n4 < n {
		k.growTail(2 + len(states))
		tw := k.padded(0, w, n4)
		tg := k.padded(1, g, n4)
		ts := make([][]float32, len(states))
		for i, s := range states {
			ts[i] = k.padded(2+i, s, n4)
		}
		k.e.call(fnStep, id, k.stepArgs(tw, tg, ts, 4)...)
		copy(w[n4:], tw)
		for i, s := range states {
			copy(s[n4:], ts[i])
		}
	}
	return nil
}

// stepArgs are the arguments of a step kernel; unused state pointers are
// the weight's (never touched).
func (k *kernels) stepArgs(w, g []float32, states [][]float32, n int) []float64 {
	args := []float64{k.a(k.slots), k.a(w), k.a(g), 0, 0, 0, float64(n)}
	for i := range 3 {
		if i < len(states) {
			args[3+i] = k.a(states[i])
		} else {
			args[3+i] = args[1]
		}
	}
	return args
}

// reduceStep is reduce into a temporary then step, fused in blocks.
func (k *kernels) reduceStep(kind compute.OptKind, p *compute.StepParams, w []float32, srcs [][]float32, scale float32, states [][]float32) error {
	if kind == compute.OptLAMB {
		return k.lamb(p, w, nil, srcs, scale, states)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	id, err := stepKernel(kind, p, len(states), k.slots)
	if err != nil {
		return err
	}
	n := len(w)
	n4 := n &^ 3
	k.growPtrs(len(srcs))
	if n4 > 0 {
		for i, s := range srcs {
			k.ptrs[i] = uint32(k.a(s))
		}
		sa := k.stepArgs(w, w, states, n4)
		k.e.call(fnReduceStep, 0, float64(id), sa[0], sa[1], k.a(k.tailPtrs()), float64(len(srcs)), bits(scale),
			sa[3], sa[4], sa[5], float64(n4), k.a(k.block))
	}
	if n4 < n {
		// The tail: reduce the padded inputs, then step on padded arrays.
		g := k.reduceTail(srcs, n4, scale)
		base := len(srcs) + 1
		k.growTail(base + 1 + len(states))
		tw := k.padded(base, w, n4)
		ts := make([][]float32, len(states))
		for i, s := range states {
			ts[i] = k.padded(base+1+i, s, n4)
		}
		k.e.call(fnStep, id, k.stepArgs(tw, g, ts, 4)...)
		copy(w[n4:], tw)
		for i, s := range states {
			copy(s[n4:], ts[i])
		}
	}
	return nil
}

// lamb is the reference's lambStep: phase 1 (grad g, or the reduce of srcs
// times scale when g is nil) with the norms' partial sums per 4096-element
// block, the trust ratio from their ordered total, then phase 2.
func (k *kernels) lamb(p *compute.StepParams, w, g []float32, srcs [][]float32, scale float32, states [][]float32) error {
	if len(states) != 2 {
		return fmt.Errorf("lamb step needs 2 states (mean, var), got %d", len(states))
	}
	mean, vr := states[0], states[1]
	k.mu.Lock()
	defer k.mu.Unlock()
	n := len(w)
	n4 := n &^ 3
	nb := (n + lambBlock - 1) / lambBlock
	k.growPartials(nb)
	part := k.partials[:2*nb]
	clear(part)
	s := k.slots
	clear(s)
	c1, c2 := lambCoefs(p)
	inf := float32(math.Inf(1))
	clip := p.ClipGradient
	if !(clip >= 0) {
		clip = inf
	}
	s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9] = p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2, p.RescaleGrad, p.WD, p.Epsilon, clip, c1, c2
	if n4 > 0 {
		if g != nil {
			k.e.call(fnLamb1, 0, k.a(s), k.a(w), k.a(g), k.a(mean), k.a(vr), float64(n4), k.a(f64s(part)), 0, 4)
		} else {
			k.growPtrs(len(srcs))
			for i, src := range srcs {
				k.ptrs[i] = uint32(k.a(src))
			}
			k.e.call(fnReduceLamb1, 0, k.a(s), k.a(w), k.a(k.tailPtrs()), float64(len(srcs)), bits(scale),
				k.a(mean), k.a(vr), float64(n4), k.a(f64s(part)), k.a(k.block))
		}
	}
	var tw, tm, tv []float32
	if n4 < n {
		var tg []float32
		base := 0
		if g != nil {
			k.growTail(4)
			tg = k.padded(0, g, n4)
			base = 1
		} else {
			k.growPtrs(len(srcs))
			tg = k.reduceTail(srcs, n4, scale)
			base = len(srcs) + 1
		}
		k.growTail(base + 3)
		tw, tm, tv = k.padded(base, w, n4), k.padded(base+1, mean, n4), k.padded(base+2, vr, n4)
		k.e.call(fnLamb1, 0, k.a(s), k.a(tw), k.a(tg), k.a(tm), k.a(tv), 4, k.a(f64s(part)), float64(n4), float64(n-n4))
	}
	var ww, uu float64
	for b := range nb {
		ww += part[2*b]
		uu += part[2*b+1]
	}
	r1, r2 := float32(math.Sqrt(ww)), float32(math.Sqrt(uu))
	if p.Flags&compute.FlagBounds != 0 {
		if p.LowerBound >= 0 {
			r1 = max(r1, p.LowerBound)
		}
		if p.UpperBound >= 0 {
			r1 = min(r1, p.UpperBound)
		}
	}
	lr := p.LR
	if r1 != 0 && r2 != 0 {
		lr = lr * r1 / r2
	}
	clear(s)
	s[0], s[1], s[2], s[3], s[4] = lr, p.WD, p.Epsilon, c1, c2
	if n4 > 0 {
		k.e.call(fnLamb2, 0, k.a(s), k.a(w), k.a(mean), k.a(vr), float64(n4))
	}
	if n4 < n {
		k.e.call(fnLamb2, 0, k.a(s), k.a(tw), k.a(tm), k.a(tv), 4)
		copy(w[n4:], tw)
		copy(mean[n4:], tm)
		copy(vr[n4:], tv)
	}
	return nil
}

func f64s(p []float64) []float32 {
	return unsafe.Slice((*float32)(unsafe.Pointer(&p[0])), 2*len(p))
}

// tailMask2 and tailMask1 keep the codes of the first k values of a word,
// as the reference's masks of the same name.
var tailMask2, tailMask1 = func() (m2 [16]uint32, m1 [32]uint32) {
	for k := 1; k < 16; k++ {
		m2[k] = m2[k-1] | 3<<uint(8*((k-1)/4)+6-2*((k-1)%4))
	}
	for k := 1; k < 32; k++ {
		m1[k] = m1[k-1] | 1<<uint(8*((k-1)/8)+7-(k-1)%8)
	}
	return
}()

// quantize adds g into r and packs the codes of r into out (Quantize2Bit,
// Quantize1Bit).
func (k *kernels) quantize(c compute.Compression, out, g, r []float32) {
	per := 16
	if c.Kind == compute.Compress1Bit {
		per = 32
	}
	n := len(g)
	full := n / per
	k.mu.Lock()
	defer k.mu.Unlock()
	call := func(out, g, r []float32, words int) {
		if c.Kind == compute.Compress2Bit {
			k.e.call(fnQuantize2, 0, k.a(out), k.a(g), k.a(r), float64(words), bits(c.Threshold), bits(-1*c.Threshold))
		} else {
			k.e.call(fnQuantize1, 0, k.a(out), k.a(g), k.a(r), float64(words), bits(c.Threshold))
		}
	}
	if full > 0 {
		call(out, g, r, full)
	}
	if tail := n - full*per; tail > 0 {
		// As the reference: zero gradient and residual beyond n, the codes
		// of the padding masked off.
		tg, tr, to := k.tailW[:per], k.tailW[32:32+per], k.tailW[64:65]
		clear(tg)
		clear(tr)
		copy(tg, g[full*per:])
		copy(tr, r[full*per:])
		call(to, tg, tr, 1)
		copy(r[full*per:], tr[:tail])
		word := math.Float32bits(to[0])
		if c.Kind == compute.Compress2Bit {
			word &= tailMask2[tail]
		} else {
			word &= tailMask1[tail]
		}
		out[full] = math.Float32frombits(word)
	}
}

// dequantize unpacks in into out (Dequantize2Bit, Dequantize1Bit).
func (k *kernels) dequantize(c compute.Compression, out, in []float32) {
	per := 16
	if c.Kind == compute.Compress1Bit {
		per = 32
	}
	n := len(out)
	full := n / per
	k.mu.Lock()
	defer k.mu.Unlock()
	call := func(out, in []float32, words int) {
		if c.Kind == compute.Compress2Bit {
			k.e.call(fnDequantize2, 0, k.a(out), k.a(in), float64(words), bits(c.Threshold), bits(-1*c.Threshold))
		} else {
			k.e.call(fnDequantize1, 0, k.a(out), k.a(in), float64(words))
		}
	}
	if full > 0 {
		call(out, in, full)
	}
	if tail := n - full*per; tail > 0 {
		tw, to := k.tailW[64:65], k.tailW[:32]
		tw[0] = in[full]
		call(to, tw, 1)
		copy(out[full*per:], to[:tail])
	}
}
