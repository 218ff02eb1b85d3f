// Package backendtest is the conformance suite every compute.Backend runs:
// each method of the backend under test is checked against the CPU reference
// (compute.CPU and the reference functions kernels.Quantize2Bit & co.) on
// seeded random inputs.
//
// A backend's test calls Run:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) compute.Backend { return myBackend(t) })
//	}
//
// What is checked, for lengths 1, 3, 4, 1023, 65537 and one above 16M values
// (see Short for the large one):
//   - Alloc returns zeroed buffers of the asked length, also after Free of a
//     dirty buffer of that size; Write/Read at offsets; Copy; Fill;
//   - Reduce with 1 to 16 inputs, scale 1 and scale != 1, the output
//     aliasing input 0, one buffer passed several times, and the output
//     aliasing a later input (refused with an error, or summed correctly);
//   - Step for every OptKind, with several hyper-parameter sets (flags
//     included), several steps in a row, weights and every state compared
//     after each step; the sets come from JSON specs through
//     optimizer.Parse and (*optimizer.Spec).Params (every kind at least
//     once), and from StepParams filled here so each flag of every kernel
//     is reached;
//   - ReduceStep, where the backend has it (compute.ReduceStepper), against
//     Reduce then Step on the reference, for every kind;
//   - Quantize/Dequantize for 2bit and 1bit, residual carried across calls;
//   - ordering of queued work: a Write, Fill or Copy issued after an
//     operation that reads the buffer does not leak into that operation's
//     result (with WebGPU, queue.writeBuffer runs before command buffers
//     encoded earlier but submitted later), and Write does not keep the
//     caller's slice;
//   - Sync, concurrent use from several goroutines, and errors: every
//     malformed call (bad lengths or offsets, wrong state count, a buffer of
//     another backend, nil, unknown kinds) must return an error from the
//     call itself (they are known without running anything, even on a
//     backend that queues work), never panic, and leave the backend usable.
//
// Tolerance. Copy, Fill, Write/Read and quantization (packed words, residuals
// and dequantized values) must be bit-exact. Reduce and Step are compared as
// |got - want| <= Atol + Rtol*max(|want|, mag), where mag is the size of what
// was summed (for Reduce, |scale| times the sum of the |inputs|; for Step, the
// weight or state before the step), with Rtol = 1e-5 (about 84 float32 ulps)
// and Atol = 1e-6 by default (see Tolerance). This admits what float32
// kernels legitimately differ in: fused multiply-add, WGSL's division and
// sqrt (2.5 ulp and worse), another order of the norm sums of LAMB; it does
// not admit another summation order of Reduce over 16 inputs of mixed sign
// near cancellation, nor any real formula error. Kernels with a discontinuity
// (Signum's sign, FTRL's |z| > lamda1 test) may differ in a few elements that
// sit within rounding of the jump: up to 1 + n/10000 such elements are
// allowed, each reported with t.Logf.
package backendtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/kernels"
)

// Option changes what Run checks.
type Option func(*config)

type config struct {
	short     bool
	seed      uint64
	seedSet   bool
	rtol      float64
	atol      float64
	largeLen  int
	skipLarge string
}

// Short leaves out the case above 16M values (it allocates about 1.5 GB on
// the backend and the reference together). Run also leaves it out under
// `go test -short`; otherwise it runs by default.
func Short() Option { return func(c *config) { c.short = true } }

// Seed fixes the random seed (otherwise taken from WEBKV_SEED, else the
// clock); the seed is always printed with t.Logf.
func Seed(s uint64) Option { return func(c *config) { c.seed, c.seedSet = s, true } }

// Tolerance replaces the default float32 tolerance of Reduce and Step
// (rtol 1e-5, atol 1e-6); see the package comment. A backend that needs more
// should say why next to the call.
func Tolerance(rtol, atol float64) Option {
	return func(c *config) { c.rtol, c.atol = rtol, atol }
}

// LargeLen sets the length of the large case (default 1<<24 + 5, above 16M
// values and not a multiple of 4, 16 or 32). A backend that splits buffers at
// its binding limit can set it past that limit.
func LargeLen(n int) Option { return func(c *config) { c.largeLen = n } }

// Lengths is the set of lengths every check runs at, besides the large one.
var Lengths = []int{1, 3, 4, 1023, 65537}

// Run runs the conformance suite on the backends newBackend returns. It calls
// newBackend once per subtest, with that subtest's t, so an implementation
// may share one device between calls or open one per call.
func Run(t *testing.T, newBackend func(t *testing.T) compute.Backend, opts ...Option) {
	cfg := config{rtol: 1e-5, atol: 1e-6, largeLen: 1<<24 + 5}
	for _, o := range opts {
		o(&cfg)
	}
	if !cfg.seedSet {
		cfg.seed = uint64(time.Now().UnixNano())
		if v, err := strconv.ParseUint(os.Getenv("WEBKV_SEED"), 10, 64); err == nil {
			cfg.seed = v
		}
	}
	t.Logf("backendtest seed %d (rerun with WEBKV_SEED=%d)", cfg.seed, cfg.seed)
	if cfg.short || testing.Short() {
		cfg.skipLarge = "large case left out (Short option or go test -short)"
	}
	subtests := []struct {
		name string
		f    func(*suite)
	}{
		{"AllocFree", (*suite).allocFree},
		{"WriteRead", (*suite).writeRead},
		{"Copy", (*suite).copyBuf},
		{"Fill", (*suite).fill},
		{"Reduce", (*suite).reduce},
		{"Step", (*suite).step},
		{"ReduceStep", (*suite).reduceStep},
		{"Quantize", (*suite).quantize},
		{"Rows", (*suite).rows},
		{"Errors", (*suite).errors},
		{"Ordering", (*suite).ordering},
		{"Concurrent", (*suite).concurrent},
		{"Large", (*suite).large},
	}
	for i, st := range subtests {
		t.Run(st.name, func(t *testing.T) {
			b := newBackend(t)
			if b == nil {
				t.Fatal("newBackend returned nil")
			}
			s := &suite{t: t, b: b, ref: compute.NewCPU(nil), cfg: &cfg,
				rng: rand.New(rand.NewPCG(cfg.seed, uint64(i)))}
			t.Logf("backend %s", b.Name())
			st.f(s)
			s.sync()
		})
	}
}

