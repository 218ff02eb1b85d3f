//go:build cgo && !js

package shaders_test

import (
	"errors"
	"fmt"
	"log"
	"math"
	"os"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/native"
)

// Example runs a reduction and an optimizer step on the WebGPU backend (a
// device opened by package native: a real GPU, or Mesa's lavapipe on a
// machine without one) and on kvcore's CPU backend, the reference, and
// compares them: the reduction is bit-exact, the SGD step agrees to float32
// rounding.
func Example() {
	var gpu compute.Backend
	nb, err := native.NewBackend(nil) // the device belongs to the backend
	switch {
	case err == nil:
		defer nb.Close()
		gpu = nb
	case errors.Is(err, native.ErrNoAdapter) && os.Getenv("WEBKV_ALLOW_NO_GPU") == "1":
		gpu = compute.NewCPU(nil) // no adapter, and told to accept that
	default:
		log.Fatal(err)
	}

	grads := [][]float32{{1, 2, 3, 4}, {0.5, 0.25, 0.125, 0}, {-1, 1, -1, 1}}
	weight := []float32{0.1, 0.2, 0.3, 0.4}
	run := func(be compute.Backend) (mean, w []float32, err error) {
		in := make([]compute.Buffer, len(grads))
		for i, g := range grads {
			if in[i], err = be.Alloc(len(g)); err != nil {
				return nil, nil, err
			}
			defer be.Free(in[i])
			if err := be.Write(in[i], 0, g); err != nil {
				return nil, nil, err
			}
		}
		sum, err := be.Alloc(4)
		if err != nil {
			return nil, nil, err
		}
		defer be.Free(sum)
		wb, err := be.Alloc(4)
		if err != nil {
			return nil, nil, err
		}
		defer be.Free(wb)
		mom, err := be.Alloc(4) // SGD's momentum state, zeroed
		if err != nil {
			return nil, nil, err
		}
		defer be.Free(mom)
		if err := be.Write(wb, 0, weight); err != nil {
			return nil, nil, err
		}
		// The mean of the three gradients, then w -= lr * (mean + momentum).
		if err := be.Reduce(sum, in, 1/float32(len(grads))); err != nil {
			return nil, nil, err
		}
		p := &compute.StepParams{LR: 0.5, RescaleGrad: 1, ClipGradient: -1, Momentum: 0.9, T: 1}
		if err := be.Step(compute.OptSGD, p, wb, sum, []compute.Buffer{mom}); err != nil {
			return nil, nil, err
		}
		mean, w = make([]float32, 4), make([]float32, 4)
		if err := be.Read(sum, 0, mean); err != nil {
			return nil, nil, err
		}
		return mean, w, be.Read(wb, 0, w)
	}
	gm, gw, err := run(gpu)
	if err != nil {
		log.Fatal(err)
	}
	cm, cw, err := run(compute.NewCPU(nil))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("mean %.4f\n", gm)
	fmt.Printf("weights after SGD %.4f\n", gw)
	same, near := true, true
	for i := range cm {
		same = same && math.Float32bits(gm[i]) == math.Float32bits(cm[i])
		near = near && math.Abs(float64(gw[i]-cw[i])) <= 1e-6*(1+math.Abs(float64(cw[i])))
	}
	fmt.Println("reduction bit-exact with the CPU backend:", same)
	fmt.Println("step within float32 rounding of the CPU backend:", near)
	// Output:
	// mean [0.1667 1.0833 0.7083 1.6667]
	// weights after SGD [0.0167 -0.3417 -0.0542 -0.4333]
	// reduction bit-exact with the CPU backend: true
	// step within float32 rounding of the CPU backend: true
}
