//go:build js

package shaders_test

import (
	"os"
	"syscall/js"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/compute/backendtest"
	"github.com/webkv/webkv/shaders"
)

// These tests run the GOOS=js build of the backend on the browser's WebGPU
// (TestInBrowser, in browser_test.go, builds this test binary and runs it in
// headless Chromium). Without navigator.gpu (e.g. under Node) they fail,
// unless WEBKV_ALLOW_NO_GPU=1.

// await blocks until promise settles (never call it from a js.FuncOf).
func await(promise js.Value) (js.Value, bool) {
	var res js.Value
	var ok bool
	done := make(chan struct{})
	resolve := js.FuncOf(func(_ js.Value, args []js.Value) any {
		res, ok = args[0], true
		close(done)
		return nil
	})
	defer resolve.Release()
	reject := js.FuncOf(func(_ js.Value, args []js.Value) any {
		res = args[0]
		close(done)
		return nil
	})
	defer reject.Release()
	promise.Call("then", resolve, reject)
	<-done
	return res, ok
}

var jsDev js.Value

// gpuDevice requests a device with the adapter's buffer limits through
// syscall/js (cogentcore/webgpu v0.23.0 drops RequiredLimits on js).
func gpuDevice(t *testing.T) js.Value {
	if jsDev.Truthy() {
		return jsDev
	}
	fail := t.Fatalf
	if os.Getenv("WEBKV_ALLOW_NO_GPU") == "1" {
		fail = t.Skipf
	}
	gpu := js.Global().Get("navigator").Get("gpu")
	if !gpu.Truthy() {
		fail("no navigator.gpu: this JavaScript host has no WebGPU")
	}
	ad, ok := await(gpu.Call("requestAdapter"))
	if !ok || !ad.Truthy() {
		fail("navigator.gpu.requestAdapter gave no adapter")
	}
	lim := ad.Get("limits")
	dev, ok := await(ad.Call("requestDevice", map[string]any{
		"requiredLimits": map[string]any{
			"maxStorageBufferBindingSize": lim.Get("maxStorageBufferBindingSize"),
			"maxBufferSize":               lim.Get("maxBufferSize"),
		},
	}))
	if !ok || !dev.Truthy() {
		t.Fatalf("requestDevice failed: %v", dev)
	}
	jsDev = dev
	return dev
}

func newJSBackend(t *testing.T) *shaders.Backend {
	dev := gpuDevice(t)
	b, err := shaders.NewJS(dev, &shaders.Options{Name: "browser WebGPU"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() }) // an error scope test may leave its error to Close
	return b
}

func TestConformanceJS(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) compute.Backend { return newJSBackend(t) }, backendtest.Short())
}

// TestErrorScopeJS checks that a validation error of queued work reaches
// Sync on js, where the binding itself returns no errors: binding one
// buffer as both inputs of a step is caught before recording, so this
// provokes an error the backend cannot see coming, a copy past the end of
// a wrapped buffer that claims more words than it has.
func TestErrorScopeJS(t *testing.T) {
	b := newJSBackend(t)
	small, err := b.Alloc(4)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(); err != nil {
		t.Fatalf("Sync before the bad call: %v", err)
	}
	// WrapBuffer cannot check sizes on js (no GetSize): it trusts n.
	liar, err := b.WrapBuffer(small.(*shaders.Buffer).WGPU(), 1024)
	if err != nil {
		t.Fatal(err)
	}
	big, err := b.Alloc(1024)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Copy(big, liar); err != nil {
		t.Fatalf("Copy returned an error before Sync: %v", err)
	}
	if err := b.Sync(); err == nil {
		t.Fatal("Sync returned no error for a copy past the end of a buffer")
	} else {
		t.Logf("error as expected: %v", err)
	}
	if err := b.Sync(); err != nil {
		t.Fatalf("the error was returned twice: %v", err)
	}
}