// tb is the part of testing.TB the suite uses; the suite's own tests drive
// it with a recorder to check that broken backends fail.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Error(args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Skip(args ...any)
}

type suite struct {
	t   tb
	b   compute.Backend // under test
	ref compute.Backend // CPU reference
	cfg *config
	rng *rand.Rand
}

// --- helpers ---

// call runs f and turns a panic into a test failure naming what was called.
func (s *suite) call(what string, f func() error) (err error) {
	s.t.Helper()
	defer func() {
		if p := recover(); p != nil {
			s.t.Fatalf("%s panicked: %v", what, p)
		}
	}()
	return f()
}

func (s *suite) must(what string, f func() error) {
	s.t.Helper()
	if err := s.call(what, f); err != nil {
		s.t.Fatalf("%s: %v", what, err)
	}
}

func (s *suite) sync() {
	s.t.Helper()
	s.must(s.b.Name()+": Sync", s.b.Sync)
}

func (s *suite) alloc(b compute.Backend, n int) compute.Buffer {
	s.t.Helper()
	var buf compute.Buffer
	s.must(fmt.Sprintf("%s: Alloc(%d)", b.Name(), n), func() (err error) {
		buf, err = b.Alloc(n)
		return err
	})
	if buf == nil || buf.Len() != n {
		s.t.Fatalf("%s: Alloc(%d) returned a buffer of length %v", b.Name(), n, lenOf(buf))
	}
	s.t.Cleanup(func() { b.Free(buf) })
	return buf
}

func lenOf(b compute.Buffer) any {
	if b == nil {
		return "nil"
	}
	return b.Len()
}

// upload allocates a buffer on b holding data.
func (s *suite) upload(b compute.Backend, data []float32) compute.Buffer {
	s.t.Helper()
	buf := s.alloc(b, len(data))
	s.must(b.Name()+": Write", func() error { return b.Write(buf, 0, data) })
	return buf
}

// download reads all of buf.
func (s *suite) download(b compute.Backend, buf compute.Buffer) []float32 {
	s.t.Helper()
	out := make([]float32, buf.Len())
	s.must(b.Name()+": Read", func() error { return b.Read(buf, 0, out) })
	return out
}

// random returns n values uniform in [-scale, scale), with some exact zeros
// and negative zeros mixed in (1 in 64 values, none below 64 values, so that
// short inputs are not all zero).
func (s *suite) random(n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = (s.rng.Float32()*2 - 1) * scale
	}
	for k := 0; k < n/64; k++ {
		i := s.rng.IntN(n)
		if k%2 == 0 {
			v[i] = 0
		} else {
			v[i] = float32(math.Copysign(0, -1))
		}
	}
	return v
}

// exact fails unless got and want are equal bit for bit.
func (s *suite) exact(what string, got, want []float32) {
	s.t.Helper()
	if len(got) != len(want) {
		s.t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad, first := 0, -1
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			if first < 0 {
				first = i
			}
			bad++
		}
	}
	if bad > 0 {
		s.t.Fatalf("%s: %d of %d values differ; first at %d: got %v (%#08x), want %v (%#08x)",
			what, bad, len(want), first, got[first], math.Float32bits(got[first]),
			want[first], math.Float32bits(want[first]))
	}
}

