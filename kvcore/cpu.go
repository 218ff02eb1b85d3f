package kvcore

import (
	"fmt"
	"runtime"
	"sync"
)

// CPUBuffer is the CPU backend's buffer: a float32 slice in Go memory.
type CPUBuffer struct{ data []float32 }

// Len returns the number of words.
func (b *CPUBuffer) Len() int { return len(b.data) }

// Float32s returns the backing slice (no copy).
func (b *CPUBuffer) Float32s() []float32 { return b.data }

// cpuBackend is the reference Backend: plain Go loops, split across
// GOMAXPROCS goroutines for large arrays, with freed buffers pooled by size
// because first touch of fresh memory costs far more than the arithmetic
// (about 200 ms per 64 MB on the machines webkv is tested on).
type cpuBackend struct {
	mu   sync.Mutex
	free map[int][]*CPUBuffer
	// pooled bytes held in free lists, capped at maxPooled.
	pooled int
}

const maxPooledWords = 1 << 30 / 4 // 1 GiB of idle buffers at most

var theCPU = &cpuBackend{free: map[int][]*CPUBuffer{}}

// CPU returns the process-wide CPU backend.
func CPU() Backend { return theCPU }

func (c *cpuBackend) Name() string { return "cpu" }

func (c *cpuBackend) Alloc(n int) (Buffer, error) {
	if n < 1 {
		return nil, fmt.Errorf("cpu: alloc of %d words", n)
	}
	c.mu.Lock()
	if l := c.free[n]; len(l) > 0 {
		b := l[len(l)-1]
		c.free[n] = l[:len(l)-1]
		c.pooled -= n
		c.mu.Unlock()
		fill(b.data, 0)
		return b, nil
	}
	c.mu.Unlock()
	return &CPUBuffer{data: make([]float32, n)}, nil
}

func (c *cpuBackend) Free(b Buffer) {
	cb, ok := b.(*CPUBuffer)
	if !ok || cb == nil {
		return
	}
	n := len(cb.data)
	c.mu.Lock()
	if c.pooled+n <= maxPooledWords {
		c.free[n] = append(c.free[n], cb)
		c.pooled += n
	}
	c.mu.Unlock()
}

func cpuData(b Buffer) ([]float32, error) {
	cb, ok := b.(*CPUBuffer)
	if !ok || cb == nil {
		return nil, fmt.Errorf("cpu: buffer %T does not belong to the cpu backend", b)
	}
	return cb.data, nil
}

func (c *cpuBackend) Write(dst Buffer, off int, src []float32) error {
	d, err := cpuData(dst)
	if err != nil {
		return err
	}
	if off < 0 || off+len(src) > len(d) {
		return fmt.Errorf("cpu: write of %d words at %d into a buffer of %d", len(src), off, len(d))
	}
	parallelCopy(d[off:off+len(src)], src)
	return nil
}

func (c *cpuBackend) Read(src Buffer, off int, dst []float32) error {
	s, err := cpuData(src)
	if err != nil {
		return err
	}
	if off < 0 || off+len(dst) > len(s) {
		return fmt.Errorf("cpu: read of %d words at %d from a buffer of %d", len(dst), off, len(s))
	}
	parallelCopy(dst, s[off:off+len(dst)])
	return nil
}

func (c *cpuBackend) Copy(dst, src Buffer) error {
	d, err := cpuData(dst)
	if err != nil {
		return err
	}
	s, err := cpuData(src)
	if err != nil {
		return err
	}
	if len(d) != len(s) {
		return fmt.Errorf("cpu: copy of %d words into %d", len(s), len(d))
	}
	parallelCopy(d, s)
	return nil
}

func (c *cpuBackend) Fill(dst Buffer, v float32) error {
	d, err := cpuData(dst)
	if err != nil {
		return err
	}
	j := getJob()
	j.kind, j.dst, j.scale = jobFill, d, v
	j.runParallel(len(d))
	return nil
}

func (c *cpuBackend) Reduce(dst Buffer, srcs []Buffer, scale float32) error {
	if len(srcs) == 0 {
		return fmt.Errorf("cpu: reduce of no inputs")
	}
	d, err := cpuData(dst)
	if err != nil {
		return err
	}
	j := getJob()
	for i, b := range srcs {
		s, err := cpuData(b)
		if err != nil {
			putJob(j)
			return err
		}
		if len(s) != len(d) {
			putJob(j)
			return fmt.Errorf("cpu: reduce input %d has %d words, output %d", i, len(s), len(d))
		}
		if i > 0 && len(s) > 0 && &s[0] == &d[0] {
			putJob(j)
			return fmt.Errorf("cpu: reduce output may alias only input 0, not input %d", i)
		}
		j.srcs = append(j.srcs, s)
	}
	j.kind, j.dst, j.scale = jobReduce, d, scale
	j.runParallel(len(d))
	return nil
}

