//go:build wasip1

// Command wazeroreduce is a WASI reactor that runs kvcore's CPU reduce, so
// BenchmarkReduceWazero (tests/wasm_wazero_bench_test.go) can time the same
// kernel in wazero and natively. Built with -buildmode=c-shared for
// GOOS=wasip1; exports setup(nsrc, n) and reduce().
package main

//lint:file-ignore U1000 setup and reduce are exported to the host by //go:wasmexport, which staticcheck does not follow.

import (
	"github.com/webkv/webkv/kvcore/compute"
)

func main() {}

var (
	cpu  = compute.NewCPU(nil)
	dst  compute.Buffer
	srcs []compute.Buffer
)

// setup allocates nsrc input arrays and one output of n float32 each on the
// CPU backend and fills the inputs; it returns 0, or -1 on error.
//
//go:wasmexport setup
func setup(nsrc, n uint32) int32 {
	be := cpu
	var err error
	if dst, err = be.Alloc(int(n)); err != nil {
		return -1
	}
	srcs = srcs[:0]
	for i := range nsrc {
		b, err := be.Alloc(int(n))
		if err != nil {
			return -1
		}
		if be.Fill(b, float32(i+1)) != nil {
			return -1
		}
		srcs = append(srcs, b)
	}
	return 0
}

// reduce sums the inputs into the output once and returns dst[0], which
// is nsrc*(nsrc+1)/2 when the kernel is right.
//
//go:wasmexport reduce
func reduce() float32 {
	if cpu.Reduce(dst, srcs, 1) != nil {
		return -1
	}
	return dst.(*compute.CPUBuffer).Float32s()[0]
}
