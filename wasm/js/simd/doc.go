// Package simd runs the CPU backend's element loops in browsers on
// WebAssembly SIMD: reduce, every optimizer (fused with the reduce where a
// store does both) and the 2-bit and 1-bit quantizers, as a small
// hand-written simd128 module, kernels.wasm, that imports the Go program's
// own linear memory and is called with offsets into it, so nothing is
// copied. Go's wasm backend emits no SIMD; these kernels run four float32
// lanes at a time and give the reference loops' bits (see kernels.wat).
//
// Accel is the compute.Accelerator the browser runtime (wasm/js) gives its
// CPU backends:
//
//	accel, err := simd.Load(nil) // the kernels webkv.js instantiated
//	cpu := compute.NewCPU(&compute.CPUOptions{Accel: accel})
//
// kernels.wat is the source; kernels.wasm is generated from it by a small
// assembler for the WAT subset it uses (internal/wat):
//
//	go generate ./wasm/js/simd
//
// and TestKernelsWasmUpToDate checks that the committed bytes are what the
// text assembles to. wasm/js/build.sh ships it next to webkv.wasm as
// webkv-simd.wasm; webkv.js instantiates it where the browser validates
// SIMD and hands its exports to the Go program (globalThis.__webkvSIMD).
// The native tests run the module in wazero and compare every kernel with
// the CPU reference bit for bit; TestInBrowser runs the conformance suite
// and the same comparison in headless Chromium.
package simd

//go:generate go run gen.go
