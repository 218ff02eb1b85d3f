// Package simd is webkv's CPU backend for browsers with WebAssembly SIMD:
// the CPU reference backend's element loops (reduce, every optimizer, the
// 2-bit and 1-bit quantizers) run by a small hand-written simd128 module,
// kernels.wasm, that imports the Go program's own linear memory and is
// called with offsets into it, so nothing is copied. Go's wasm backend
// emits no SIMD; these kernels run four float32 lanes at a time and give
// the reference's bits (see kernels.wat).
//
// kernels.wat is the source; kernels.wasm is generated from it:
//
//	go generate ./wasm/js/simd
//
// and checked by TestKernelsWasmUpToDate. wasm/js/build.sh ships it next to
// webkv.wasm as webkv-simd.wasm; webkv.js instantiates it when the browser
// validates SIMD and hands its exports to the Go program.
package simd

//go:generate go run gen.go
