package compute

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/webkv/webkv/kvcore/internal/kernels"
)

// CPUBuffer is the CPU backend's buffer: a float32 slice in Go memory. Every
// CPU value accepts the buffers of every other (they are plain memory).
type CPUBuffer struct{ data []float32 }

// Len returns the number of words.
func (b *CPUBuffer) Len() int { return len(b.data) }

// Float32s returns the backing slice (no copy).
func (b *CPUBuffer) Float32s() []float32 { return b.data }

// CPU is the reference Backend: the kernels' documented reference loops
// (with AVX2 loops of the same bits for the reduce, the optimizers and the
// quantizers on amd64, unrolled ones on wasm), split across GOMAXPROCS
// goroutines for large arrays. It is a ReduceStepper (see ReduceStep). The goroutines are started for
// each call and joined before it returns, so a CPU owns none between calls
// and needs no Close.
//
// Freed buffers are kept for reuse, by size, up to a limit (see NewCPU),
// because first touch of fresh memory costs far more than the arithmetic
// (about 200 ms per 64 MB on the machines webkv is tested on). The zero CPU
// keeps none: Free leaves buffers to the garbage collector.
type CPU struct {
	mu        sync.Mutex
	free      map[int][]*CPUBuffer
	pooled    int // words held in free
	maxPooled int // words
	accel     Accelerator

	// Scratch of the parallel calls, kept by the CPU (not in a sync.Pool,
	// which the garbage collector empties): a job binds its helper
	// goroutines' functions once, so a call allocates nothing.
	jobMu sync.Mutex
	jobs  []*job
	lambs []*lambJob
}

// jobCache bounds the scratch jobs a CPU keeps (one per concurrent call).
const jobCache = 16

// CPUOptions configure NewCPU.
type CPUOptions struct {
	// PoolBytes bounds the memory of freed buffers kept for reuse
	// (default 1 GiB; < 0 keeps none).
	PoolBytes int64
	// Accel runs the element loops of arrays from its MinLen on, with the
	// same results (see Accelerator); nil runs them all in Go.
	Accel Accelerator
}

// NewCPU returns a CPU backend that pools freed buffers (nil opts: the
// defaults of CPUOptions). A store makes its own, so what it pools goes
// away with it.
func NewCPU(opts *CPUOptions) *CPU {
	limit := int64(1 << 30)
	if opts != nil && opts.PoolBytes != 0 {
		limit = max(opts.PoolBytes, 0)
	}
	c := &CPU{maxPooled: int(limit / 4)}
	if opts != nil {
		c.accel = opts.Accel
	}
	return c
}

// Name returns "cpu", or "cpu+" and the accelerator's name.
func (c *CPU) Name() string {
	if c.accel != nil {
		return "cpu+" + c.accel.Name()
	}
	return "cpu"
}

// Alloc returns a zeroed buffer of n words, reusing a freed one of that
// size when the pool has one.
func (c *CPU) Alloc(n int) (Buffer, error) {
	if n < 1 {
		return nil, fmt.Errorf("compute: cpu alloc of %d words", n)
	}
	c.mu.Lock()
	if l := c.free[n]; len(l) > 0 {
		b := l[len(l)-1]
		l[len(l)-1] = nil
		c.free[n] = l[:len(l)-1]
		c.pooled -= n
		c.mu.Unlock()
		j := c.getJob()
		j.kind, j.dst, j.scale = jobFill, b.data, 0
		j.runParallel(n)
		return b, nil
	}
	c.mu.Unlock()
	return newCPUBuffer(n), nil
}