// close fails unless got is within tolerance of want; mag (may be nil) gives
// the size of the operands per element. allowed is the number of elements
// that may differ (see the package comment on discontinuities).
func (s *suite) close(what string, got, want, mag []float32, allowed int) {
	s.t.Helper()
	if len(got) != len(want) {
		s.t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad, first, worst, worstI := 0, -1, 0.0, -1
	for i := range want {
		w, g := float64(want[i]), float64(got[i])
		if math.IsNaN(w) || math.IsInf(w, 0) {
			s.t.Fatalf("%s: reference value %d is %v (the test's inputs are wrong)", what, i, w)
		}
		m := math.Abs(w)
		if mag != nil {
			m = math.Max(m, math.Abs(float64(mag[i])))
		}
		tol := s.cfg.atol + s.cfg.rtol*m
		d := math.Abs(g - w)
		if !(d <= tol) { // NaN in got fails here
			if first < 0 {
				first = i
			}
			bad++
			if r := d / tol; r > worst || math.IsNaN(d) {
				worst, worstI = r, i
			}
		}
	}
	if bad > allowed {
		s.t.Fatalf("%s: %d of %d values outside tolerance (rtol %g, atol %g); first at %d: got %v, want %v; worst at %d: got %v, want %v",
			what, bad, len(want), s.cfg.rtol, s.cfg.atol, first, got[first], want[first], worstI, got[worstI], want[worstI])
	}
	if bad > 0 {
		s.t.Logf("%s: %d of %d values outside tolerance, within the %d allowed for a discontinuous kernel; worst at %d: got %v, want %v",
			what, bad, len(want), allowed, worstI, got[worstI], want[worstI])
	}
}

// --- Alloc, Free, Write, Read, Copy, Fill ---

func (s *suite) allocFree() {
	for _, n := range Lengths {
		buf := s.alloc(s.b, n)
		s.exact(fmt.Sprintf("Alloc(%d) contents", n), s.download(s.b, buf), make([]float32, n))
		// A freed dirty buffer must come back zeroed from a pool.
		dirty, err := s.b.Alloc(n)
		if err != nil {
			s.t.Fatalf("Alloc(%d): %v", n, err)
		}
		s.must("Fill", func() error { return s.b.Fill(dirty, 7) })
		s.sync()
		s.b.Free(dirty)
		for range 3 {
			again := s.alloc(s.b, n)
			s.exact(fmt.Sprintf("Alloc(%d) after Free of a dirty buffer", n), s.download(s.b, again), make([]float32, n))
			s.must("Fill", func() error { return s.b.Fill(again, 3) })
		}
	}
}

func (s *suite) writeRead() {
	for _, n := range Lengths {
		data := s.random(n, 10)
		buf := s.upload(s.b, data)
		s.exact(fmt.Sprintf("n=%d: Read after Write", n), s.download(s.b, buf), data)
		// Partial writes and reads at offsets.
		for range 4 {
			off := s.rng.IntN(n)
			m := s.rng.IntN(n-off) + 1
			part := s.random(m, 3)
			s.must(fmt.Sprintf("Write(off %d, %d words) into %d", off, m, n),
				func() error { return s.b.Write(buf, off, part) })
			copy(data[off:], part)
			roff := s.rng.IntN(n)
			rm := s.rng.IntN(n-roff) + 1
			got := make([]float32, rm)
			s.must(fmt.Sprintf("Read(off %d, %d words) from %d", roff, rm, n),
				func() error { return s.b.Read(buf, roff, got) })
			s.exact(fmt.Sprintf("n=%d: Read(off %d, %d words)", n, roff, rm), got, data[roff:roff+rm])
		}
		s.exact(fmt.Sprintf("n=%d: whole buffer after partial writes", n), s.download(s.b, buf), data)
		// Special values travel unchanged, NaN bit patterns included:
		// packed quantized words are arbitrary bit patterns.
		special := []float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
			math.Float32frombits(0x7f800001), math.Float32frombits(0xff80aa7f), math.Float32frombits(1),
			float32(math.Copysign(0, -1)), math.MaxFloat32}
		m := min(n, len(special))
		s.must("Write special values", func() error { return s.b.Write(buf, 0, special[:m]) })
		got := make([]float32, m)
		s.must("Read special values", func() error { return s.b.Read(buf, 0, got) })
		s.exact(fmt.Sprintf("n=%d: special values", n), got, special[:m])
	}
}

func (s *suite) copyBuf() {
	for _, n := range Lengths {
		data := s.random(n, 5)
		src := s.upload(s.b, data)
		dst := s.upload(s.b, s.random(n, 1))
		s.must("Copy", func() error { return s.b.Copy(dst, src) })
		s.exact(fmt.Sprintf("n=%d: Copy", n), s.download(s.b, dst), data)
		s.exact(fmt.Sprintf("n=%d: Copy source unchanged", n), s.download(s.b, src), data)
		// Copy of packed words (arbitrary bit patterns) is bit-exact too.
		bits := make([]float32, n)
		for i := range bits {
			bits[i] = math.Float32frombits(s.rng.Uint32())
		}
		src2 := s.upload(s.b, bits)
		s.must("Copy bit patterns", func() error { return s.b.Copy(dst, src2) })
		s.exact(fmt.Sprintf("n=%d: Copy of arbitrary bit patterns", n), s.download(s.b, dst), bits)
	}
}

func (s *suite) fill() {
	for _, n := range Lengths {
		buf := s.upload(s.b, s.random(n, 1))
		for _, v := range []float32{0, 1.5, float32(math.Copysign(0, -1)), -3e38, float32(math.Inf(1))} {
			s.must("Fill", func() error { return s.b.Fill(buf, v) })
			want := make([]float32, n)
			for i := range want {
				want[i] = v
			}
			s.exact(fmt.Sprintf("n=%d: Fill(%v)", n, v), s.download(s.b, buf), want)
		}
	}
}

// --- Reduce ---

func (s *suite) reduce() {
	for _, n := range Lengths {
		for k := 1; k <= 16; k++ {
			scale := float32(1)
			if k%2 == 0 {
				scale = 1 / float32(k)
			} else if k%3 == 0 {
				scale = -0.3
			}
			s.reduceCase(n, k, scale, false)
		}
		s.reduceCase(n, 1, 0.5, true)
		s.reduceCase(n, 2, 1, true)
		s.reduceCase(n, 5, 2.5, true)
		s.reduceCase(n, 16, 1.0/16, true)
		s.reduceRepeated(n)
		s.reduceAliasLater(n)
	}
}

