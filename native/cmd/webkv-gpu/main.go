//go:build cgo && !js

// Command webkv-gpu shows which WebGPU adapter webkv's `device` store type
// would use on this machine, checks the WebGPU backend against the CPU
// backend on random data, and compares their speed, so a user can choose:
// on a CPU adapter (lavapipe, llvmpipe) the CPU backend is usually faster.
//
//	webkv-gpu [-n 4194304] [-inputs 4]
package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/native"
	"github.com/webkv/webkv/shaders"
)

func main() {
	n := flag.Int("n", 1<<22, "values per array")
	inputs := flag.Int("inputs", 4, "arrays summed by the reduce")
	flag.Parse()
	if err := run(*n, *inputs); err != nil {
		fmt.Fprintln(os.Stderr, "webkv-gpu:", err)
		os.Exit(1)
	}
}

func run(n, inputs int) error {
	if n < 1 || inputs < 1 {
		return errors.New("-n and -inputs must be at least 1")
	}
	fmt.Println("adapters, in webkv's order of preference:")
	for _, a := range native.Adapters() {
		fmt.Printf("  %s\n", a.Name)
	}
	d, err := native.Open(nil)
	if err != nil {
		return err
	}
	defer d.Release()
	fmt.Printf("device: %s (maxBufferSize %d MiB, maxStorageBufferBindingSize %d MiB%s)\n",
		d.Name(), d.MaxBufferSize>>20, d.MaxStorageBufferBindingSize>>20,
		map[bool]string{true: ", WebGPU default limits", false: ""}[d.LimitsFallback])
	gpu, err := shaders.New(d.Device, d.ShaderOptions())
	if err != nil {
		return err
	}
	cpu := compute.NewCPU(nil)
	r := rand.New(rand.NewPCG(rand.Uint64(), 1))
	data := make([][]float32, inputs+1)
	for i := range data {
		data[i] = make([]float32, n)
		for j := range data[i] {
			data[i][j] = float32(r.NormFloat64())
		}
	}
	load := func(be compute.Backend) ([]compute.Buffer, error) {
		bufs := make([]compute.Buffer, inputs+1)
		for i := range bufs {
			b, err := be.Alloc(n)
			if err != nil {
				return nil, err
			}
			if err := be.Write(b, 0, data[i]); err != nil {
				return nil, err
			}
			bufs[i] = b
		}
		return bufs, be.Sync()
	}
	gb, err := load(gpu)
	if err != nil {
		return err
	}
	cb, err := load(cpu)
	if err != nil {
		return err
	}
	scale := 1 / float32(inputs)
	reduce := func(be compute.Backend, bufs []compute.Buffer) error {
		if err := be.Reduce(bufs[inputs], bufs[:inputs], scale); err != nil {
			return err
		}
		return be.Sync()
	}
	gt, err := timeIt(func() error { return reduce(gpu, gb) })
	if err != nil {
		return err
	}
	ct, err := timeIt(func() error { return reduce(cpu, cb) })
	if err != nil {
		return err
	}
	got, want := make([]float32, n), make([]float32, n)
	if err := gpu.Read(gb[inputs], 0, got); err != nil {
		return err
	}
	if err := cpu.Read(cb[inputs], 0, want); err != nil {
		return err
	}
	worst := 0.0
	for i := range want {
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
	}
	bytes := float64((inputs + 1) * 4 * n)
	fmt.Printf("reduce %dx%d: webgpu %.2f GB/s, cpu %.2f GB/s, largest difference %g\n",
		inputs, n, bytes/gt.Seconds()/1e9, bytes/ct.Seconds()/1e9, worst)
	if worst > 1e-5 {
		return fmt.Errorf("the WebGPU backend disagrees with the CPU backend by %g", worst)
	}
	switch {
	case d.IsCPU() && ct < gt:
		fmt.Printf("advice: this is a CPU adapter and the CPU backend is %.1fx faster here: prefer the \"local\" store type (or a \"device\" store without a backend) for speed; \"device\" works, for testing.\n", gt.Seconds()/ct.Seconds())
	case gt < ct:
		fmt.Printf("advice: the WebGPU backend is %.1fx faster: use the \"device\" store type.\n", ct.Seconds()/gt.Seconds())
	default:
		fmt.Println("advice: both backends are about as fast here.")
	}
	return nil
}

// timeIt runs f once to warm up, then returns the best of three runs.
func timeIt(f func() error) (time.Duration, error) {
	if err := f(); err != nil {
		return 0, err
	}
	best := time.Duration(math.MaxInt64)
	for range 3 {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		best = min(best, time.Since(start))
	}
	return best, nil
}