// newCPUBuffer returns a zeroed buffer of n words. A small one is a single
// allocation, its words right after its header, so that reaching its
// values costs one cache miss, not two (a parameter server holds many
// small keys, each with a value and an arrival buffer, and a round walks
// them all: see the psm package).
func newCPUBuffer(n int) *CPUBuffer {
	switch {
	case n <= 4:
		return inlineBuffer(n, func(w *[4]float32) []float32 { return w[:] })
	case n <= 8:
		return inlineBuffer(n, func(w *[8]float32) []float32 { return w[:] })
	case n <= 16:
		return inlineBuffer(n, func(w *[16]float32) []float32 { return w[:] })
	case n <= 32:
		return inlineBuffer(n, func(w *[32]float32) []float32 { return w[:] })
	}
	return &CPUBuffer{data: make([]float32, n)}
}

// inlineBuffer allocates a buffer and its words (an array A, which words
// slices) together and returns it with n of them.
func inlineBuffer[A any](n int, words func(*A) []float32) *CPUBuffer {
	p := new(struct {
		b CPUBuffer
		w A
	})
	p.b.data = words(&p.w)[:n:n]
	return &p.b
}

// Free keeps b for reuse while the pool has room.
func (c *CPU) Free(b Buffer) {
	cb, ok := b.(*CPUBuffer)
	if !ok || cb == nil {
		return
	}
	n := len(cb.data)
	c.mu.Lock()
	if c.pooled+n <= c.maxPooled {
		if c.free == nil {
			c.free = map[int][]*CPUBuffer{}
		}
		c.free[n] = append(c.free[n], cb)
		c.pooled += n
	}
	c.mu.Unlock()
}

func cpuData(b Buffer) ([]float32, error) {
	cb, ok := b.(*CPUBuffer)
	if !ok || cb == nil {
		return nil, fmt.Errorf("compute: buffer %T does not belong to the cpu backend", b)
	}
	return cb.data, nil
}

// writeRange is dst's words [off, off+n) as a slice, checked.
func writeRange(dst Buffer, off, n int) ([]float32, error) {
	d, err := cpuData(dst)
	if err != nil {
		return nil, err
	}
	if off < 0 || off+n > len(d) {
		return nil, fmt.Errorf("compute: cpu write of %d words at %d into a buffer of %d", n, off, len(d))
	}
	return d[off : off+n], nil
}

// cpuPair is cpuData of dst and src.
func cpuPair(dst, src Buffer) (d, s []float32, err error) {
	if d, err = cpuData(dst); err != nil {
		return nil, nil, err
	}
	if s, err = cpuData(src); err != nil {
		return nil, nil, err
	}
	return d, s, nil
}

// Write copies src into dst at word off.
func (c *CPU) Write(dst Buffer, off int, src []float32) error {
	d, err := writeRange(dst, off, len(src))
	if err != nil {
		return err
	}
	c.parallelCopy(d, src)
	return nil
}

// WriteFinite is Write that also returns the index in src of its first NaN
// or ±Inf, or -1, found in the same pass (FiniteWriter).
func (c *CPU) WriteFinite(dst Buffer, off int, src []float32) (int, error) {
	d, err := writeRange(dst, off, len(src))
	if err != nil {
		return -1, err
	}
	if len(src) < parallelMin || runtime.GOMAXPROCS(0) == 1 {
		return kernels.CopyFinite(d, src), nil
	}
	var bad atomic.Int64
	bad.Store(math.MaxInt64)
	j := c.getJob()
	j.kind, j.dst, j.src, j.bad = jobCopyFinite, d, src, &bad
	j.runParallel(len(src))
	if b := bad.Load(); b != math.MaxInt64 {
		return int(b), nil
	}
	return -1, nil
}

// Read copies words of src from off into dst.
func (c *CPU) Read(src Buffer, off int, dst []float32) error {
	s, err := cpuData(src)
	if err != nil {
		return err
	}
	if off < 0 || off+len(dst) > len(s) {
		return fmt.Errorf("compute: cpu read of %d words at %d from a buffer of %d", len(dst), off, len(s))
	}
	c.parallelCopy(dst, s[off:off+len(dst)])
	return nil
}