// reduceRepeated passes one buffer several times (a store summing the
// same array pushed twice): it is read each time, never written.
func (s *suite) reduceRepeated(n int) {
	s.t.Helper()
	x, y := s.random(n, 1), s.random(n, 1)
	bx, by, bd := s.upload(s.b, x), s.upload(s.b, y), s.alloc(s.b, n)
	rx, ry, rd := s.upload(s.ref, x), s.upload(s.ref, y), s.alloc(s.ref, n)
	what := fmt.Sprintf("Reduce n=%d of [x y x x]", n)
	s.must(what, func() error { return s.b.Reduce(bd, []compute.Buffer{bx, by, bx, bx}, 0.5) })
	s.must(what+" (reference)", func() error { return s.ref.Reduce(rd, []compute.Buffer{rx, ry, rx, rx}, 0.5) })
	mag := make([]float32, n)
	for i := range mag {
		mag[i] = 0.5 * (3*abs32(x[i]) + abs32(y[i]))
	}
	s.close(what, s.download(s.b, bd), s.download(s.ref, rd), mag, 0)
	s.exact(what+": x unchanged", s.download(s.b, bx), x)
}

// reduceAliasLater makes the output an input other than the first. The
// contract only promises aliasing of input 0, so a backend may refuse with
// an error; if it accepts, the result must be the sum of the inputs as they
// were before the call.
func (s *suite) reduceAliasLater(n int) {
	s.t.Helper()
	ins := [][]float32{s.random(n, 1), s.random(n, 1), s.random(n, 1)}
	bs := []compute.Buffer{s.upload(s.b, ins[0]), s.upload(s.b, ins[1]), s.upload(s.b, ins[2])}
	rs := []compute.Buffer{s.upload(s.ref, ins[0]), s.upload(s.ref, ins[1]), s.upload(s.ref, ins[2])}
	rd := s.alloc(s.ref, n)
	what := fmt.Sprintf("Reduce n=%d into input 2", n)
	// A queuing backend may report the refusal at the next Sync.
	if err := s.call(what, func() error {
		if err := s.b.Reduce(bs[2], bs, 1); err != nil {
			return err
		}
		return s.b.Sync()
	}); err != nil {
		s.exact(what+": refused, input 2 unchanged", s.download(s.b, bs[2]), ins[2])
		return
	}
	s.must(what+" (reference)", func() error { return s.ref.Reduce(rd, rs, 1) })
	mag := make([]float32, n)
	for i := range mag {
		mag[i] = abs32(ins[0][i]) + abs32(ins[1][i]) + abs32(ins[2][i])
	}
	s.close(what, s.download(s.b, bs[2]), s.download(s.ref, rd), mag, 0)
}

// reduceCase reduces k random inputs of length n with scale on both backends
// and compares; with alias the output is input 0.
func (s *suite) reduceCase(n, k int, scale float32, alias bool) {
	s.t.Helper()
	what := fmt.Sprintf("Reduce n=%d inputs=%d scale=%v alias=%v", n, k, scale, alias)
	ins := make([][]float32, k)
	mag := make([]float32, n)
	bs, rs := make([]compute.Buffer, k), make([]compute.Buffer, k)
	for j := range ins {
		ins[j] = s.random(n, 1)
		for i, v := range ins[j] {
			mag[i] += float32(math.Abs(float64(v)))
		}
		bs[j] = s.upload(s.b, ins[j])
		rs[j] = s.upload(s.ref, ins[j])
	}
	for i := range mag {
		mag[i] *= float32(math.Abs(float64(scale)))
	}
	bd, rd := bs[0], rs[0]
	if !alias {
		bd = s.upload(s.b, s.random(n, 1))
		rd = s.alloc(s.ref, n)
	}
	s.must(what, func() error { return s.b.Reduce(bd, bs, scale) })
	s.must(what+" (reference)", func() error { return s.ref.Reduce(rd, rs, scale) })
	want := s.download(s.ref, rd)
	s.close(what, s.download(s.b, bd), want, mag, 0)
	// The inputs other than an aliased output are unchanged.
	for j := range ins {
		if alias && j == 0 {
			continue
		}
		s.exact(fmt.Sprintf("%s: input %d afterwards", what, j), s.download(s.b, bs[j]), ins[j])
	}
	// Left to right sums are reproducible: the same call again gives the
	// same bits.
	if !alias {
		again := s.upload(s.b, s.random(n, 1))
		s.must(what, func() error { return s.b.Reduce(again, bs, scale) })
		s.exact(what+": repeated", s.download(s.b, again), s.download(s.b, bd))
	}
}

// --- Quantize, Dequantize ---

func (s *suite) quantize() {
	comps := []compute.Compression{
		{Kind: compute.Compress2Bit, Threshold: 0.5},
		{Kind: compute.Compress2Bit, Threshold: 0.05},
		{Kind: compute.Compress1Bit, Threshold: 0.5},
		{Kind: compute.Compress1Bit, Threshold: 0},
		{Kind: compute.Compress1Bit, Threshold: -0.5},
	}
	lens := append([]int{15, 16, 17, 31, 32, 33}, Lengths...)
	for _, c := range comps {
		for _, n := range lens {
			s.quantizeCase(c, n, 4)
		}
		s.quantizeTies(c)
	}
}

