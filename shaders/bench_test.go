//go:build cgo && !js

package shaders_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/shaders"
)

// Benchmarks of the WebGPU backend against the CPU backend on the same
// machine, in one run: ns/op and GB/s are the WebGPU backend's (bytes read
// plus written, work submitted and waited for), cpu-GB/s the CPU backend's
// on the same operation, and x-vs-cpu = cpu time / webgpu time (above 1:
// WebGPU is faster). copy-GB/s is the adapter's buffer-to-buffer copy
// bandwidth and of-copy-bw the kernel's fraction of it (the goal on a real
// GPU is >= 0.7). The adapter is logged; on a CPU adapter (lavapipe) the
// CPU backend is expected to win.
//
//	go test -run '^$' -bench . -benchtime 5x ./shaders/

const benchN = 1 << 24 // 16M float32 = 64 MiB per array

func benchData(n int) []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(r.NormFloat64())
	}
	return d
}

// timeCPU runs op once to warm up (first touch of fresh pages, pipeline
// builds), then iters times, and returns the time per op.
func timeCPU(iters int, op func() error) (time.Duration, error) {
	if err := op(); err != nil { // warm: first touch of fresh pages
		return 0, err
	}
	start := time.Now()
	for range iters {
		if err := op(); err != nil {
			return 0, err
		}
	}
	return time.Since(start) / time.Duration(iters), nil
}

// timeB is timeCPU over b.N operations inside the benchmark's timer,
// which it leaves stopped.
func timeB(b *testing.B, op func() error) time.Duration {
	b.Helper()
	b.ResetTimer()
	per, err := timeCPU(b.N, op)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	return per
}

// batchOps is how many operations batched issues per Sync.
const batchOps = 8

// batched returns op issued batchOps times, then be's Sync: the submit
// and the wait for the GPU are then not what is timed.
func batched(be compute.Backend, op func() error) func() error {
	return func() error {
		for range batchOps {
			if err := op(); err != nil {
				return err
			}
		}
		return be.Sync()
	}
}

func report(b *testing.B, bytes int64, gpuPerOp, cpuPerOp time.Duration) {
	b.ReportMetric(float64(bytes)/gpuPerOp.Seconds()/1e9, "GB/s")
	b.ReportMetric(float64(bytes)/cpuPerOp.Seconds()/1e9, "cpu-GB/s")
	b.ReportMetric(cpuPerOp.Seconds()/gpuPerOp.Seconds(), "x-vs-cpu")
}

// copyGBps measures how fast the adapter moves bytes from one buffer to
// another (read + written per second), the yardstick for kernel bandwidth:
// the better of Backend.Copy (CopyBufferToBuffer) and a compute pass that
// reads and writes each word once (a one-input Reduce), each issued
// batchOps times per Sync so that the submit and wait are not what is
// timed. Either can be the faster: lavapipe's Copy is a memcpy, four times
// its compute pass; NVIDIA's Vulkan driver moves a 64 MiB CopyBufferToBuffer
// at a half to a third of a compute pass's rate (on an H200, BenchmarkCopy
// /64MB: 505-622 against 945-1,130 GB/s; BenchmarkBatched: 694-703
// against 2,053-2,138).
func copyGBps(b *testing.B, g compute.Backend, bufs []compute.Buffer) float64 {
	best := 0.0
	for _, op := range []func() error{
		func() error { return g.Copy(bufs[1], bufs[0]) },
		func() error { return g.Reduce(bufs[1], bufs[:1], 0.5) },
	} {
		batch := batched(g, op)
		// At least 0.2 s of batches: a GPU idle at its lowest clock
		// (an H200 at 345 MHz) takes a while to raise it.
		if err := batch(); err != nil {
			b.Fatal(err)
		}
		n, start := 0, time.Now()
		for ; n < 3 || time.Since(start) < 200*time.Millisecond; n++ {
			if err := batch(); err != nil {
				b.Fatal(err)
			}
		}
		per := time.Since(start) / time.Duration(n)
		best = max(best, float64(batchOps*2*4*bufs[0].Len())/per.Seconds()/1e9)
	}
	return best
}

