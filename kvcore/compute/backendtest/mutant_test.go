package backendtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
)

// These tests check the suite itself: backends with one deliberate bug
// ("mutants") must fail the check that covers it, and harmless differences
// within float32 tolerance must pass. Without them a suite that compares
// the CPU backend with itself could pass while checking nothing.

// recorder is a tb that records failures; Fatalf and Skip end the checking
// goroutine as testing.T does.
type recorder struct {
	mu       sync.Mutex
	failed   bool
	msgs     []string
	cleanups []func()
}

func (r *recorder) Helper() {}
func (r *recorder) fail(msg string) {
	r.mu.Lock()
	r.failed = true
	r.msgs = append(r.msgs, msg)
	r.mu.Unlock()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (r *recorder) Errorf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }
func (r *recorder) Error(args ...any)                 { r.fail(fmt.Sprint(args...)) }
func (r *recorder) Logf(string, ...any)               {}
func (r *recorder) Cleanup(f func())                  { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Skip(...any)                       { runtime.Goexit() }

// check runs one part of the suite on b and returns the failure messages.
func check(t *testing.T, b compute.Backend, part func(*suite)) []string {
	t.Helper()
	cfg := config{rtol: 1e-5, atol: 1e-6, largeLen: 1<<24 + 5, skipLarge: "mutant", seed: 42}
	r := &recorder{}
	s := &suite{t: r, b: b, ref: compute.NewCPU(nil), cfg: &cfg, rng: rand.New(rand.NewPCG(cfg.seed, 9))}
	done := make(chan struct{})
	go func() {
		defer close(done)
		part(s)
	}()
	<-done
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	return r.msgs
}

// mutant is the CPU backend with some methods replaced.
type mutant struct {
	compute.Backend
	alloc      func(n int) (compute.Buffer, error)
	write      func(dst compute.Buffer, off int, src []float32) error
	copyFn     func(dst, src compute.Buffer) error
	reduce     func(dst compute.Buffer, srcs []compute.Buffer, scale float32) error
	step       func(k compute.OptKind, p *compute.StepParams, w, g compute.Buffer, st []compute.Buffer) error
	quantize   func(c compute.Compression, g, r, out compute.Buffer) error
	dequantize func(c compute.Compression, in, out compute.Buffer) error
	// noFree keeps buffers out of the CPU pool (for mutants that hand a
	// buffer out twice, which would otherwise be pooled twice).
	noFree bool
}

func (m *mutant) Free(b compute.Buffer) {
	if !m.noFree {
		m.Backend.Free(b)
	}
}

func (m *mutant) Alloc(n int) (compute.Buffer, error) {
	if m.alloc != nil {
		return m.alloc(n)
	}
	return m.Backend.Alloc(n)
}

func (m *mutant) Write(dst compute.Buffer, off int, src []float32) error {
	if m.write != nil {
		return m.write(dst, off, src)
	}
	return m.Backend.Write(dst, off, src)
}

func (m *mutant) Copy(dst, src compute.Buffer) error {
	if m.copyFn != nil {
		return m.copyFn(dst, src)
	}
	return m.Backend.Copy(dst, src)
}

func (m *mutant) Reduce(dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
	if m.reduce != nil {
		return m.reduce(dst, srcs, scale)
	}
	return m.Backend.Reduce(dst, srcs, scale)
}

func (m *mutant) Step(k compute.OptKind, p *compute.StepParams, w, g compute.Buffer, st []compute.Buffer) error {
	if m.step != nil {
		return m.step(k, p, w, g, st)
	}
	return m.Backend.Step(k, p, w, g, st)
}

func (m *mutant) Quantize(c compute.Compression, g, r, out compute.Buffer) error {
	if m.quantize != nil {
		return m.quantize(c, g, r, out)
	}
	return m.Backend.Quantize(c, g, r, out)
}

func (m *mutant) Dequantize(c compute.Compression, in, out compute.Buffer) error {
	if m.dequantize != nil {
		return m.dequantize(c, in, out)
	}
	return m.Backend.Dequantize(c, in, out)
}

var cpu = compute.NewCPU(nil)

func data(b compute.Buffer) []float32 { return b.(*compute.CPUBuffer).Float32s() }

// perturb applies f to the contents of b after a correct operation.
func perturb(b compute.Buffer, f func(d []float32)) { f(data(b)) }

func TestMutantsFail(t *testing.T) {
	for _, tc := range []struct {
		name string
		part func(*suite)
		m    *mutant
	}{
		{"Alloc from a pool without zeroing", (*suite).allocFree, &mutant{Backend: cpu, noFree: true,
			alloc: func() func(int) (compute.Buffer, error) {
				var last compute.Buffer
				return func(n int) (compute.Buffer, error) {
					if last != nil && last.Len() == n {
						// hand back the previous buffer dirty
						b := last
						last = nil
						return b, nil
					}
					b, err := cpu.Alloc(n)
					last = b
					return b, err
				}
			}()}},
		{"Write ignores the offset", (*suite).writeRead, &mutant{Backend: cpu,
			write: func(dst compute.Buffer, off int, src []float32) error { return cpu.Write(dst, 0, src) }}},
		{"Copy through float64 (quiets signaling NaNs)", (*suite).copyBuf, &mutant{Backend: cpu,
			copyFn: func(dst, src compute.Buffer) error {
				d, s := data(dst), data(src)
				if len(d) != len(s) {
					return fmt.Errorf("lengths")
				}
				for i := range s {
					d[i] = float32(float64(s[i]))
				}
				return nil
			}}},
		{"Reduce ignores scale", (*suite).reduce, &mutant{Backend: cpu,
			reduce: func(dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
				return cpu.Reduce(dst, srcs, 1)
			}}},
		{"Reduce drops input 9 and up", (*suite).reduce, &mutant{Backend: cpu,
			reduce: func(dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
				return cpu.Reduce(dst, srcs[:min(len(srcs), 9)], scale)
			}}},
		{"Reduce misses the last element", (*suite).reduce, &mutant{Backend: cpu,
			reduce: func(dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
				d := data(dst)
				last := d[len(d)-1]
				err := cpu.Reduce(dst, srcs, scale)
				if len(d) > 1000 && &data(srcs[0])[0] != &d[0] {
					d[len(d)-1] = last
				}
				return err
			}}},
		{"Reduce into a later input, summed in place", (*suite).reduce, &mutant{Backend: cpu,
			reduce: func(dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
				d := data(dst)
				copy(d, data(srcs[0]))
				for _, x := range srcs[1:] {
					for i, v := range data(x)[:len(d)] {
						d[i] += v
					}
				}
				for i := range d {
					d[i] *= scale
				}
				return nil
			}}},
		{"Reduce 1e-4 off", (*suite).reduce, &mutant{Backend: cpu,
			reduce: func(dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
				err := cpu.Reduce(dst, srcs, scale)
				perturb(dst, func(d []float32) { d[len(d)/2] *= 1 + 1e-4 })
				return err
			}}},
		{"Step with 1% more learning rate", (*suite).step, &mutant{Backend: cpu,
			step: func(k compute.OptKind, p *compute.StepParams, w, g compute.Buffer, st []compute.Buffer) error {
				q := *p
				q.LR *= 1.01
				q.Coef1 *= 1.01
				return cpu.Step(k, &q, w, g, st)
			}}},
		{"Step of a kind leaves its last state alone", (*suite).step, &mutant{Backend: cpu,
			step: func(k compute.OptKind, p *compute.StepParams, w, g compute.Buffer, st []compute.Buffer) error {
				if k != compute.OptRMSProp || len(st) == 0 {
					return cpu.Step(k, p, w, g, st)
				}
				last := data(st[len(st)-1])
				keep := append([]float32(nil), last...)
				err := cpu.Step(k, p, w, g, st)
				copy(last, keep)
				return err
			}}},
		{"Step ignores clip_gradient", (*suite).step, &mutant{Backend: cpu,
			step: func(k compute.OptKind, p *compute.StepParams, w, g compute.Buffer, st []compute.Buffer) error {
				q := *p
				q.ClipGradient = -1
				return cpu.Step(k, &q, w, g, st)
			}}},
		{"Step of LAMB ignores bounds", (*suite).step, &mutant{Backend: cpu,
			step: func(k compute.OptKind, p *compute.StepParams, w, g compute.Buffer, st []compute.Buffer) error {
				q := *p
				if k == compute.OptLAMB {
					q.Flags &^= compute.FlagBounds
				}
				return cpu.Step(k, &q, w, g, st)
			}}},
		{"Quantize sets a padding bit", (*suite).quantize, &mutant{Backend: cpu,
			quantize: func(c compute.Compression, g, r, out compute.Buffer) error {
				err := cpu.Quantize(c, g, r, out)
				if g.Len()%32 != 0 && c.Kind == compute.Compress1Bit {
					perturb(out, func(d []float32) { d[len(d)-1] = math.Float32frombits(math.Float32bits(d[len(d)-1]) | 1) })
				}
				return err
			}}},
		{"Quantize 2bit with a threshold 1 ulp high", (*suite).quantize, &mutant{Backend: cpu,
			quantize: func(c compute.Compression, g, r, out compute.Buffer) error {
				if c.Kind != compute.Compress2Bit {
					return cpu.Quantize(c, g, r, out)
				}
				c.Threshold = math.Nextafter32(c.Threshold, 10)
				return cpu.Quantize(c, g, r, out)
			}}},
		{"Dequantize 2bit code 10 as +t", (*suite).quantize, &mutant{Backend: cpu,
			dequantize: func(c compute.Compression, in, out compute.Buffer) error {
				err := cpu.Dequantize(c, in, out)
				if c.Kind == compute.Compress2Bit {
					perturb(out, func(d []float32) {
						for i := range d {
							if d[i] < 0 {
								d[i] = -d[i]
							}
						}
					})
				}
				return err
			}}},
		{"Write panics past the end", (*suite).errors, &mutant{Backend: cpu,
			write: func(dst compute.Buffer, off int, src []float32) error {
				copy(data(dst)[off:off+len(src)], src)
				return nil
			}}},
		{"Step accepts a state of another length", (*suite).errors, &mutant{Backend: cpu,
			step: func(k compute.OptKind, p *compute.StepParams, w, g compute.Buffer, st []compute.Buffer) error {
				for _, s := range st {
					if s != nil && s.Len() != w.Len() {
						return nil
					}
				}
				return cpu.Step(k, p, w, g, st)
			}}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			msgs := check(t, tc.m, tc.part)
			if len(msgs) == 0 {
				t.Fatalf("the suite did not notice: %s", tc.name)
			}
			t.Logf("caught: %s", msgs[0])
		})
	}
}

