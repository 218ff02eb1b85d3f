//go:build cgo && !js

package mlp

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cogentcore/webgpu/wgpu"
)

// Device is a WebGPU device opened by OpenDevice.
type Device struct {
	Instance *wgpu.Instance
	Adapter  *wgpu.Adapter
	Device   *wgpu.Device
	Info     wgpu.AdapterInfo
}

// Name describes the adapter, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, CPU)".
func (d *Device) Name() string {
	name := "unnamed adapter"
	for _, s := range []string{d.Info.Name, d.Info.DriverDescription, d.Info.VendorName} {
		if s != "" && !strings.HasPrefix(s, "0x") { // wgpu-native v22 puts "0x0" in Name on Mesa
			name = s
			break
		}
	}
	kind := "GPU"
	if d.Info.AdapterType == wgpu.AdapterTypeCPU {
		kind = "CPU"
	}
	return fmt.Sprintf("%s (%s, %s)", name, d.Info.BackendType, kind)
}

// Release frees the device, adapter and instance.
func (d *Device) Release() {
	if d.Device != nil {
		d.Device.Release()
	}
	if d.Adapter != nil {
		d.Adapter.Release()
	}
	if d.Instance != nil {
		d.Instance.Release()
	}
}

// ErrNoAdapter is returned by OpenDevice when the host has no WebGPU adapter.
var ErrNoAdapter = errors.New("mlp: no WebGPU adapter (install a GPU driver, or Mesa's lavapipe: apt-get install mesa-vulkan-drivers libvulkan1)")

// OpenDevice opens a device on the default (high-performance) adapter
// through wgpu-native, with WebGPU's default limits: the MLP's largest
// buffer is 784×128 floats, far below them. Why no RequiredLimits: in
// cogentcore/webgpu v0.23.0 passing the adapter's GetLimits() back fails
// (an uninitialized extras chain), and the model does not need more.
// Package native's Open does the same with adapter ranking for the kvcore
// backend; this one keeps package mlp independent of it.
func OpenDevice() (*Device, error) {
	inst := wgpu.CreateInstance(nil)
	if inst == nil {
		return nil, fmt.Errorf("%w: CreateInstance failed", ErrNoAdapter)
	}
	ad, err := inst.RequestAdapter(&wgpu.RequestAdapterOptions{PowerPreference: wgpu.PowerPreferenceHighPerformance})
	if err != nil || ad == nil {
		inst.Release()
		if err == nil {
			return nil, ErrNoAdapter
		}
		return nil, fmt.Errorf("%w: %v", ErrNoAdapter, err)
	}
	dev, err := ad.RequestDevice(nil)
	if err != nil || dev == nil {
		ad.Release()
		inst.Release()
		if err == nil {
			err = errors.New("no device returned")
		}
		return nil, fmt.Errorf("mlp: request device: %w", err)
	}
	return &Device{Instance: inst, Adapter: ad, Device: dev, Info: ad.GetInfo()}, nil
}

// OpenEngine opens the host's WebGPU adapter and returns the GPU engine on
// it for batches of up to maxBatch, a description of the adapter, and a
// function that frees both. Callers fall back to NewCPU on error.
func OpenEngine(s Shape, maxBatch int) (Engine, string, func(), error) {
	d, err := OpenDevice()
	if err != nil {
		return nil, "", nil, err
	}
	g, err := NewGPU(d.Device, s, maxBatch)
	if err != nil {
		d.Release()
		return nil, "", nil, err
	}
	return g, "webgpu: " + d.Name(), func() { g.Release(); d.Release() }, nil
}

// OpenEngines opens one device and returns n GPU engines on it, for n
// workers in one process (the demo). Their steps are serialized by a lock:
// one device runs one step at a time anyway, and on a CPU adapter n
// devices would each start a thread pool and fight over the same cores
// (2 workers with a device each ran 6× slower per round than one worker).
func OpenEngines(s Shape, maxBatch, n int) ([]Engine, string, func(), error) {
	if n <= 0 {
		return nil, "", nil, fmt.Errorf("mlp: open engines: n = %d, want > 0", n)
	}
	d, err := OpenDevice()
	if err != nil {
		return nil, "", nil, err
	}
	var mu sync.Mutex
	var gs []*GPU
	release := func() {
		for _, g := range gs {
			g.Release()
		}
		d.Release()
	}
	es := make([]Engine, n)
	for i := range es {
		g, err := NewGPU(d.Device, s, maxBatch)
		if err != nil {
			release()
			return nil, "", nil, err
		}
		gs = append(gs, g)
		es[i] = &lockedEngine{mu: &mu, e: g}
	}
	return es, "webgpu: " + d.Name(), release, nil
}
