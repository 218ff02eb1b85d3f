//go:build js

package main

import (
	"sync"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/wasm/js/simd"
)

// The CPU path. Stores that compute on the CPU ('local', the dist types'
// host side, 'device' without WebGPU) run on a CPU backend accelerated by
// the WebAssembly SIMD kernels that webkv.js instantiated over this
// program's memory (package simd): Go's wasm code has no SIMD, the kernels
// run four lanes at a time with the same bits. Without them (a browser
// without WebAssembly SIMD, load({simd: false})) the CPU backend runs Go's
// loops, and the store's backend name says "cpu" instead of
// "cpu+wasm-simd".
var (
	accelOnce sync.Once
	accel     *simd.Accel
)

// cpuBackend returns a new CPU backend for a store (each store pools its
// own freed buffers), accelerated where the kernels are loaded.
func cpuBackend() *compute.CPU {
	accelOnce.Do(func() {
		a, err := simd.Load(nil)
		if err != nil {
			// webkv.js has said why on the console.
			return
		}
		accel = a
	})
	if accel == nil {
		return compute.NewCPU(nil)
	}
	return compute.NewCPU(&compute.CPUOptions{Accel: accel})
}
