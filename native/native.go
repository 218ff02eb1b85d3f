//go:build cgo && !js

package native

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cogentcore/webgpu/wgpu"
)

// noDriverHint is what Open adds when there is no adapter at all.
const noDriverHint = "no GPU driver and no CPU Vulkan driver (on Debian/Ubuntu " +
	"`apt-get install mesa-vulkan-drivers libvulkan1` provides the lavapipe CPU adapter)"

// Device is an open WebGPU device and the adapter it came from.
type Device struct {
	Instance *wgpu.Instance
	Adapter  *wgpu.Adapter
	Device   *wgpu.Device
	Info     wgpu.AdapterInfo
	// MaxBufferSize and MaxStorageBufferBindingSize are the limits the
	// device was created with (package shaders splits keys larger than the
	// binding size into several dispatches).
	MaxBufferSize               uint64
	MaxStorageBufferBindingSize uint64
	// LimitsFallback is true when the device had to be created without
	// requested limits (WebGPU defaults: 128 MiB bindings, 256 MiB buffers).
	LimitsFallback bool
}

// Name describes the adapter, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, CPU)".
func (d *Device) Name() string { return adapterName(d.Info) }

// IsCPU reports whether the adapter is a CPU rasterizer, on which the
// kvcore CPU backend is usually the faster choice.
func (d *Device) IsCPU() bool { return d.Info.AdapterType == wgpu.AdapterTypeCPU }

// Release frees the device, adapter and instance.
func (d *Device) Release() {
	if d.Device != nil {
		d.Device.Release()
		d.Device = nil
	}
	if d.Adapter != nil {
		d.Adapter.Release()
		d.Adapter = nil
	}
	if d.Instance != nil {
		d.Instance.Release()
		d.Instance = nil
	}
}

func adapterName(info wgpu.AdapterInfo) string {
	// wgpu-native v22 puts the device ID ("0x0") in Name and the real
	// device name in DriverDescription on Mesa drivers.
	name := "unnamed adapter"
	for _, s := range []string{info.Name, info.DriverDescription, info.VendorName} {
		if s != "" && !strings.HasPrefix(s, "0x") {
			name = s
			break
		}
	}
	kind := "unknown type"
	switch info.AdapterType {
	case wgpu.AdapterTypeDiscreteGPU:
		kind = "discrete GPU"
	case wgpu.AdapterTypeIntegratedGPU:
		kind = "integrated GPU"
	case wgpu.AdapterTypeCPU:
		kind = "CPU"
	}
	return fmt.Sprintf("%s (%s, %s)", name, info.BackendType, kind)
}

// rank orders adapters: real GPUs before CPU rasterizers, native APIs
// (Vulkan, Metal, D3D12) before GL. Lower is better.
func rank(info wgpu.AdapterInfo) int {
	r := 0
	switch info.AdapterType {
	case wgpu.AdapterTypeDiscreteGPU:
		r = 0
	case wgpu.AdapterTypeIntegratedGPU:
		r = 10
	case wgpu.AdapterTypeUnknown:
		r = 20 // virtual GPUs report unknown in wgpu-native v22
	case wgpu.AdapterTypeCPU:
		r = 30
	default:
		r = 25
	}
	switch info.BackendType {
	case wgpu.BackendTypeVulkan, wgpu.BackendTypeMetal, wgpu.BackendTypeD3D12:
	default:
		r += 5
	}
	return r
}

// Adapter describes one adapter the host offers.
type Adapter struct {
	Info wgpu.AdapterInfo
	Name string // as Device.Name
	Rank int    // Open's preference: lower is tried first
}

// Adapters lists the adapters Open chooses from, best first.
func Adapters() []Adapter {
	inst := wgpu.CreateInstance(nil)
	defer inst.Release()
	var out []Adapter
	for _, a := range inst.EnumerateAdapters(nil) {
		if a == nil {
			continue
		}
		info := a.GetInfo()
		out = append(out, Adapter{Info: info, Name: adapterName(info), Rank: rank(info)})
		a.Release()
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Rank < out[j].Rank })
	return out
}