// quantizeTies checks values exactly at the thresholds, where MXNet's
// comparisons decide: 2bit r >= t and r <= -t quantize, 1bit needs r > t.
func (s *suite) quantizeTies(c compute.Compression) {
	s.t.Helper()
	t := c.Threshold
	below := math.Nextafter32(t, float32(math.Inf(-1)))
	above := math.Nextafter32(t, float32(math.Inf(1)))
	g := []float32{t, -t, below, -below, above, -above, 0, float32(math.Copysign(0, -1)),
		2 * t, -2 * t, 1, -1, t - 1, t + 1, 1 - t, -1 - t, 0.5, -0.5, t, -t}
	n := len(g)
	pn := c.Kind.PackedLen(n)
	bg, br, bo, bd := s.upload(s.b, g), s.alloc(s.b, n), s.alloc(s.b, pn), s.alloc(s.b, n)
	res := make([]float32, n)
	wantOut, wantDeq := make([]float32, pn), make([]float32, n)
	what := fmt.Sprintf("%v values at the threshold", c)
	for round := range 3 { // the residuals left by round 0 are ties too
		s.must(what+": Quantize", func() error { return s.b.Quantize(c, bg, br, bo) })
		s.must(what+": Dequantize", func() error { return s.b.Dequantize(c, bo, bd) })
		if c.Kind == compute.Compress2Bit {
			kernels.Quantize2Bit(wantOut, g, res, t)
			kernels.Dequantize2Bit(wantDeq, wantOut, t)
		} else {
			kernels.Quantize1Bit(wantOut, g, res, t)
			kernels.Dequantize1Bit(wantDeq, wantOut, t)
		}
		r := fmt.Sprintf(" round %d", round)
		s.exact(what+r+": packed words", s.download(s.b, bo), wantOut)
		s.exact(what+r+": residual", s.download(s.b, br), res)
		s.exact(what+r+": dequantized", s.download(s.b, bd), wantDeq)
	}
}

// quantizeCase runs rounds quantizations with the residual carried, checking
// packed words, residual and dequantized values bit for bit against the
// reference functions.
func (s *suite) quantizeCase(c compute.Compression, n, rounds int) {
	s.t.Helper()
	pn := c.Kind.PackedLen(n)
	res := s.random(n, c.Threshold)
	if c.Kind == compute.Compress1Bit {
		res = s.random(n, 1)
	}
	ref := append([]float32(nil), res...)
	bg := s.alloc(s.b, n)
	br := s.upload(s.b, res)
	bo := s.upload(s.b, s.random(pn, 1)) // stale words must be overwritten
	bd := s.upload(s.b, s.random(n, 1))
	wantOut := make([]float32, pn)
	wantDeq := make([]float32, n)
	for round := range rounds {
		what := fmt.Sprintf("%v n=%d round %d", c, n, round)
		g := s.random(n, 0.6)
		s.must("Write grad", func() error { return s.b.Write(bg, 0, g) })
		s.must(what+": Quantize", func() error { return s.b.Quantize(c, bg, br, bo) })
		s.must(what+": Dequantize", func() error { return s.b.Dequantize(c, bo, bd) })
		if c.Kind == compute.Compress2Bit {
			kernels.Quantize2Bit(wantOut, g, ref, c.Threshold)
			kernels.Dequantize2Bit(wantDeq, wantOut, c.Threshold)
		} else {
			kernels.Quantize1Bit(wantOut, g, ref, c.Threshold)
			kernels.Dequantize1Bit(wantDeq, wantOut, c.Threshold)
		}
		s.exact(what+": packed words", s.download(s.b, bo), wantOut)
		s.exact(what+": residual", s.download(s.b, br), ref)
		s.exact(what+": dequantized", s.download(s.b, bd), wantDeq)
		s.exact(what+": grad unchanged", s.download(s.b, bg), g)
	}
}

// --- Errors ---

// foreign is a Buffer no backend allocated.
type foreign struct{ n int }

func (f foreign) Len() int { return f.n }

