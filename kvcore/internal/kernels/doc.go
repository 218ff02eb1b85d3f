// Package kernels holds the CPU reference loops: the left-to-right reduce
// (with an AVX2 path on amd64 and unrolled loops for Go's wasm backend), the
// optimizer updates of MXNet 1.x, MXNet's 2bit/1bit gradient quantization
// and the float16 conversions. Each function's doc comment is its reference
// loop; the CPU backend (package compute) runs them over chunks of its
// arrays, and the WebGPU kernels in package shaders are checked against
// them.
//
// Everything here is single-threaded and allocates nothing. The wasm reduce
// loops (sum_wasm.go) are written by gensum.
package kernels

//go:generate go run ./gensum -o sum_wasm.go