// Copy copies src into dst.
func (c *CPU) Copy(dst, src Buffer) error {
	d, s, err := cpuPair(dst, src)
	if err != nil {
		return err
	}
	if len(d) != len(s) {
		return fmt.Errorf("compute: cpu copy of %d words into %d", len(s), len(d))
	}
	c.parallelCopy(d, s)
	return nil
}

// Fill sets every word of dst to v.
func (c *CPU) Fill(dst Buffer, v float32) error {
	d, err := cpuData(dst)
	if err != nil {
		return err
	}
	if c.accelerates(len(d)) {
		return c.accel.Fill(d, v)
	}
	j := c.getJob()
	j.kind, j.dst, j.scale = jobFill, d, v
	j.runParallel(len(d))
	return nil
}

// Reduce sums srcs left to right into dst, times scale (see
// kernels.ReduceRange for the loop).
func (c *CPU) Reduce(dst Buffer, srcs []Buffer, scale float32) error {
	if len(srcs) == 0 {
		return fmt.Errorf("compute: cpu reduce of no inputs")
	}
	d, err := cpuData(dst)
	if err != nil {
		return err
	}
	if len(d) < parallelMin && len(srcs) <= reduceSmallSrcs && !c.accelerates(len(d)) {
		// Too small to split: the inputs' slices on the stack, not in a
		// pooled job (no pool and its two lock operations per call;
		// issue 12: a round of a 16-float key).
		var buf [reduceSmallSrcs][]float32
		in, err := reduceInputs(buf[:0], d, srcs)
		if err != nil {
			return err
		}
		kernels.ReduceRange(d, in, scale, 0, len(d))
		return nil
	}
	j := c.getJob()
	if j.srcs, err = reduceInputs(j.srcs, d, srcs); err != nil {
		putJob(j)
		return err
	}
	if c.accelerates(len(d)) {
		err := c.accel.Reduce(d, j.srcs, scale)
		putJob(j)
		return err
	}
	j.kind, j.dst, j.scale = jobReduce, d, scale
	j.runParallel(len(d))
	return nil
}

// reduceSmallSrcs is the most inputs that Reduce of a small array keeps
// on the stack.
const reduceSmallSrcs = 8

// reduceInputs appends the words of Reduce's inputs srcs to in, checked
// against its output d.
func reduceInputs(in [][]float32, d []float32, srcs []Buffer) ([][]float32, error) {
	for i, b := range srcs {
		s, err := cpuData(b)
		if err != nil {
			return in, err
		}
		if len(s) != len(d) {
			return in, fmt.Errorf("compute: cpu reduce input %d has %d words, output %d", i, len(s), len(d))
		}
		if i > 0 && len(s) > 0 && &s[0] == &d[0] {
			return in, fmt.Errorf("compute: cpu reduce output may alias only input 0, not input %d", i)
		}
		in = append(in, s)
	}
	return in, nil
}

// Step applies one update of kind (see kernels/optimizers.go for each
// kind's reference loop).
func (c *CPU) Step(kind OptKind, p *StepParams, weight, grad Buffer, states []Buffer) error {
	w, err := cpuData(weight)
	if err != nil {
		return err
	}
	g, err := cpuData(grad)
	if err != nil {
		return err
	}
	if len(g) != len(w) {
		return fmt.Errorf("compute: cpu %v step: grad has %d values, weight %d", kind, len(g), len(w))
	}
	j := c.getJob()
	if err := j.stepStates("step", kind, p, len(w), states); err != nil {
		putJob(j)
		return err
	}
	if c.accelerates(len(w)) {
		err := c.accel.Step(kind, p, w, g, j.srcs)
		putJob(j)
		return err
	}
	if kind == OptLAMB {
		// LAMB needs two norms over the whole array between its phases.
		defer putJob(j)
		return c.lambStep(p, w, g, j.srcs)
	}
	j.kind, j.dst, j.grad, j.params, j.opt = jobStep, w, g, p, kind
	j.runParallel(len(w))
	return nil
}