func (s *suite) errors() {
	b := s.b
	n := 100
	a := s.alloc(b, n)
	a2 := s.alloc(b, n)
	short := s.alloc(b, n-1)
	var nilBuf compute.Buffer
	bad := []compute.Buffer{foreign{n}, nilBuf}
	p := compute.StepParams{LR: 0.1, RescaleGrad: 1, ClipGradient: -1, Momentum: 0.9, T: 1}

	expectErr := func(what string, f func() error) {
		s.t.Helper()
		if err := s.call(what, f); err == nil {
			s.t.Errorf("%s: no error", what)
		} else if strings.TrimSpace(err.Error()) == "" {
			s.t.Errorf("%s: empty error message", what)
		}
	}
	expectErr("Alloc(0)", func() error { _, err := b.Alloc(0); return err })
	expectErr("Alloc(-1)", func() error { _, err := b.Alloc(-1); return err })
	expectErr("Write past the end", func() error { return b.Write(a, n-1, make([]float32, 2)) })
	expectErr("Write at a negative offset", func() error { return b.Write(a, -1, make([]float32, 1)) })
	expectErr("Write at offset past the end", func() error { return b.Write(a, n+1, nil) })
	expectErr("Read past the end", func() error { return b.Read(a, 1, make([]float32, n)) })
	expectErr("Read at a negative offset", func() error { return b.Read(a, -5, make([]float32, 1)) })
	expectErr("Copy of different lengths", func() error { return b.Copy(a, short) })
	expectErr("Copy into shorter", func() error { return b.Copy(short, a) })
	expectErr("Reduce of no inputs", func() error { return b.Reduce(a, nil, 1) })
	expectErr("Reduce of different lengths", func() error { return b.Reduce(a, []compute.Buffer{a2, short}, 1) })
	expectErr("Reduce into shorter", func() error { return b.Reduce(short, []compute.Buffer{a, a2}, 1) })
	expectErr("Step with grad of another length", func() error {
		return b.Step(compute.OptSGD, &p, a, short, []compute.Buffer{a2})
	})
	expectErr("Step with too few states", func() error { return b.Step(compute.OptSGD, &p, a, a2, nil) })
	expectErr("Step with too many states", func() error {
		return b.Step(compute.OptAdam, &p, a, a2, []compute.Buffer{s.alloc(b, n), s.alloc(b, n), s.alloc(b, n)})
	})
	expectErr("Step with a state of another length", func() error {
		return b.Step(compute.OptAdam, &p, a, a2, []compute.Buffer{s.alloc(b, n), short})
	})
	expectErr("Step of OptKind(0)", func() error { return b.Step(0, &p, a, a2, nil) })
	expectErr("Step of OptKind(200)", func() error { return b.Step(200, &p, a, a2, nil) })
	c2 := compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}
	c1 := compute.Compression{Kind: compute.Compress1Bit, Threshold: 0.5}
	packed2, packed1 := s.alloc(b, c2.Kind.PackedLen(n)), s.alloc(b, c1.Kind.PackedLen(n))
	expectErr("Quantize with a residual of another length", func() error { return b.Quantize(c2, a, short, packed2) })
	expectErr("Quantize 2bit into 1bit-sized output", func() error { return b.Quantize(c2, a, a2, packed1) })
	expectErr("Quantize 1bit into 2bit-sized output", func() error { return b.Quantize(c1, a, a2, packed2) })
	expectErr("Quantize with kind none", func() error {
		return b.Quantize(compute.Compression{Kind: compute.CompressNone}, a, a2, s.alloc(b, n))
	})
	expectErr("Quantize with CompressionKind(9)", func() error {
		return b.Quantize(compute.Compression{Kind: 9, Threshold: 1}, a, a2, packed2)
	})
	expectErr("Dequantize from the wrong number of words", func() error { return b.Dequantize(c2, packed1, a) })
	expectErr("Dequantize 1bit from too many words", func() error { return b.Dequantize(c1, packed2, a) })
	expectErr("Dequantize with kind none", func() error {
		return b.Dequantize(compute.Compression{Kind: compute.CompressNone}, a2, a)
	})
	for _, f := range bad {
		name := fmt.Sprintf("%T", f)
		if f == nil {
			name = "nil"
		}
		expectErr("Write into a "+name+" buffer", func() error { return b.Write(f, 0, make([]float32, 1)) })
		expectErr("Read from a "+name+" buffer", func() error { return b.Read(f, 0, make([]float32, 1)) })
		expectErr("Copy from a "+name+" buffer", func() error { return b.Copy(a, f) })
		expectErr("Copy into a "+name+" buffer", func() error { return b.Copy(f, a) })
		expectErr("Fill of a "+name+" buffer", func() error { return b.Fill(f, 1) })
		expectErr("Reduce into a "+name+" buffer", func() error { return b.Reduce(f, []compute.Buffer{a}, 1) })
		expectErr("Reduce from a "+name+" buffer", func() error { return b.Reduce(a2, []compute.Buffer{a, f}, 1) })
		expectErr("Step with a "+name+" weight", func() error { return b.Step(compute.OptSGD, &p, f, a, []compute.Buffer{a2}) })
		expectErr("Step with a "+name+" grad", func() error { return b.Step(compute.OptSGD, &p, a, f, []compute.Buffer{a2}) })
		expectErr("Step with a "+name+" state", func() error { return b.Step(compute.OptSGD, &p, a, a2, []compute.Buffer{f}) })
		expectErr("Quantize from a "+name+" buffer", func() error { return b.Quantize(c2, f, a2, packed2) })
		expectErr("Quantize into a "+name+" buffer", func() error { return b.Quantize(c2, a, a2, f) })
		expectErr("Dequantize from a "+name+" buffer", func() error { return b.Dequantize(c2, f, a) })
		s.call("Free of a "+name+" buffer", func() error { b.Free(f); return nil })
	}
	// A buffer of the CPU backend is foreign to any other (non-CPU) backend.
	if _, cpu := b.(*compute.CPU); !cpu {
		cpuBuf := s.alloc(s.ref, n)
		expectErr("Copy from a CPU buffer", func() error { return b.Copy(a, cpuBuf) })
		expectErr("Write into a CPU buffer", func() error { return b.Write(cpuBuf, 0, make([]float32, 1)) })
	}
	// Errors leave the backend usable.
	data := s.random(n, 1)
	s.must("Write after errors", func() error { return b.Write(a, 0, data) })
	s.exact("Read after errors", s.download(b, a), data)
}

// --- Ordering of queued work ---