// reportVsCopy adds the kernel's bandwidth as a fraction of copy bandwidth.
func reportVsCopy(b *testing.B, bytes int64, gpuPerOp time.Duration, copyBW float64) {
	b.ReportMetric(copyBW, "copy-GB/s")
	b.ReportMetric(float64(bytes)/gpuPerOp.Seconds()/1e9/copyBW, "of-copy-bw")
}

func benchArrays(b *testing.B, be compute.Backend, k int, d []float32) []compute.Buffer {
	bufs := make([]compute.Buffer, k)
	for i := range bufs {
		buf, err := be.Alloc(len(d))
		if err != nil {
			b.Fatal(err)
		}
		if err := be.Write(buf, 0, d); err != nil {
			b.Fatal(err)
		}
		bufs[i] = buf
	}
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
	return bufs
}

// BenchmarkReduce4x16M: dst = 0.25*(a+b+c+d) over 16M float32.
func BenchmarkReduce4x16M(b *testing.B) {
	g := newBackend(b, nil)
	b.Logf("adapter: %s", g.Name())
	d := benchData(benchN)
	gb := benchArrays(b, g, 5, d)
	cb := benchArrays(b, compute.NewCPU(nil), 5, d)
	op := func(be compute.Backend, bufs []compute.Buffer) error {
		if err := be.Reduce(bufs[4], bufs[:4], 0.25); err != nil {
			return err
		}
		return be.Sync()
	}
	gpu := timeB(b, func() error { return op(g, gb) })
	cpu, err := timeCPU(max(b.N, 3), func() error { return op(compute.NewCPU(nil), cb) })
	if err != nil {
		b.Fatal(err)
	}
	report(b, 5*4*benchN, gpu, cpu)
	reportVsCopy(b, 5*4*benchN, gpu, copyGBps(b, g, gb))
}

// BenchmarkAdam16M: one Adam step over 16M parameters (reads w, g, mean,
// var; writes w, mean, var).
func BenchmarkAdam16M(b *testing.B) {
	g := newBackend(b, nil)
	b.Logf("adapter: %s", g.Name())
	d := benchData(benchN)
	gb := benchArrays(b, g, 4, d)
	cb := benchArrays(b, compute.NewCPU(nil), 4, d)
	for i := 2; i < 4; i++ { // zero moments
		if err := g.Fill(gb[i], 0); err != nil {
			b.Fatal(err)
		}
		if err := compute.NewCPU(nil).Fill(cb[i], 0); err != nil {
			b.Fatal(err)
		}
	}
	p := &compute.StepParams{LR: 1e-3, RescaleGrad: 1, ClipGradient: -1, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Coef1: 1e-3, T: 1}
	op := func(be compute.Backend, bufs []compute.Buffer) error {
		if err := be.Step(compute.OptAdam, p, bufs[0], bufs[1], bufs[2:]); err != nil {
			return err
		}
		return be.Sync()
	}
	gpu := timeB(b, func() error { return op(g, gb) })
	cpu, err := timeCPU(max(b.N, 3), func() error { return op(compute.NewCPU(nil), cb) })
	if err != nil {
		b.Fatal(err)
	}
	report(b, 7*4*benchN, gpu, cpu)
	reportVsCopy(b, 7*4*benchN, gpu, copyGBps(b, g, gb))
}

// BenchmarkCopy: Backend.Copy of 1, 8 and 64 MiB then Sync, as
// CopyBufferToBuffer (GB/s) and as a compute pass (Options.CopyPassBytes:
// pass-GB/s); x-pass = CopyBufferToBuffer's time over the pass's (above 1:
// the pass is faster on this adapter).
func BenchmarkCopy(b *testing.B) {
	for _, mb := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("%dMB", mb), func(b *testing.B) { benchCopy(b, mb<<20/4) })
	}
}