// stepStates checks a step's optimizer kind and number of states (op names
// the call in errors: "step", "reduce-step") and appends the states' data,
// n values each, to j.srcs.
func (j *job) stepStates(op string, kind OptKind, p *StepParams, n int, states []Buffer) error {
	if kind < OptSGD || kind > OptLAMB {
		return fmt.Errorf("compute: cpu %s: unknown optimizer kind %v", op, kind)
	}
	if want := kind.NumStates(p); len(states) != want {
		return fmt.Errorf("compute: cpu %v %s needs %d states, got %d", kind, op, want, len(states))
	}
	var err error
	j.srcs, err = appendData(j.srcs, states, n, kind, "state")
	return err
}

// appendData appends the data of bufs, n values each, to dst; what names
// them in errors ("state", "reduce-step input").
func appendData(dst [][]float32, bufs []Buffer, n int, kind OptKind, what string) ([][]float32, error) {
	for i, b := range bufs {
		s, err := cpuData(b)
		if err != nil {
			return dst, err
		}
		if len(s) != n {
			return dst, fmt.Errorf("compute: cpu %v %s %d has %d values, weight %d", kind, what, i, len(s), n)
		}
		dst = append(dst, s)
	}
	return dst, nil
}

// Quantize adds grad into residual and packs the codes into out (MXNet's
// quantize_2bit / quantize_1bit).
func (c *CPU) Quantize(cm Compression, grad, residual, out Buffer) error {
	g, err := cpuData(grad)
	if err != nil {
		return err
	}
	r, err := cpuData(residual)
	if err != nil {
		return err
	}
	o, err := cpuData(out)
	if err != nil {
		return err
	}
	if len(r) != len(g) || len(o) != cm.Kind.PackedLen(len(g)) {
		return fmt.Errorf("compute: cpu quantize %v of %d values: residual %d, out %d words (want %d)",
			cm.Kind, len(g), len(r), len(o), cm.Kind.PackedLen(len(g)))
	}
	if err := cm.Validate(); err != nil {
		return err // it names the compression and what is wrong
	}
	if cm.Kind == CompressNone {
		return fmt.Errorf("compute: cpu quantize: no compression kind given")
	}
	if c.accelerates(len(g)) {
		return c.accel.Quantize(cm, o, g, r)
	}
	j := c.getJob()
	j.kind, j.dst, j.grad, j.src, j.comp = jobQuantize, o, g, r, cm
	j.runParallel(len(g))
	return nil
}

// Dequantize unpacks in into out.
func (c *CPU) Dequantize(cm Compression, in, out Buffer) error {
	o, i, err := cpuPair(out, in)
	if err != nil {
		return err
	}
	if len(i) != cm.Kind.PackedLen(len(o)) {
		return fmt.Errorf("compute: cpu dequantize %v into %d values: input has %d words (want %d)",
			cm.Kind, len(o), len(i), cm.Kind.PackedLen(len(o)))
	}
	if err := cm.Validate(); err != nil {
		return err // it names the compression and what is wrong
	}
	if cm.Kind == CompressNone {
		return fmt.Errorf("compute: cpu dequantize: no compression kind given")
	}
	if c.accelerates(len(o)) {
		return c.accel.Dequantize(cm, o, i)
	}
	j := c.getJob()
	j.kind, j.dst, j.src, j.comp = jobDequantize, o, i, cm
	j.runParallel(len(o))
	return nil
}

// Sync does nothing: the CPU runs every call before it returns.
func (c *CPU) Sync() error { return nil }

// --- parallel element-wise jobs, fork-join, without allocation per call ---

// parallelMin is the length below which one goroutine does the whole job:
// splitting costs more than it saves on small arrays (starting and joining
// a goroutine costs about 1 µs).
const parallelMin = 1 << 16

type jobKind uint8

const (
	jobFill jobKind = iota
	jobCopy
	jobReduce
	jobStep
	jobQuantize   // dst: packed words, grad: values, src: residual
	jobDequantize // dst: values, src: packed words
	jobReduceStep // dst: weight, srcs: states, ins: inputs (see ReduceStep)
	jobCopyFinite // dst, src; bad: the least index of a NaN or ±Inf found
)