// ordering issues operations back to back without reading in between, then
// checks that each saw the buffers as the calls before it left them.
func (s *suite) ordering() {
	for _, n := range []int{4, 65537} {
		x1, x2, y := s.random(n, 1), s.random(n, 1), s.random(n, 1)
		a, b, d := s.upload(s.b, x1), s.upload(s.b, y), s.alloc(s.b, n)
		c := s.alloc(s.b, n)
		// Write after Reduce: the sum uses x1.
		s.must("Reduce", func() error { return s.b.Reduce(d, []compute.Buffer{a, b}, 1) })
		s.must("Write", func() error { return s.b.Write(a, 0, x2) })
		// Copy after the Write sees x2; a Fill after the Copy does not.
		s.must("Copy", func() error { return s.b.Copy(c, a) })
		s.must("Fill", func() error { return s.b.Fill(a, 3) })
		// Write reuses the caller's slice: the backend must have taken
		// its values at the call.
		host := append([]float32(nil), y...)
		s.must("Write", func() error { return s.b.Write(b, 0, host) })
		for i := range host {
			host[i] = -7
		}
		want := make([]float32, n)
		for i := range want {
			want[i] = x1[i] + y[i]
		}
		what := fmt.Sprintf("n=%d ordering", n)
		s.exact(what+": Reduce issued before a Write of its input", s.download(s.b, d), want)
		s.exact(what+": Copy issued between a Write and a Fill", s.download(s.b, c), x2)
		for i := range want {
			want[i] = 3
		}
		s.exact(what+": Fill after Copy", s.download(s.b, a), want)
		s.exact(what+": Write of a slice changed after the call", s.download(s.b, b), y)

		// A step, then new gradient values: the step used the old ones.
		w := s.random(n, 1)
		g1, g2 := s.random(n, 1), s.random(n, 1)
		p := adamParams(1)
		bw, bg := s.upload(s.b, w), s.upload(s.b, g1)
		st := []compute.Buffer{s.alloc(s.b, n), s.alloc(s.b, n)}
		rw, rg := s.upload(s.ref, w), s.upload(s.ref, g1)
		rst := []compute.Buffer{s.alloc(s.ref, n), s.alloc(s.ref, n)}
		s.must("Step", func() error { return s.b.Step(compute.OptAdam, &p, bw, bg, st) })
		s.must("Write grad", func() error { return s.b.Write(bg, 0, g2) })
		s.must("Step (reference)", func() error { return s.ref.Step(compute.OptAdam, &p, rw, rg, rst) })
		s.close(what+": Step issued before a Write of its grad", s.download(s.b, bw), s.download(s.ref, rw), w, 0)

		// Quantize, then a new gradient and a Dequantize of the words.
		cm := compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.25}
		res, out, deq := s.alloc(s.b, n), s.alloc(s.b, cm.Kind.PackedLen(n)), s.alloc(s.b, n)
		s.must("Write grad", func() error { return s.b.Write(bg, 0, g1) })
		s.must("Quantize", func() error { return s.b.Quantize(cm, bg, res, out) })
		s.must("Write grad", func() error { return s.b.Write(bg, 0, g2) })
		s.must("Dequantize", func() error { return s.b.Dequantize(cm, out, deq) })
		words := make([]float32, cm.Kind.PackedLen(n))
		kernels.Quantize2Bit(words, g1, make([]float32, n), cm.Threshold)
		wantDeq := make([]float32, n)
		kernels.Dequantize2Bit(wantDeq, words, cm.Threshold)
		s.exact(what+": Quantize issued before a Write of its grad", s.download(s.b, out), words)
		s.exact(what+": Dequantize after Quantize", s.download(s.b, deq), wantDeq)
		s.sync()
	}
}

// --- Concurrent use ---

// reduceJob is one reduction a concurrent worker runs, with its expected
// result from the reference.
type reduceJob struct {
	ins  [][]float32
	want []float32
}

