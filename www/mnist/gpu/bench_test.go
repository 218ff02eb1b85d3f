//go:build cgo && !js

package gpu

import (
	"math/rand"
	"testing"
	"time"

	"github.com/webkv/webkv/www/mnist"
)

// BenchmarkGrad times one training step (forward, backward, gradient
// readback) of the MNIST MLP at batch 64 on the WebGPU kernels and on the
// CPU reference, and reports the GPU's time as a multiple of the CPU's
// (gpu/cpu; below 1 means the GPU is faster). On lavapipe both run on the
// same CPU cores.
func BenchmarkGrad(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	d := openTestDevice(b)
	g, err := New(d.Device, mnist.MLP, &Options{MaxBatch: 64})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	p, _ := mnist.InitParams(mnist.MLP, 1)
	cpu, _ := mnist.NewCPU(mnist.MLP)
	cpu.SetParams(p)
	g.SetParams(p)
	x, y := randBatch(r, mnist.MLP, 64)
	grads, _ := mnist.NewParams(mnist.MLP)
	// CPU baseline first, a fixed number of steps.
	const cpuSteps = 50
	t0 := time.Now()
	for range cpuSteps {
		cpu.Grad(x, y, grads)
	}
	cpuPer := time.Since(t0) / cpuSteps
	b.ResetTimer()
	for range b.N {
		if _, _, err := g.Grad(x, y, grads); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	gpuPer := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(cpuPer.Microseconds())/1000, "cpu-ms/step")
	b.ReportMetric(float64(gpuPer)/float64(cpuPer), "gpu/cpu")
	b.ReportMetric(64/gpuPer.Seconds(), "gpu-samples/s")
}
