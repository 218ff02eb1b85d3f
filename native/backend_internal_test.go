//go:build cgo && !js

package native

import (
	"errors"
	"os"
	"testing"

	"github.com/cogentcore/webgpu/wgpu"
)

// TestBackendReleasesDevice: NewBackend's device belongs to the backend,
// and Close releases it (device, adapter and instance), which leaked before.
func TestBackendReleasesDevice(t *testing.T) {
	b, err := NewBackend(nil)
	if err != nil {
		if errors.Is(err, ErrNoAdapter) && os.Getenv("WEBKV_ALLOW_NO_GPU") == "1" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	if b.dev.Device == nil || b.dev.Adapter == nil || b.dev.Instance == nil {
		t.Fatal("backend without its device")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b.dev.Device != nil || b.dev.Adapter != nil || b.dev.Instance != nil {
		t.Errorf("Close left the device open: %+v", b.dev)
	}
}

// TestShaderOptions: an NVIDIA adapter copies big buffers as compute
// passes, any other adapter never; both carry the adapter's name.
func TestShaderOptions(t *testing.T) {
	for _, c := range []struct {
		vendor uint32
		want   uint64
	}{{vendorNVIDIA, 16 << 20}, {0x1002, 0}, {0x8086, 0}, {0x10005, 0}} { // NVIDIA, AMD, Intel, Mesa (lavapipe)
		d := &Device{Info: wgpu.AdapterInfo{VendorId: c.vendor, Name: "gpu", AdapterType: wgpu.AdapterTypeDiscreteGPU}}
		o := d.ShaderOptions()
		if o.CopyPassBytes != c.want || o.Name != d.Name() {
			t.Errorf("vendor %#x: %+v, want CopyPassBytes %d and name %q", c.vendor, o, c.want, d.Name())
		}
	}
}