func (c *cpuBackend) Step(kind OptKind, p *StepParams, weight, grad Buffer, states []Buffer) error {
	w, err := cpuData(weight)
	if err != nil {
		return err
	}
	g, err := cpuData(grad)
	if err != nil {
		return err
	}
	if len(g) != len(w) {
		return fmt.Errorf("cpu: %v step: grad has %d values, weight %d", kind, len(g), len(w))
	}
	if kind < OptSGD || kind > OptLAMB {
		return fmt.Errorf("cpu: step: unknown optimizer kind %v", kind)
	}
	if want := kind.NumStates(p); len(states) != want {
		return fmt.Errorf("cpu: %v step needs %d states, got %d", kind, want, len(states))
	}
	j := getJob()
	for i, b := range states {
		s, err := cpuData(b)
		if err != nil {
			putJob(j)
			return err
		}
		if len(s) != len(w) {
			putJob(j)
			return fmt.Errorf("cpu: %v state %d has %d values, weight %d", kind, i, len(s), len(w))
		}
		j.srcs = append(j.srcs, s)
	}
	if kind == OptLAMB {
		// LAMB needs two norms over the whole array between its phases.
		defer putJob(j)
		return lambStep(p, w, g, j.srcs)
	}
	j.kind, j.dst, j.grad, j.params, j.opt = jobStep, w, g, p, kind
	j.runParallel(len(w))
	return nil
}

func (c *cpuBackend) Quantize(cm Compression, grad, residual, out Buffer) error {
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
		return fmt.Errorf("cpu: quantize %v of %d values: residual %d, out %d words (want %d)",
			cm.Kind, len(g), len(r), len(o), cm.Kind.PackedLen(len(g)))
	}
	if err := cm.Validate(); err != nil || cm.Kind == CompressNone {
		return fmt.Errorf("cpu: quantize: bad compression %v: %v", cm, err)
	}
	j := getJob()
	j.kind, j.dst, j.grad, j.src, j.comp = jobQuantize, o, g, r, cm
	j.runParallel(len(g))
	return nil
}

func (c *cpuBackend) Dequantize(cm Compression, in, out Buffer) error {
	i, err := cpuData(in)
	if err != nil {
		return err
	}
	o, err := cpuData(out)
	if err != nil {
		return err
	}
	if len(i) != cm.Kind.PackedLen(len(o)) {
		return fmt.Errorf("cpu: dequantize %v into %d values: input has %d words (want %d)",
			cm.Kind, len(o), len(i), cm.Kind.PackedLen(len(o)))
	}
	if err := cm.Validate(); err != nil || cm.Kind == CompressNone {
		return fmt.Errorf("cpu: dequantize: bad compression %v: %v", cm, err)
	}
	j := getJob()
	j.kind, j.dst, j.src, j.comp = jobDequantize, o, i, cm
	j.runParallel(len(o))
	return nil
}

func (c *cpuBackend) Sync() error { return nil }

// --- parallel element-wise jobs, without allocation per call ---

// parallelMin is the length below which one goroutine does the whole job:
// splitting costs more than it saves on small arrays.
const parallelMin = 1 << 16

// reduceBlock keeps the output block in L1 while all inputs stream through it.
const reduceBlock = 2048

type jobKind uint8

const (
	jobFill jobKind = iota
	jobCopy
	jobReduce
	jobStep
	jobQuantize   // dst: packed words, grad: values, src: residual
	jobDequantize // dst: values, src: packed words
)

type job struct {
	kind   jobKind
	dst    []float32
	src    []float32
	grad   []float32
	srcs   [][]float32
	scale  float32
	params *StepParams
	opt    OptKind
	comp   Compression
	wg     sync.WaitGroup
}

var jobPool = sync.Pool{New: func() any { return new(job) }}

func getJob() *job { return jobPool.Get().(*job) }

func putJob(j *job) {
	for i := range j.srcs {
		j.srcs[i] = nil
	}
	j.srcs = j.srcs[:0]
	j.dst, j.src, j.grad, j.params = nil, nil, nil, nil
	jobPool.Put(j)
}

type chunk struct {
	j      *job
	lo, hi int
}

var (
	workersOnce sync.Once
	chunks      chan chunk
)

