//go:build cgo && !js

package native

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/shaders"
)

// NewBackend opens a device (see Open) and returns the WebGPU
// compute.Backend on it, named after the adapter, e.g.
// "webgpu: llvmpipe (LLVM 15.0.6, 256 bits) (vulkan, CPU)". On a CPU
// adapter (Device.IsCPU after Open) the CPU backend (compute.CPU) is usually
// faster: say so to the user and let them choose.
func NewBackend(opts *Options) (compute.Backend, error) {
	d, err := Open(opts)
	if err != nil {
		return nil, err
	}
	b, err := shaders.New(d.Device, &shaders.Options{Name: d.Name()})
	if err != nil {
		d.Release()
		return nil, fmt.Errorf("native: %w", err)
	}
	return b, nil
}