// TestWithinTolerancePasses: a backend whose Reduce and Step results are a
// couple of ulps off (what FMA or another sqrt gives) passes.
func TestWithinTolerancePasses(t *testing.T) {
	ulps := func(d []float32, k int) {
		for i := range d {
			if i%3 == 0 {
				for range k {
					d[i] = math.Nextafter32(d[i], float32(math.Inf(1)))
				}
			}
		}
	}
	m := &mutant{Backend: cpu,
		reduce: func(dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
			err := cpu.Reduce(dst, srcs, scale)
			if err == nil {
				perturb(dst, func(d []float32) { ulps(d, 2) })
			}
			return err
		},
		step: func(k compute.OptKind, p *compute.StepParams, w, g compute.Buffer, st []compute.Buffer) error {
			err := cpu.Step(k, p, w, g, st)
			if err == nil {
				perturb(w, func(d []float32) { ulps(d, 4) })
				for _, s := range st {
					perturb(s, func(d []float32) { ulps(d, 4) })
				}
			}
			return err
		},
	}
	for name, part := range map[string]func(*suite){"reduce": (*suite).reduce, "step": (*suite).step} {
		if msgs := check(t, m, part); len(msgs) > 0 {
			t.Errorf("%s: a few ulps failed the suite: %s", name, msgs[0])
		}
	}
}