// job is one element-wise operation split into chunks. Jobs are pooled
// with their chunk functions bound once, so that starting the helper
// goroutines of a call allocates nothing.
type job struct {
	c      *CPU // whose cache it returns to
	kind   jobKind
	dst    []float32
	src    []float32
	grad   []float32
	srcs   [][]float32
	scale  float32
	params *StepParams
	opt    OptKind
	comp   Compression
	ins    [][]float32   // jobReduceStep's inputs
	bad    *atomic.Int64 // jobCopyFinite's result

	wg     sync.WaitGroup
	lo, hi []int    // chunk i is [lo[i], hi[i]); chunk 0 runs on the caller
	fns    []func() // fns[i] runs chunk i+1 and calls wg.Done

	per     int         // chunk length: chunk i starts at i*per
	scratch [][]float32 // jobReduceStep: one summed block per chunk
}

func (c *CPU) getJob() *job {
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	if n := len(c.jobs); n > 0 {
		j := c.jobs[n-1]
		c.jobs[n-1] = nil
		c.jobs = c.jobs[:n-1]
		return j
	}
	return &job{c: c}
}

func putJob(j *job) {
	for i := range j.srcs {
		j.srcs[i] = nil
	}
	j.srcs = j.srcs[:0]
	for i := range j.ins {
		j.ins[i] = nil
	}
	j.ins = j.ins[:0]
	j.dst, j.src, j.grad, j.params, j.bad = nil, nil, nil, nil, nil
	c := j.c
	c.jobMu.Lock()
	if len(c.jobs) < jobCache {
		c.jobs = append(c.jobs, j)
	}
	c.jobMu.Unlock()
}

// chunks makes sure j has p chunk slots and their bound functions.
func (j *job) chunks(p int) {
	for len(j.fns) < p-1 {
		i := len(j.fns) + 1
		j.fns = append(j.fns, func() {
			j.run(j.lo[i], j.hi[i])
			j.wg.Done()
		})
	}
	for len(j.lo) < p {
		j.lo, j.hi = append(j.lo, 0), append(j.hi, 0)
	}
}

// runParallel runs j over [0, n) split in up to GOMAXPROCS parts aligned to
// 32 elements (one packed 1bit word), the first on the calling goroutine,
// waits for all, then returns j to the pool.
func (j *job) runParallel(n int) {
	p := 1 // a small job does not ask: GOMAXPROCS takes the scheduler's lock
	if n >= parallelMin {
		p = runtime.GOMAXPROCS(0)
	}
	if p == 1 {
		j.per = max(n, 1)
		j.run(0, n)
		putJob(j)
		return
	}
	per := ((n+p-1)/p + 31) &^ 31 // ceil(n/p), rounded up to 32
	p = (n + per - 1) / per
	j.per = per
	j.chunks(p)
	for i := range p {
		j.lo[i], j.hi[i] = i*per, min((i+1)*per, n)
	}
	j.wg.Add(p - 1)
	for _, f := range j.fns[:p-1] {
		go f()
	}
	j.run(j.lo[0], j.hi[0])
	j.wg.Wait()
	putJob(j)
}

func (j *job) run(lo, hi int) {
	if lo >= hi {
		return
	}
	switch j.kind {
	case jobFill:
		fill(j.dst[lo:hi], j.scale)
	case jobCopy:
		copy(j.dst[lo:hi], j.src[lo:hi])
	case jobCopyFinite:
		if i := kernels.CopyFinite(j.dst[lo:hi], j.src[lo:hi]); i >= 0 {
			for at := int64(lo + i); ; {
				cur := j.bad.Load()
				if at >= cur || j.bad.CompareAndSwap(cur, at) {
					break
				}
			}
		}
	case jobReduce:
		kernels.ReduceRange(j.dst, j.srcs, j.scale, lo, hi)
	case jobStep:
		stepRange(j.opt, j.params, j.dst, j.grad, j.srcs, lo, hi)
	case jobQuantize:
		quantizeRange(j.comp, j.dst, j.grad, j.src, lo, hi)
	case jobDequantize:
		dequantizeRange(j.comp, j.dst, j.src, lo, hi)
	case jobReduceStep:
		j.reduceStepRange(lo, hi)
	}
}