func benchCopy(b *testing.B, n int) {
	plain, pass := newBackend(b, nil), newBackend(b, &shaders.Options{CopyPassBytes: 1})
	b.Logf("adapter: %s", plain.Name())
	d := benchData(n)
	op := func(g compute.Backend, bufs []compute.Buffer) func() error {
		return func() error {
			if err := g.Copy(bufs[1], bufs[0]); err != nil {
				return err
			}
			return g.Sync()
		}
	}
	plainOp, passOp := op(plain, benchArrays(b, plain, 2, d)), op(pass, benchArrays(b, pass, 2, d))
	per := timeB(b, plainOp)
	passPer, err := timeCPU(max(b.N, 3), passOp)
	if err != nil {
		b.Fatal(err)
	}
	bytes := float64(2 * 4 * n)
	b.ReportMetric(bytes/per.Seconds()/1e9, "GB/s")
	b.ReportMetric(bytes/passPer.Seconds()/1e9, "pass-GB/s")
	b.ReportMetric(per.Seconds()/passPer.Seconds(), "x-pass")
}

// BenchmarkBatched: the kernels of BenchmarkReduce4x16M and
// BenchmarkAdam16M and the two copies of BenchmarkCopy/64MB, eight to a
// Sync, so that the submit and the wait for the GPU are not what is timed
// (the other benchmarks Sync after each operation, as a training step
// does): GB/s is the bytes the eight move over their time.
func BenchmarkBatched(b *testing.B) {
	g := newBackend(b, nil)
	pass := newBackend(b, &shaders.Options{CopyPassBytes: 1})
	b.Logf("adapter: %s", g.Name())
	d := benchData(benchN)
	gb, pb := benchArrays(b, g, 5, d), benchArrays(b, pass, 2, d)
	for _, m := range gb[2:4] { // Adam's moments start at zero
		if err := g.Fill(m, 0); err != nil {
			b.Fatal(err)
		}
	}
	p := &compute.StepParams{LR: 1e-3, RescaleGrad: 1, ClipGradient: -1, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Coef1: 1e-3, T: 1}
	for _, c := range []struct {
		name  string
		be    compute.Backend
		bytes int64
		op    func() error
	}{
		{"reduce4x16M", g, 5 * 4 * benchN, func() error { return g.Reduce(gb[4], gb[:4], 0.25) }},
		{"adam16M", g, 7 * 4 * benchN, func() error { return g.Step(compute.OptAdam, p, gb[0], gb[1], gb[2:4]) }},
		{"copy64MB-buffer", g, 2 * 4 * benchN, func() error { return g.Copy(gb[1], gb[0]) }},
		{"copy64MB-pass", pass, 2 * 4 * benchN, func() error { return pass.Copy(pb[1], pb[0]) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			per := timeB(b, batched(c.be, c.op))
			b.ReportMetric(float64(batchOps*c.bytes)/per.Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkUpload64MB: Backend.Write of 64 MiB then Sync (pooled mapped
// staging buffers), against Queue.WriteBuffer of the same bytes into the
// same buffer: x-vs-writebuffer = WriteBuffer time / Write time.
func BenchmarkUpload64MB(b *testing.B) {
	g := newBackend(b, nil)
	b.Logf("adapter: %s", g.Name())
	d := benchData(benchN)
	dst := benchArrays(b, g, 1, d)[0]
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := g.Write(dst, 0, d); err != nil {
			b.Fatal(err)
		}
		if err := g.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	q := g.Device().GetQueue()
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), len(d)*4)
	wb := dst.(interface{ WGPU() *wgpu.Buffer }).WGPU()
	iters := min(b.N, 3)
	start = time.Now()
	for range iters {
		if err := q.WriteBuffer(wb, 0, raw); err != nil {
			b.Fatal(err)
		}
		g.Device().Poll(true, nil)
	}
	base := time.Since(start) / time.Duration(iters)
	b.ReportMetric(float64(len(raw))/per.Seconds()/1e9, "GB/s")
	b.ReportMetric(float64(base.Microseconds())/1e3, "writebuffer-ms")
	b.ReportMetric(base.Seconds()/per.Seconds(), "x-vs-writebuffer")
}

// BenchmarkReadback64MB: Backend.Read of 64 MiB (copy to a pooled MapRead
// buffer, map, copy out), against the CPU backend's Read of the same size.
func BenchmarkReadback64MB(b *testing.B) {
	g := newBackend(b, nil)
	b.Logf("adapter: %s", g.Name())
	d := benchData(benchN)
	src := benchArrays(b, g, 1, d)[0]
	csrc := benchArrays(b, compute.NewCPU(nil), 1, d)[0]
	out := make([]float32, benchN)
	if err := g.Read(src, 0, out); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := g.Read(src, 0, out); err != nil {
			b.Fatal(err)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	cpu, err := timeCPU(max(b.N, 3), func() error { return compute.NewCPU(nil).Read(csrc, 0, out) })
	if err != nil {
		b.Fatal(err)
	}
	report(b, 4*benchN, per, cpu)
}

// BenchmarkReduceAdamFused4x16M: ReduceStep (4 gradients summed inside the
// Adam kernel) against Reduce then Step on the same backend:
// x-vs-unfused = unfused time / fused time.
func BenchmarkReduceAdamFused4x16M(b *testing.B) {
	g := newBackend(b, nil)
	b.Logf("adapter: %s", g.Name())
	d := benchData(benchN)
	bufs := benchArrays(b, g, 8, d) // w, mean, var, merged, 4 gradients
	for i := 1; i < 3; i++ {
		if err := g.Fill(bufs[i], 0); err != nil {
			b.Fatal(err)
		}
	}
	p := &compute.StepParams{LR: 1e-3, RescaleGrad: 1, ClipGradient: -1, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Coef1: 1e-3, T: 1}
	fused := func() error {
		if err := g.ReduceStep(compute.OptAdam, p, bufs[0], bufs[4:], 0.25, bufs[1:3]); err != nil {
			return err
		}
		return g.Sync()
	}
	unfused := func() error {
		if err := g.Reduce(bufs[3], bufs[4:], 0.25); err != nil {
			return err
		}
		if err := g.Step(compute.OptAdam, p, bufs[0], bufs[3], bufs[1:3]); err != nil {
			return err
		}
		return g.Sync()
	}
	per := timeB(b, fused)
	base, err := timeCPU(max(b.N, 3), unfused)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(10*4*benchN)/per.Seconds()/1e9, "GB/s")
	b.ReportMetric(base.Seconds()/per.Seconds(), "x-vs-unfused")
}

// BenchmarkStep200SmallKeys: one training step over 200 keys of 1024
// values (reduce of 4 gradients, then Adam, per key), recorded into one
// command buffer and submitted once: the per-dispatch overhead of the
// backend. Reported per key.
func BenchmarkStep200SmallKeys(b *testing.B) {
	g := newBackend(b, nil)
	b.Logf("adapter: %s", g.Name())
	const keys, n = 200, 1024
	d := benchData(n)
	type key struct{ w, m, v, merged compute.Buffer }
	ks := make([]key, keys)
	for i := range ks {
		bufs := benchArrays(b, g, 4, d)
		ks[i] = key{bufs[0], bufs[1], bufs[2], bufs[3]}
	}
	grads := benchArrays(b, g, 4, d)
	p := &compute.StepParams{LR: 1e-3, RescaleGrad: 1, ClipGradient: -1, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Coef1: 1e-3, T: 1}
	step := func() error {
		for _, k := range ks {
			if err := g.Reduce(k.merged, grads, 0.25); err != nil {
				return err
			}
			if err := g.Step(compute.OptAdam, p, k.w, k.merged, []compute.Buffer{k.m, k.v}); err != nil {
				return err
			}
		}
		return g.Sync()
	}
	b.ReportMetric(float64(timeB(b, step).Nanoseconds())/1e3/keys, "µs/key")
}
