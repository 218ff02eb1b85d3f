package compute_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// stepBenches are the optimizers BenchmarkStep16M runs, weight decay on,
// with the float32 arrays each one's passes read and write per parameter
// (weight, gradient and states read; weight and states written). LAMB makes
// two passes (the norms of the whole arrays sit between them): the first
// reads w, g, mean, var and writes mean, var; the second reads w, mean, var
// and writes w.
var stepBenches = []struct {
	name   string
	spec   string
	floats int
}{
	{"sgd", `{"name":"sgd","learning_rate":0.1,"wd":0.0001}`, 3},
	{"sgd_momentum", `{"name":"sgd","learning_rate":0.1,"momentum":0.9,"wd":0.0001}`, 5},
	{"nag", `{"name":"nag","learning_rate":0.1,"momentum":0.9,"wd":0.0001}`, 5},
	{"adam", `{"name":"adam","learning_rate":0.001,"wd":0.0001}`, 7},
	{"adamw", `{"name":"adamw","learning_rate":0.001,"wd":0.01}`, 7},
	{"adagrad", `{"name":"adagrad","learning_rate":0.01,"wd":0.0001}`, 5},
	{"rmsprop", `{"name":"rmsprop","learning_rate":0.001,"wd":0.0001}`, 5},
	{"rmsprop_centered", `{"name":"rmsprop","learning_rate":0.001,"wd":0.0001,"centered":true}`, 9},
	{"adadelta", `{"name":"adadelta","wd":0.0001}`, 7},
	{"signsgd", `{"name":"signum","learning_rate":0.01,"momentum":0,"wd":0.0001}`, 3},
	{"signum", `{"name":"signum","learning_rate":0.01,"momentum":0.9,"wd":0.0001}`, 5},
	{"ftrl", `{"name":"ftrl","learning_rate":0.1,"wd":0.0001}`, 7},
	{"lamb", `{"name":"lamb","learning_rate":0.001,"wd":0.0001}`, 10},
}

// BenchmarkStep16M: one optimizer step over 16M parameters on the CPU
// backend (every core), per optimizer, against copy() of the same bytes with
// the same number of goroutines (metrics: see the comment at the top of
// bench_test.go). Goals (issue 12): Adam x_copy >= 0.60, every other
// optimizer >= 0.50.
func BenchmarkStep16M(b *testing.B) {
	be := compute.NewCPU(nil)
	rng := rand.New(rand.NewPCG(3, 4))
	// Weight, gradient and up to three states, shared by the sub-benchmarks;
	// one copy baseline as large as the largest step, used in part.
	bufs := benchBuffers(b, be, 5, bench16M, rng)
	maxFloats := 0
	for _, sb := range stepBenches {
		maxFloats = max(maxFloats, sb.floats)
	}
	full := newCopyBaseline(maxFloats * bench16M / 2)
	for _, sb := range stepBenches {
		b.Run(sb.name, func(b *testing.B) {
			opt, err := optimizer.Parse([]byte(sb.spec))
			if err != nil {
				b.Fatal(err)
			}
			var p compute.StepParams
			opt.Params("0", 1, 1, &p)
			kind := opt.Kind()
			w, g, st := bufs[0], bufs[1], bufs[2:2+kind.NumStates(&p)]
			if err := be.Write(w, 0, randSlice(rng, bench16M, 1)); err != nil {
				b.Fatal(err)
			}
			for _, s := range st {
				if err := be.Fill(s, 0); err != nil {
					b.Fatal(err)
				}
			}
			bytes := sb.floats * 4 * bench16M
			c := full.part(bytes / 8)
			var o opTimer
			b.SetBytes(int64(bytes))
			b.ResetTimer()
			t := 1
			for b.Loop() {
				opt.Params("0", t, t, &p)
				t++
				o.start()
				if err := be.Step(kind, &p, w, g, st); err != nil {
					b.Fatal(err)
				}
				o.stop()
				b.StopTimer()
				c.run()
				b.StartTimer()
			}
			report(b, bytes, c, &o)
		})
	}
}

// part returns a baseline that copies the first words of c's arrays.
func (c *copyBaseline) part(words int) *copyBaseline {
	return &copyBaseline{src: c.src[:words], dst: c.dst[:words]}
}