func fill(d []float32, v float32) {
	if math.Float32bits(v) == 0 {
		clear(d) // memclr: vector stores natively, one memory.fill on wasm
		return
	}
	for i := range d {
		d[i] = v
	}
}

func (c *CPU) parallelCopy(d, s []float32) {
	if len(d) < parallelMin {
		copy(d, s)
		return
	}
	j := c.getJob()
	j.kind, j.dst, j.src = jobCopy, d, s
	j.runParallel(len(d))
}

// kparams is p as the kernels' identical Params type (a free conversion).
func kparams(p *StepParams) *kernels.Params { return (*kernels.Params)(p) }

// stepRange applies one update of an element-wise optimizer kind to elements
// [lo, hi) of the full slices w, g and states. The CPU backend calls it in
// parallel on disjoint ranges; the result of an element depends only on that
// element, so any split gives the same bits as one call over everything.
// LAMB is not element-wise (see lambStep) and unknown kinds do nothing:
// Step checks kinds and state counts first.
func stepRange(k OptKind, p *StepParams, w, g []float32, states [][]float32, lo, hi int) {
	if lo >= hi {
		return
	}
	var s0, s1, s2 []float32
	if len(states) > 0 {
		s0 = states[0][lo:hi:hi]
	}
	if len(states) > 1 {
		s1 = states[1][lo:hi:hi]
	}
	if len(states) > 2 {
		s2 = states[2][lo:hi:hi]
	}
	stepBlock(k, kparams(p), w[lo:hi], g[lo:hi:hi], s0, s1, s2)
}

// stepBlock applies kind's kernel to w, g and the states s0..s2 (nil where
// kind has fewer), all of the same length.
func stepBlock(k OptKind, kp *kernels.Params, w, g, s0, s1, s2 []float32) {
	switch k {
	case OptSGD:
		if s0 == nil {
			kernels.SGD(kp, w, g)
		} else {
			kernels.SGDMom(kp, w, g, s0)
		}
	case OptNAG:
		if s0 == nil {
			kernels.SGD(kp, w, g)
		} else {
			kernels.NAG(kp, w, g, s0)
		}
	case OptAdam:
		kernels.Adam(kp, w, g, s0, s1)
	case OptAdamW:
		kernels.AdamW(kp, w, g, s0, s1)
	case OptAdaGrad:
		kernels.AdaGrad(kp, w, g, s0)
	case OptRMSProp:
		if s2 == nil {
			kernels.RMSProp(kp, w, g, s0)
		} else {
			kernels.RMSPropCentered(kp, w, g, s0, s1, s2)
		}
	case OptAdaDelta:
		kernels.AdaDelta(kp, w, g, s0, s1)
	case OptSignum:
		if s0 == nil {
			kernels.SignSGD(kp, w, g)
		} else {
			kernels.Signum(kp, w, g, s0)
		}
	case OptFTRL:
		kernels.FTRL(kp, w, g, s0, s1)
	}
}

// quantizeRange quantizes values [lo, hi) of g with residual r into their
// words of out, for the parallel chunks: lo must be a multiple of 32 (a
// word boundary for both kinds) and hi a multiple of 32 or len(g). Chunks
// that cover [0, len(g)) give the same words as one whole call.
func quantizeRange(c Compression, out, g, r []float32, lo, hi int) {
	if lo >= hi {
		return
	}
	per := 16
	if c.Kind == Compress1Bit {
		per = 32
	}
	o := out[lo/per : (hi+per-1)/per]
	switch c.Kind {
	case Compress2Bit:
		kernels.Quantize2Bit(o, g[lo:hi], r[lo:hi], c.Threshold)
	case Compress1Bit:
		kernels.Quantize1Bit(o, g[lo:hi], r[lo:hi], c.Threshold)
	}
}