// Open creates an instance, picks the best adapter and opens a device on
// it with the buffer limits webkv needs.
//
// Why not pass the adapter's GetLimits() as RequiredLimits: in
// cogentcore/webgpu v0.23.0 GetLimits leaves the extras chain uninitialized,
// so MaxPushConstantSize comes back as garbage and requesting it fails the
// device about half the time. Open starts from DefaultLimits() (everything
// "undefined") and raises only the two buffer limits, whose values
// GetLimits reads correctly; if that still fails it opens the device with
// no descriptor at all (WebGPU default limits), and package shaders then
// splits large keys into binding-sized pieces.
func Open(opts *Options) (*Device, error) {
	if opts == nil {
		opts = &Options{}
	}
	// nil: with a descriptor v0.23.0 leaves fields of the instance extras
	// uninitialized. So every backend is initialized, GL included; a host
	// whose libEGL finds no vendor library makes wgpu-native v22 abort here
	// (a Rust panic in wgpu-hal's egl.rs), which Go cannot recover.
	inst := wgpu.CreateInstance(nil)
	var cands []*wgpu.Adapter
	for _, a := range inst.EnumerateAdapters(nil) {
		if a != nil {
			cands = append(cands, a)
		}
	}
	if len(cands) == 0 {
		// Some platforms enumerate nothing but still answer a request.
		for _, o := range []*wgpu.RequestAdapterOptions{
			{PowerPreference: wgpu.PowerPreferenceHighPerformance},
			{ForceFallbackAdapter: true},
		} {
			if a, err := inst.RequestAdapter(o); err == nil && a != nil {
				cands = append(cands, a)
				break
			}
		}
	}
	type cand struct {
		a    *wgpu.Adapter
		info wgpu.AdapterInfo
	}
	var cs []cand
	for _, a := range cands {
		info := a.GetInfo()
		if opts.RequireGPU && info.AdapterType == wgpu.AdapterTypeCPU {
			a.Release()
			continue
		}
		cs = append(cs, cand{a, info})
	}
	if len(cs) == 0 {
		inst.Release()
		if opts.RequireGPU && len(cands) > 0 {
			return nil, fmt.Errorf("native: %w: only CPU adapters, and Options.RequireGPU is set", ErrNoAdapter)
		}
		return nil, fmt.Errorf("native: %w: %s", ErrNoAdapter, noDriverHint)
	}
	sort.SliceStable(cs, func(i, j int) bool { return rank(cs[i].info) < rank(cs[j].info) })
	var errs []error
	for i, c := range cs {
		d, err := openDevice(c.a, c.info)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", adapterName(c.info), err))
			c.a.Release()
			continue
		}
		for _, o := range cs[i+1:] {
			o.a.Release()
		}
		d.Instance = inst
		return d, nil
	}
	inst.Release()
	return nil, fmt.Errorf("native: no adapter gave a device: %w", errors.Join(errs...))
}

func openDevice(a *wgpu.Adapter, info wgpu.AdapterInfo) (*Device, error) {
	al := a.GetLimits().Limits // only the plain fields are trustworthy; see Open
	req := wgpu.DefaultLimits()
	if al.MaxStorageBufferBindingSize > 0 {
		req.MaxStorageBufferBindingSize = al.MaxStorageBufferBindingSize
	}
	if al.MaxBufferSize > 0 {
		req.MaxBufferSize = al.MaxBufferSize
	}
	d := &Device{Adapter: a, Info: info}
	dev, err := a.RequestDevice(&wgpu.DeviceDescriptor{
		Label:          "webkv",
		RequiredLimits: &wgpu.RequiredLimits{Limits: req},
	})
	if err == nil && dev != nil {
		d.Device = dev
		d.MaxBufferSize = req.MaxBufferSize
		d.MaxStorageBufferBindingSize = req.MaxStorageBufferBindingSize
		return d, nil
	}
	dev, err = a.RequestDevice(nil)
	if err != nil || dev == nil {
		if err == nil {
			err = errors.New("RequestDevice returned no device")
		}
		return nil, err
	}
	d.Device = dev
	d.LimitsFallback = true
	d.MaxBufferSize = 256 << 20
	d.MaxStorageBufferBindingSize = 128 << 20
	return d, nil
}
