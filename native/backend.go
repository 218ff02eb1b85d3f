//go:build cgo && !js

package native

import (
	"fmt"

	"github.com/webkv/webkv/shaders"
)

// Backend is the WebGPU compute.Backend of package shaders on a device of
// its own: it owns the device and releases it on Close.
type Backend struct {
	*shaders.Backend
	dev *Device
}

// NewBackend opens a device (see Open) and returns the WebGPU
// compute.Backend on it, named after the adapter, e.g.
// "webgpu: llvmpipe (LLVM 15.0.6, 256 bits) (vulkan, CPU)". Close releases
// the backend's buffers, then the device. On a CPU adapter (IsCPU) the CPU
// backend (compute.NewCPU) is usually faster: say so to the user and let
// them choose.
func NewBackend(opts *Options) (*Backend, error) {
	d, err := Open(opts)
	if err != nil {
		return nil, err
	}
	b, err := shaders.New(d.Device, d.ShaderOptions())
	if err != nil {
		d.Release()
		return nil, fmt.Errorf("native: %w", err)
	}
	return &Backend{Backend: b, dev: d}, nil
}

// ShaderOptions are the options of package shaders for d's adapter: its
// name, and on NVIDIA adapters copies of 16 MiB and more as compute
// passes (shaders.Options.CopyPassBytes; on an H200 a 64 MiB
// CopyBufferToBuffer moved 505-622 GB/s, the pass 945-1,130; at 8 MiB the
// two were even, at 1 MiB the pass was slower).
func (d *Device) ShaderOptions() *shaders.Options {
	o := &shaders.Options{Name: d.Name()}
	if d.Info.VendorId == vendorNVIDIA {
		o.CopyPassBytes = 16 << 20
	}
	return o
}

// vendorNVIDIA is NVIDIA's PCI vendor ID, as adapters report it.
const vendorNVIDIA = 0x10de

// IsCPU reports whether the backend's adapter is a CPU rasterizer.
func (b *Backend) IsCPU() bool { return b.dev.IsCPU() }

// Close waits for queued work, frees the backend's buffers and releases
// the device. The backend must not be used afterwards.
func (b *Backend) Close() error {
	err := b.Backend.Close()
	b.dev.Release()
	if err != nil {
		return fmt.Errorf("native: %w", err)
	}
	return nil
}
