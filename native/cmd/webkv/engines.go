//go:build !js && !wasip1

package main

import (
	"fmt"
	"io"
	"math"
	"math/rand"
	"runtime"
	"time"

	"github.com/webkv/webkv/www/mnist"
)

// engines are the gradient engines of the workers of one process.
type engines struct {
	list    []mnist.Engine // nil: each worker uses the CPU reference
	backend string         // what computes, for the dashboard and the result line
	// cpuAdapter is true when the WebGPU adapter the check ran on is a
	// CPU rasterizer (lavapipe, llvmpipe, SwiftShader), whichever won.
	cpuAdapter bool
	close      func() error
}

// cpuEngines is the CPU reference for every worker.
func cpuEngines(why string) engines {
	return engines{backend: "cpu (" + why + ")", close: func() error { return nil }}
}

// chooseEngines returns the engines n workers training with batch
// samples a round compute on, saying which and why on out: with cpu set
// the CPU reference; otherwise it opens n engines on one WebGPU device
// (see openGPU), times a round's gradient work on them and on the CPU
// reference (benchEngines) and keeps the faster. Without an adapter, or
// when the WebGPU gradient differs from the reference, it is the CPU.
func chooseEngines(cpu bool, n, batch int, out io.Writer) engines {
	if cpu {
		return cpuEngines("chosen with -cpu")
	}
	e, err := openGPU(n, max(batch, 256))
	if err != nil {
		fmt.Fprintf(out, "no WebGPU for the native workers (%v): they compute on the CPU\n", err)
		return cpuEngines(fmt.Sprintf("no WebGPU: %v", err))
	}
	b, err := benchEngines(e.list[0], n, batch, runtime.GOMAXPROCS(0))
	if err != nil {
		fmt.Fprintf(out, "WebGPU on %s failed its check (%v): the workers compute on the CPU\n", e.backend, err)
		if cerr := e.close(); cerr != nil {
			fmt.Fprintf(out, "closing WebGPU: %v\n", cerr)
		}
		return cpuEngines("WebGPU failed its check")
	}
	fmt.Fprintln(out, b.summary(e.backend))
	if b.gpuFaster() {
		return e
	}
	if err := e.close(); err != nil {
		fmt.Fprintf(out, "closing WebGPU: %v\n", err)
	}
	c := cpuEngines(fmt.Sprintf("Go reference, %.0f× faster than WebGPU here", b.speedup()))
	c.cpuAdapter = e.cpuAdapter
	return c
}

// bench is what benchEngines measured: the time of one gradient step
// (set the weights, gradient of a batch, read it back) on the WebGPU
// engine and on the CPU reference, and what a demo round of Workers
// workers costs on each. The workers' WebGPU engines share one device and
// take turns (gpu.Options.Lock), so a round costs Workers steps there; on
// the CPU the workers run in parallel, Cores at a time.
type bench struct {
	GPUStep, CPUStep time.Duration
	Workers, Cores   int
	Batch            int
}

// GPURound and CPURound are a round's gradient work on each.
func (b bench) GPURound() time.Duration { return time.Duration(b.Workers) * b.GPUStep }
func (b bench) CPURound() time.Duration {
	waves := (b.Workers + max(b.Cores, 1) - 1) / max(b.Cores, 1)
	return time.Duration(waves) * b.CPUStep
}

func (b bench) gpuFaster() bool { return b.GPURound() < b.CPURound() }

// speedup is how many times faster the chosen side is.
func (b bench) speedup() float64 {
	g, c := float64(b.GPURound()), float64(b.CPURound())
	return math.Max(g, c) / math.Max(math.Min(g, c), 1)
}

func (b bench) summary(gpuName string) string {
	ms := func(d time.Duration) string {
		if d >= 100*time.Millisecond {
			return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000)
		}
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	pick := "the CPU"
	if b.gpuFaster() {
		pick = "WebGPU"
	}
	return fmt.Sprintf("engine check: a gradient step of %d samples takes %s on WebGPU (%s) and %s on the CPU (Go reference);\n"+
		"  a round of %d workers: %s on WebGPU (steps take turns on one device), %s on the CPU (%d cores) → the workers compute on %s, %.0f× faster here",
		b.Batch, ms(b.GPUStep), gpuName, ms(b.CPUStep), b.Workers, ms(b.GPURound()), ms(b.CPURound()), b.Cores, pick, b.speedup())
}

// benchBudget bounds each side's measurement (after a warm-up step): a
// CPU adapter takes a quarter of a second or more per step.
const benchBudget = 400 * time.Millisecond

// benchEngines times gpu and the CPU reference on the same seeded batch
// (set the weights, gradient, read back: a round's work) and checks that
// gpu's gradient matches the reference's, so the faster engine is also a
// correct one.
func benchEngines(gpu mnist.Engine, workers, batch, cores int) (bench, error) {
	b := bench{Workers: workers, Cores: cores, Batch: batch}
	r := rand.New(rand.NewSource(1))
	p, err := mnist.InitParams(mnist.MLP, 1)
	if err != nil {
		return b, err
	}
	x := make([]float32, batch*mnist.Pixels)
	y := make([]uint8, batch)
	for i := range x {
		if r.Intn(5) == 0 { // about as sparse as MNIST's digits
			x[i] = r.Float32()
		}
	}
	for i := range y {
		y[i] = uint8(r.Intn(10))
	}
	cpu, err := mnist.NewCPU(mnist.MLP)
	if err != nil {
		return b, err
	}
	gc, _ := mnist.NewParams(mnist.MLP)
	gg, _ := mnist.NewParams(mnist.MLP)
	step := func(e mnist.Engine, g *mnist.Params) (float64, error) {
		if err := e.SetParams(p); err != nil {
			return 0, err
		}
		loss, _, err := e.Grad(x, y, g)
		return loss, err
	}
	timeSteps := func(e mnist.Engine, g *mnist.Params) (time.Duration, error) {
		if _, err := step(e, g); err != nil { // warm-up: pipelines, caches
			return 0, err
		}
		t0 := time.Now()
		n := 0
		for n < 3 || time.Since(t0) < benchBudget {
			if _, err := step(e, g); err != nil {
				return 0, err
			}
			n++
			if time.Since(t0) > 4*benchBudget {
				break
			}
		}
		return time.Since(t0) / time.Duration(n), nil
	}
	if b.CPUStep, err = timeSteps(cpu, gc); err != nil {
		return b, err
	}
	if b.GPUStep, err = timeSteps(gpu, gg); err != nil {
		return b, err
	}
	lc, _ := step(cpu, gc)
	lg, err := step(gpu, gg)
	if err != nil {
		return b, err
	}
	if math.Abs(lg-lc) > 1e-4*math.Max(1, lc) {
		return b, fmt.Errorf("loss %g, CPU reference %g", lg, lc)
	}
	for k, tc := range gc.Tensors() {
		tg := gg.Tensors()[k]
		for j, v := range tc {
			if d := math.Abs(float64(tg[j] - v)); d > 1e-4+1e-3*math.Abs(float64(v)) || math.IsNaN(float64(tg[j])) {
				return b, fmt.Errorf("gradient %s[%d] = %g, CPU reference %g", mnist.TensorNames[k], j, tg[j], v)
			}
		}
	}
	return b, nil
}