// dequantizeRange unpacks values [lo, hi) of out from in, with lo and hi as
// for quantizeRange.
func dequantizeRange(c Compression, out, in []float32, lo, hi int) {
	if lo >= hi {
		return
	}
	per := 16
	if c.Kind == Compress1Bit {
		per = 32
	}
	i := in[lo/per : (hi+per-1)/per]
	switch c.Kind {
	case Compress2Bit:
		kernels.Dequantize2Bit(out[lo:hi], i, c.Threshold)
	case Compress1Bit:
		kernels.Dequantize1Bit(out[lo:hi], i, c.Threshold)
	}
}

// --- LAMB: two passes with the norms in between ---

// lambParallelMin is the length from which lambStep splits its two passes
// across goroutines (below it, one goroutine is faster).
const lambParallelMin = 1 << 17

// lambStep runs LAMB (kernels.LAMBPhase1 and LAMBPhase2) over whole arrays.
// The norms are summed in float64 per block of kernels.LAMBBlock elements,
// then the blocks in order, so they do not depend on how many goroutines
// ran the blocks. Large arrays are shared by GOMAXPROCS goroutines, forked
// and joined for each phase; a step allocates nothing.
func (c *CPU) lambStep(p *StepParams, w, g []float32, states [][]float32) error {
	return c.lambRun(p, w, g, nil, 0, states)
}

// lambRun is lambStep with the gradient g, or, when g is nil, the gradient
// summed block by block from ins times scale (ReduceStep).
func (c *CPU) lambRun(p *StepParams, w, g []float32, ins [][]float32, scale float32, states [][]float32) error {
	if len(states) != 2 {
		return fmt.Errorf("compute: lamb step needs 2 states (mean, var), got %d", len(states))
	}
	mean, vr := states[0], states[1]
	if (g != nil && len(g) != len(w)) || len(mean) != len(w) || len(vr) != len(w) {
		return fmt.Errorf("compute: lamb step: lengths differ: weight %d, grad %d, mean %d, var %d", len(w), len(g), len(mean), len(vr))
	}
	j := c.getLamb()
	defer c.putLamb(j)
	if g == nil {
		j.ins, j.scale = ins, scale
		j.scratch = scratchBlocks(j.scratch, runtime.GOMAXPROCS(0), 2*kernels.LAMBBlock)
	}
	nb := (len(w) + kernels.LAMBBlock - 1) / kernels.LAMBBlock
	if cap(j.partial) < 2*nb {
		j.partial = make([]float64, 2*nb)
	}
	j.p, j.w, j.g, j.mean, j.vr, j.partial = kparams(p), w, g, mean, vr, j.partial[:2*nb]
	j.run(1, nb)
	var ww, uu float64
	for b := range nb {
		ww += j.partial[2*b]
		uu += j.partial[2*b+1]
	}
	r1, r2 := float32(math.Sqrt(ww)), float32(math.Sqrt(uu))
	if p.Flags&FlagBounds != 0 {
		if p.LowerBound >= 0 {
			r1 = max(r1, p.LowerBound)
		}
		if p.UpperBound >= 0 {
			r1 = min(r1, p.UpperBound)
		}
	}
	j.lr = p.LR
	if r1 != 0 && r2 != 0 {
		j.lr = j.lr * r1 / r2
	}
	j.run(2, nb)
	return nil
}

// lambJob is one LAMB step shared by the goroutines that run its blocks.
type lambJob struct {
	p              *kernels.Params
	w, g, mean, vr []float32
	partial        []float64 // w*w and u*u sums of each block
	lr             float32
	phase          int
	nblocks        int
	next           atomic.Int64 // next block to take
	wg             sync.WaitGroup
	helper         func() // bound once: work, then wg.Done

	// ReduceStep: the gradient is the sum of ins times scale, summed into
	// the worker's scratch block for phase 1.
	ins     [][]float32
	scale   float32
	scratch [][]float32
	workers atomic.Int64 // worker numbers handed out in this phase
	batch   int64        // blocks per take (see lambBatch)
}

func (c *CPU) getLamb() *lambJob {
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	if n := len(c.lambs); n > 0 {
		j := c.lambs[n-1]
		c.lambs[n-1] = nil
		c.lambs = c.lambs[:n-1]
		return j
	}
	j := new(lambJob)
	j.helper = func() {
		j.work()
		j.wg.Done()
	}
	return j
}

func (c *CPU) putLamb(j *lambJob) {
	j.p, j.w, j.g, j.mean, j.vr = nil, nil, nil, nil, nil
	j.ins = nil
	c.jobMu.Lock()
	if len(c.lambs) < jobCache {
		c.lambs = append(c.lambs, j)
	}
	c.jobMu.Unlock()
}

// run runs one phase over all blocks: alone for small arrays, else with
// helper goroutines taking blocks from a shared counter; it returns when
// every block is done and every helper has exited.
func (j *lambJob) run(phase, nb int) {
	j.phase, j.nblocks = phase, nb
	j.next.Store(0)
	j.workers.Store(0)
	p := runtime.GOMAXPROCS(0)
	j.batch = int64(min(lambBatch, max(1, nb/(4*p))))
	if len(j.w) < lambParallelMin || p == 1 {
		j.work()
		return
	}
	h := min(p-1, (nb+int(j.batch)-1)/int(j.batch)-1)
	j.wg.Add(h)
	for range h {
		go j.helper()
	}
	j.work()
	j.wg.Wait()
}

// work takes blocks until none are left.
func (j *lambJob) work() {
	var scratch []float32
	if j.ins != nil {
		scratch = scratchFor(j.scratch, int(j.workers.Add(1)-1), 2*kernels.LAMBBlock)
	}
	for {
		// Runs of lambBatch consecutive blocks: each goroutine streams
		// through long stretches of the arrays, which the hardware
		// prefetchers follow (single blocks taken in turn by two cores
		// break every stream every 16 KB).
		b0 := int(j.next.Add(j.batch) - j.batch)
		if b0 >= j.nblocks {
			return
		}
		j.blocks(b0, min(b0+int(j.batch), j.nblocks), scratch)
	}
}

// lambBatch is the most consecutive blocks a LAMB goroutine takes at a
// time (1 MB of each array); smaller arrays get runs that still make
// about 4 per goroutine.
const lambBatch = 64

// blocks runs the phase on blocks [b0, b1). ReduceStep's phase 1 sums the
// gradient of two blocks at a time into scratch (kernels.LAMBPhase1Blocks
// runs pairs of blocks together).
func (j *lambJob) blocks(b0, b1 int, scratch []float32) {
	const B = kernels.LAMBBlock
	lo, hi := b0*B, min(b1*B, len(j.w))
	switch {
	case j.phase == 2:
		kernels.LAMBPhase2(j.p, j.lr, j.w[lo:hi], j.mean[lo:hi], j.vr[lo:hi])
	case j.ins == nil:
		kernels.LAMBPhase1Blocks(j.p, j.w[lo:hi], j.g[lo:hi], j.mean[lo:hi], j.vr[lo:hi], j.partial[2*b0:2*b1])
	default:
		for b := b0; b < b1; b += 2 {
			e := min(b+2, b1)
			lo, hi := b*B, min(e*B, len(j.w))
			g := scratch[:hi-lo]
			kernels.ReduceInto(g, j.ins, j.scale, lo)
			kernels.LAMBPhase1Blocks(j.p, j.w[lo:hi], g, j.mean[lo:hi], j.vr[lo:hi], j.partial[2*b:2*e])
		}
	}
}