func startWorkers() {
	n := runtime.GOMAXPROCS(0)
	chunks = make(chan chunk, 4*n)
	for range n {
		go func() {
			for c := range chunks {
				c.j.run(c.lo, c.hi)
				c.j.wg.Done()
			}
		}()
	}
}

// runParallel runs j over [0, n) split in up to GOMAXPROCS parts aligned to
// 32 elements (one packed 1bit word), then returns j to the pool.
func (j *job) runParallel(n int) {
	p := runtime.GOMAXPROCS(0)
	if n < parallelMin || p == 1 {
		j.run(0, n)
		putJob(j)
		return
	}
	workersOnce.Do(startWorkers)
	per := ((n+p-1)/p + 31) &^ 31 // ceil(n/p), rounded up to 32
	j.wg.Add(p - 1)
	lo := per
	for range p - 1 {
		hi := min(lo+per, n)
		chunks <- chunk{j, lo, hi}
		lo = hi
	}
	j.run(0, per)
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
	case jobReduce:
		reduceRange(j.dst, j.srcs, j.scale, lo, hi)
	case jobStep:
		states := j.srcs // per-range views are taken inside stepRange
		stepRange(j.opt, j.params, j.dst, j.grad, states, lo, hi)
	case jobQuantize:
		quantizeRange(j.comp, j.dst, j.grad, j.src, lo, hi)
	case jobDequantize:
		dequantizeRange(j.comp, j.dst, j.src, lo, hi)
	}
}

func fill(d []float32, v float32) {
	for i := range d {
		d[i] = v
	}
}

func parallelCopy(d, s []float32) {
	if len(d) < parallelMin {
		copy(d, s)
		return
	}
	j := getJob()
	j.kind, j.dst, j.src = jobCopy, d, s
	j.runParallel(len(d))
}

// reduceRange computes dst[i] = scale * (((s0+s1)+s2)+…) over [lo, hi).
// Up to 4 inputs go in one streaming pass with the scale fused (x*1 == x
// exactly, so scale 1 needs no branch): the hardware prefetchers see 5 long
// streams and nothing is touched twice. More inputs go in blocks that keep
// the output in L1 while the rest stream through, the scale fused into the
// last pass.
func reduceRange(dst []float32, srcs [][]float32, scale float32, lo, hi int) {
	d := dst[lo:hi]
	switch len(srcs) {
	case 1:
		scale1(d, srcs[0][lo:hi], scale)
		return
	case 2:
		sum2s(d, srcs[0][lo:hi], srcs[1][lo:hi], scale)
		return
	case 3:
		sum3s(d, srcs[0][lo:hi], srcs[1][lo:hi], srcs[2][lo:hi], scale)
		return
	case 4:
		sum4s(d, srcs[0][lo:hi], srcs[1][lo:hi], srcs[2][lo:hi], srcs[3][lo:hi], scale)
		return
	}
	for b := lo; b < hi; b += reduceBlock {
		e := min(b+reduceBlock, hi)
		d := dst[b:e]
		sum4s(d, srcs[0][b:e], srcs[1][b:e], srcs[2][b:e], srcs[3][b:e], 1)
		rest := srcs[4:]
		for len(rest) > 3 {
			acc3(d, rest[0][b:e], rest[1][b:e], rest[2][b:e])
			rest = rest[3:]
		}
		switch len(rest) { // the last 1 to 3 inputs, scaled
		case 3:
			acc3s(d, rest[0][b:e], rest[1][b:e], rest[2][b:e], scale)
		case 2:
			acc2s(d, rest[0][b:e], rest[1][b:e], scale)
		case 1:
			acc1s(d, rest[0][b:e], scale)
		}
	}
}

func scale1(d, a []float32, s float32) {
	a = a[:len(d)]
	for i := range d {
		d[i] = a[i] * s
	}
}

func acc3s(d, a, b, c []float32, s float32) {
	a, b, c = a[:len(d)], b[:len(d)], c[:len(d)]
	for i := range d {
		d[i] = (((d[i] + a[i]) + b[i]) + c[i]) * s
	}
}

func acc2s(d, a, b []float32, s float32) {
	a, b = a[:len(d)], b[:len(d)]
	for i := range d {
		d[i] = ((d[i] + a[i]) + b[i]) * s
	}
}

func acc1s(d, a []float32, s float32) {
	a = a[:len(d)]
	for i := range d {
		d[i] = (d[i] + a[i]) * s
	}
}

func acc3(d, a, b, c []float32) {
	a, b, c = a[:len(d)], b[:len(d)], c[:len(d)]
	for i := range d {
		d[i] = ((d[i] + a[i]) + b[i]) + c[i]
	}
}
