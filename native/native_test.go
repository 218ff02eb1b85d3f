//go:build cgo && !js

package native_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/webkv/webkv/native"
)

func TestMain(m *testing.M) {
	if dir, err := os.MkdirTemp("", "webkv-xdg-"); err == nil {
		os.Setenv("XDG_RUNTIME_DIR", dir)
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func open(t *testing.T, opts *native.Options) *native.Device {
	d, err := native.Open(opts)
	if err != nil {
		if os.Getenv("WEBKV_ALLOW_NO_GPU") == "1" && errors.Is(err, native.ErrNoAdapter) {
			t.Skipf("no adapter (WEBKV_ALLOW_NO_GPU=1): %v", err)
		}
		t.Fatal(err)
	}
	return d
}

// TestOpenRepeatedly opens and releases the device many times: requesting
// the adapter's GetLimits() back failed about half the time with
// cogentcore/webgpu v0.23.0; Open's limits must work every time, with the
// limits raised (not the fallback).
func TestOpenRepeatedly(t *testing.T) {
	for i := range 12 {
		d := open(t, nil)
		if i == 0 {
			t.Logf("adapter %s: maxBufferSize %d, maxStorageBufferBindingSize %d", d.Name(), d.MaxBufferSize, d.MaxStorageBufferBindingSize)
		}
		if d.LimitsFallback {
			t.Errorf("open %d: device created without the requested limits", i)
		}
		if d.MaxStorageBufferBindingSize < 128<<20 || d.MaxBufferSize < 256<<20 {
			t.Errorf("open %d: limits below WebGPU's defaults: %d, %d", i, d.MaxStorageBufferBindingSize, d.MaxBufferSize)
		}
		if strings.HasPrefix(d.Name(), "0x") || strings.HasPrefix(d.Name(), "unnamed") {
			t.Errorf("adapter name %q says nothing", d.Name())
		}
		d.Release()
	}
}

// TestRequireGPU: with RequireGPU, Open either finds a real GPU or fails
// with ErrNoAdapter, never hands out a CPU adapter.
func TestRequireGPU(t *testing.T) {
	d, err := native.Open(&native.Options{RequireGPU: true})
	if err != nil {
		if !errors.Is(err, native.ErrNoAdapter) {
			t.Fatalf("error does not wrap ErrNoAdapter: %v", err)
		}
		t.Logf("no GPU, as expected on this machine: %v", err)
		return
	}
	defer d.Release()
	if d.IsCPU() || d.Info.AdapterType == wgpu.AdapterTypeCPU {
		t.Fatalf("RequireGPU gave a CPU adapter: %s", d.Name())
	}
}

func TestNewBackend(t *testing.T) {
	open(t, nil).Release() // fail or skip as above when there is no adapter
	b, err := native.NewBackend(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.Name(), "webgpu: ") {
		t.Fatalf("backend name %q", b.Name())
	}
	buf, err := b.Alloc(5)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(buf, 1, []float32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, 5)
	if err := b.Read(buf, 0, got); err != nil {
		t.Fatal(err)
	}
	if got[0] != 0 || got[1] != 1 || got[3] != 3 || got[4] != 0 {
		t.Fatalf("read back %v", got)
	}
	// The backend owns its device: Close releases both, and the backend
	// refuses work afterwards; a second Close is harmless.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Alloc(5); err == nil {
		t.Error("Alloc after Close: no error")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