// queued is the CPU backend turned into a queuing one, like a GPU backend
// that records work and submits it at Read or Sync: every compute call is
// deferred. How it treats Write is the bug under test: jump runs writes at
// once (ahead of the work queued before them, as WebGPU's queue.writeBuffer
// does to command buffers submitted later), lazy queues them without
// copying the caller's slice. With neither it is a correct backend.
type queued struct {
	compute.Backend
	mu         sync.Mutex
	pending    []func() error
	jump, lazy bool
}

func (q *queued) defer_(f func() error) error {
	q.mu.Lock()
	q.pending = append(q.pending, f)
	q.mu.Unlock()
	return nil
}

func (q *queued) flush() error {
	q.mu.Lock()
	p := q.pending
	q.pending = nil
	q.mu.Unlock()
	var first error
	for _, f := range p {
		if err := f(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (q *queued) Write(dst compute.Buffer, off int, src []float32) error {
	if dst == nil || off < 0 || off+len(src) > dst.Len() {
		return cpu.Write(dst, off, src) // its error
	}
	switch {
	case q.jump:
		return cpu.Write(dst, off, src)
	case q.lazy:
		return q.defer_(func() error { return cpu.Write(dst, off, src) })
	}
	c := append([]float32(nil), src...)
	return q.defer_(func() error { return cpu.Write(dst, off, c) })
}

func (q *queued) Read(src compute.Buffer, off int, dst []float32) error {
	if err := q.flush(); err != nil {
		return err
	}
	return cpu.Read(src, off, dst)
}

func (q *queued) Sync() error { return q.flush() }

func (q *queued) Copy(dst, src compute.Buffer) error {
	return q.defer_(func() error { return cpu.Copy(dst, src) })
}

func (q *queued) Fill(dst compute.Buffer, v float32) error {
	return q.defer_(func() error { return cpu.Fill(dst, v) })
}

func (q *queued) Reduce(dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
	srcs = append([]compute.Buffer(nil), srcs...)
	return q.defer_(func() error { return cpu.Reduce(dst, srcs, scale) })
}

func (q *queued) Step(k compute.OptKind, p *compute.StepParams, w, g compute.Buffer, st []compute.Buffer) error {
	pc := *p
	st = append([]compute.Buffer(nil), st...)
	return q.defer_(func() error { return cpu.Step(k, &pc, w, g, st) })
}

func (q *queued) Quantize(c compute.Compression, g, r, out compute.Buffer) error {
	return q.defer_(func() error { return cpu.Quantize(c, g, r, out) })
}

func (q *queued) Dequantize(c compute.Compression, in, out compute.Buffer) error {
	return q.defer_(func() error { return cpu.Dequantize(c, in, out) })
}

func TestQueuedBackends(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    *queued
	}{{"writes jump the queue", &queued{Backend: cpu, jump: true}}, {"writes keep the caller's slice", &queued{Backend: cpu, lazy: true}}} {
		if msgs := check(t, tc.q, (*suite).ordering); len(msgs) == 0 {
			t.Errorf("the suite did not notice: %s", tc.name)
		} else {
			t.Logf("%s: caught: %s", tc.name, msgs[0])
		}
	}
	// A correct queuing backend passes; errors of queued work surface at
	// the next Read or Sync, which the contract allows, so the error
	// checks are not run on it.
	for name, part := range map[string]func(*suite){
		"ordering": (*suite).ordering, "reduce": (*suite).reduce, "step": (*suite).step,
		"quantize": (*suite).quantize, "copy": (*suite).copyBuf, "fill": (*suite).fill, "writeRead": (*suite).writeRead,
	} {
		if msgs := check(t, &queued{Backend: cpu}, part); len(msgs) > 0 {
			t.Errorf("a correct queuing backend fails %s: %s", name, msgs[0])
		}
	}
}