// benchQuantize times Quantize (or Dequantize) of 16M values on the CPU
// backend against copy() of the same bytes: quantize reads the gradient and
// the residual and writes the residual and the packed words; dequantize
// reads the words and writes the values.
func benchQuantize(b *testing.B, kind compute.CompressionKind, dequantize bool) {
	be := compute.NewCPU(nil)
	rng := rand.New(rand.NewPCG(5, 6))
	cm := compute.Compression{Kind: kind, Threshold: 0.5}
	n := bench16M
	packed := kind.PackedLen(n)
	bufs := benchBuffers(b, be, 2, n, rng)
	grad, res := bufs[0], bufs[1]
	out, err := be.Alloc(packed)
	if err != nil {
		b.Fatal(err)
	}
	defer be.Free(out)
	if err := be.Quantize(cm, grad, res, out); err != nil {
		b.Fatal(err)
	}
	bytes := 4 * (3*n + packed)
	if dequantize {
		bytes = 4 * (n + packed)
	}
	c := newCopyBaseline(bytes / 8)
	var o opTimer
	b.SetBytes(int64(bytes))
	b.ResetTimer()
	for b.Loop() {
		o.start()
		if dequantize {
			err = be.Dequantize(cm, out, grad)
		} else {
			err = be.Quantize(cm, grad, res, out)
		}
		if err != nil {
			b.Fatal(err)
		}
		o.stop()
		b.StopTimer()
		c.run()
		b.StartTimer()
	}
	report(b, bytes, c, &o)
}

// BenchmarkQuantize2Bit: 2bit quantization of 16M values with the residual
// (goal: x_copy >= 0.50).
func BenchmarkQuantize2Bit(b *testing.B) { benchQuantize(b, compute.Compress2Bit, false) }

// BenchmarkQuantize1Bit: 1bit quantization of 16M values with the residual
// (goal: x_copy >= 0.50).
func BenchmarkQuantize1Bit(b *testing.B) { benchQuantize(b, compute.Compress1Bit, false) }

// BenchmarkDequantize2Bit: unpacking 16M 2bit codes.
func BenchmarkDequantize2Bit(b *testing.B) { benchQuantize(b, compute.Compress2Bit, true) }

// BenchmarkDequantize1Bit: unpacking 16M 1bit codes.
func BenchmarkDequantize1Bit(b *testing.B) { benchQuantize(b, compute.Compress1Bit, true) }

// BenchmarkReduceStep4x16M: the fused reduce-and-step (ReduceStep) of 4
// gradients of 16M values into an Adam step, against copy() of the bytes it
// moves (4 inputs read; weight, mean and var read and written: 10 floats
// per parameter) and against Reduce into a merge buffer followed by Step,
// timed alternately in the same run: x_unfused is the unfused time over
// the fused time (the fused pass saves writing and reading the merged
// gradient: 10 instead of 12 array passes).
func BenchmarkReduceStep4x16M(b *testing.B) {
	be := compute.NewCPU(nil)
	rng := rand.New(rand.NewPCG(7, 8))
	bufs := benchBuffers(b, be, 8, bench16M, rng)
	w, st, ins, merge := bufs[0], bufs[1:3], bufs[3:7], bufs[7]
	for _, s := range st {
		if err := be.Fill(s, 0); err != nil {
			b.Fatal(err)
		}
	}
	opt, err := optimizer.Parse([]byte(`{"name":"adam","learning_rate":0.001,"wd":0.0001}`))
	if err != nil {
		b.Fatal(err)
	}
	var p compute.StepParams
	const bytes = 10 * 4 * bench16M
	c := newCopyBaseline(bytes / 8)
	var fused, unfused opTimer
	var unfusedTotal time.Duration
	b.SetBytes(bytes)
	b.ResetTimer()
	t := 1
	for b.Loop() {
		opt.Params("0", t, t, &p)
		t++
		fused.start()
		if err := be.ReduceStep(compute.OptAdam, &p, w, ins, 0.25, st); err != nil {
			b.Fatal(err)
		}
		fused.stop()
		b.StopTimer()
		c.run()
		t0 := time.Now()
		unfused.start()
		if err := be.Reduce(merge, ins, 0.25); err != nil {
			b.Fatal(err)
		}
		if err := be.Step(compute.OptAdam, &p, w, merge, st); err != nil {
			b.Fatal(err)
		}
		unfused.stop()
		unfusedTotal += time.Since(t0)
		b.StartTimer()
	}
	report(b, bytes, c, &fused)
	b.ReportMetric(unfusedTotal.Seconds()/b.Elapsed().Seconds(), "x_unfused")
	b.ReportMetric(unfused.best.Seconds()/fused.best.Seconds(), "x_unfused_best")
}