// concurrent runs independent work from several goroutines at once (the
// Backend contract: safe for concurrent use on distinct buffers) and checks
// each result.
func (s *suite) concurrent() {
	const workers, rounds, n = 6, 5, 4099
	jobs := make([][]reduceJob, workers)
	for w := range jobs {
		for range rounds {
			ins := [][]float32{s.random(n, 1), s.random(n, 1), s.random(n, 1)}
			rs := []compute.Buffer{s.upload(s.ref, ins[0]), s.upload(s.ref, ins[1]), s.upload(s.ref, ins[2])}
			rd := s.alloc(s.ref, n)
			s.must("reference Reduce", func() error { return s.ref.Reduce(rd, rs, 0.5) })
			jobs[w] = append(jobs[w], reduceJob{ins, s.download(s.ref, rd)})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					errs <- fmt.Errorf("worker %d panicked: %v", w, p)
				}
			}()
			if err := s.concurrentWorker(jobs[w]); err != nil {
				errs <- fmt.Errorf("worker %d: %w", w, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		s.t.Error(err)
	}
}

// concurrentWorker runs its jobs on its own buffers; it reports errors
// instead of calling t.Fatal, which must not run outside the test goroutine.
func (s *suite) concurrentWorker(jobs []reduceJob) error {
	b := s.b
	var bufs []compute.Buffer
	defer func() {
		for _, x := range bufs {
			b.Free(x)
		}
	}()
	for r, j := range jobs {
		srcs := make([]compute.Buffer, len(j.ins))
		for i, in := range j.ins {
			buf, err := b.Alloc(len(in))
			if err != nil {
				return err
			}
			bufs = append(bufs, buf)
			if err := b.Write(buf, 0, in); err != nil {
				return err
			}
			srcs[i] = buf
		}
		dst, err := b.Alloc(len(j.want))
		if err != nil {
			return err
		}
		bufs = append(bufs, dst)
		if err := b.Reduce(dst, srcs, 0.5); err != nil {
			return err
		}
		got := make([]float32, len(j.want))
		if err := b.Read(dst, 0, got); err != nil {
			return err
		}
		for i, w := range j.want {
			// Inputs are in [-1, 1): the sum of 3 scaled by 0.5 is below 1.5.
			if d := math.Abs(float64(got[i] - w)); !(d <= s.cfg.atol+s.cfg.rtol*1.5) {
				return fmt.Errorf("round %d: value %d = %v, want %v", r, i, got[i], w)
			}
		}
	}
	return nil
}

// --- the large case ---

// large checks Write/Read, Copy, Fill, Reduce of 4 inputs, one Adam step and
// 2bit quantization at a length above 16M values, where a GPU backend must
// split dispatches (65535 workgroups) and maybe bindings.
func (s *suite) large() {
	if s.cfg.skipLarge != "" {
		s.t.Skip(s.cfg.skipLarge)
	}
	n := s.cfg.largeLen
	s.t.Logf("large case: %d values (%d MB per array)", n, n*4>>20)
	ins := [][]float32{s.random(n, 1), s.random(n, 1), s.random(n, 1), s.random(n, 1)}
	bs := make([]compute.Buffer, len(ins))
	for j, in := range ins {
		bs[j] = s.upload(s.b, in)
	}
	s.exact("large Write/Read", s.download(s.b, bs[3]), ins[3])
	tailOff := n - 7
	got := make([]float32, 7)
	s.must("large Read at the tail", func() error { return s.b.Read(bs[2], tailOff, got) })
	s.exact("large Read at the tail", got, ins[2][tailOff:])

	d := s.alloc(s.b, n)
	s.must("large Copy", func() error { return s.b.Copy(d, bs[1]) })
	s.exact("large Copy", s.download(s.b, d), ins[1])
	s.must("large Fill", func() error { return s.b.Fill(d, -2.5) })
	fillWant := make([]float32, n)
	for i := range fillWant {
		fillWant[i] = -2.5
	}
	s.exact("large Fill", s.download(s.b, d), fillWant)
	fillWant = nil

	// Reduce: the reference result is computed on the host in the same
	// left-to-right order, so no reference buffers are needed.
	want := make([]float32, n)
	mag := make([]float32, n)
	const scale = 0.25
	for i := range want {
		want[i] = (((ins[0][i] + ins[1][i]) + ins[2][i]) + ins[3][i]) * scale
		mag[i] = (abs32(ins[0][i]) + abs32(ins[1][i]) + abs32(ins[2][i]) + abs32(ins[3][i])) * scale
	}
	s.must("large Reduce", func() error { return s.b.Reduce(d, bs, scale) })
	s.close("large Reduce", s.download(s.b, d), want, mag, 0)
	s.must("large Reduce aliased", func() error { return s.b.Reduce(bs[0], bs, scale) })
	s.close("large Reduce aliased", s.download(s.b, bs[0]), want, mag, 0)
	want, mag = nil, nil

	// One Adam step against the reference backend.
	p := adamParams(1)
	wb, gb := bs[1], bs[2]
	st := []compute.Buffer{s.alloc(s.b, n), s.alloc(s.b, n)}
	rw, rg := s.upload(s.ref, ins[1]), s.upload(s.ref, ins[2])
	rst := []compute.Buffer{s.alloc(s.ref, n), s.alloc(s.ref, n)}
	s.must("large Adam step", func() error { return s.b.Step(compute.OptAdam, &p, wb, gb, st) })
	if err := s.ref.Step(compute.OptAdam, &p, rw, rg, rst); err != nil {
		s.t.Fatalf("large Adam step (reference): %v", err)
	}
	s.close("large Adam weight", s.download(s.b, wb), s.download(s.ref, rw), ins[1], 0)
	for i := range st {
		s.close(fmt.Sprintf("large Adam state %d", i), s.download(s.b, st[i]), s.download(s.ref, rst[i]), nil, 0)
	}
	for _, x := range append([]compute.Buffer{rw, rg}, rst...) {
		s.ref.Free(x)
	}

	// 2bit quantization, bit-exact.
	c := compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}
	res := ins[0] // reuse host memory: residual starts as input 0's values
	for i := range res {
		res[i] *= 0.4
	}
	rb := s.upload(s.b, res)
	ob := s.alloc(s.b, c.Kind.PackedLen(n))
	s.must("large Quantize", func() error { return s.b.Quantize(c, bs[3], rb, ob) })
	wantOut := make([]float32, c.Kind.PackedLen(n))
	kernels.Quantize2Bit(wantOut, ins[3], res, c.Threshold)
	s.exact("large Quantize words", s.download(s.b, ob), wantOut)
	s.exact("large Quantize residual", s.download(s.b, rb), res)
	s.must("large Dequantize", func() error { return s.b.Dequantize(c, ob, d) })
	kernels.Dequantize2Bit(res, wantOut, c.Threshold)
	s.exact("large Dequantize", s.download(s.b, d), res)
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }
