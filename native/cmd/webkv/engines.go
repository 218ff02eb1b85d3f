//go:build !js && !wasip1

package main

import (
	"fmt"
	"io"

	"github.com/webkv/webkv/www/mnist"
)

// engines are the gradient engines of the workers of one process.
type engines struct {
	list    []mnist.Engine // nil: each worker uses the CPU reference
	backend string         // what computes, for the dashboard and the result line
	// cpuAdapter is true when the WebGPU adapter is a CPU rasterizer
	// (lavapipe, llvmpipe, SwiftShader): there the kernels compete with,
	// and usually lose to, the plain Go reference.
	cpuAdapter bool
	close      func() error
}

// chooseEngines returns n engines on one WebGPU device (see openGPU), or,
// with cpu set or without an adapter, the CPU reference, saying which and
// why on out.
func chooseEngines(cpu bool, n, maxBatch int, out io.Writer) engines {
	if cpu {
		return engines{backend: "cpu (chosen with -cpu)", close: func() error { return nil }}
	}
	e, err := openGPU(n, maxBatch)
	if err != nil {
		fmt.Fprintf(out, "no WebGPU for the native workers (%v): they compute on the CPU\n", err)
		return engines{backend: fmt.Sprintf("cpu (no WebGPU: %v)", err), close: func() error { return nil }}
	}
	if e.cpuAdapter {
		fmt.Fprintln(out, "note: the WebGPU adapter is a CPU rasterizer; with -cpu the workers use the Go reference, usually faster here")
	}
	return e
}
