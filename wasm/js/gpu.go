//go:build js

package main

import (
	"errors"
	"fmt"
	"sync"
	"syscall/js"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/shaders"
)

// gpuState is the page's one WebGPU device and the backend on it, attached
// to kvcore's gpu(0). It is opened on first need (a "device" store, or
// webkv.gpu()) and kept for the page's lifetime.
type gpuState struct {
	mu      sync.Mutex
	tried   bool
	be      *shaders.Backend
	dev     js.Value // the raw GPUDevice: error scopes, events, handed to the page
	adapter string
	limits  map[string]any
	reason  string // why there is no backend ("" when there is one)

	errMu   sync.Mutex
	lastErr error // first uncaptured WebGPU error not yet reported
	lost    error
}

var theGPU gpuState

// openGPU opens the device once. page is a GPUDevice the page gave in
// create's options (undefined: webkv requests its own). It never fails: a
// page without WebGPU gets be == nil and a reason.
func openGPU(page js.Value) (*gpuState, error) {
	g := &theGPU
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tried {
		if !page.IsUndefined() && !page.IsNull() && (g.be == nil || !page.Equal(g.dev)) {
			return g, badArg("webkv: create: option device is a different GPUDevice from the one webkv already uses (pass the same device to every create, or none)")
		}
		return g, nil
	}
	g.tried = true
	dev, adapter, err := requestDevice(page)
	if err != nil {
		g.reason = err.Error()
		return g, nil
	}
	g.dev, g.adapter = dev, adapter
	g.limits = map[string]any{}
	lim := dev.Get("limits")
	for _, n := range []string{"maxBufferSize", "maxStorageBufferBindingSize", "maxStorageBuffersPerShaderStage",
		"maxComputeWorkgroupsPerDimension", "maxComputeInvocationsPerWorkgroup"} {
		g.limits[n] = lim.Get(n).Float()
	}
	// The binding returns no errors on js: validation errors reach the
	// page only through this event. Keep the first for the next call.
	dev.Call("addEventListener", "uncapturederror", js.FuncOf(func(this js.Value, args []js.Value) any {
		msg := args[0].Get("error").Get("message").String()
		g.errMu.Lock()
		if g.lastErr == nil {
			g.lastErr = fmt.Errorf("webkv: WebGPU reported: %s: %w", msg, errWebGPU)
		}
		g.errMu.Unlock()
		emitAll("gpuerror", map[string]any{"message": msg})
		return nil
	}))
	dev.Get("lost").Call("then", js.FuncOf(func(this js.Value, args []js.Value) any {
		msg := args[0].Get("message").String()
		g.errMu.Lock()
		g.lost = fmt.Errorf("webkv: the WebGPU device was lost (%s): %w", msg, errWebGPU)
		g.errMu.Unlock()
		emitAll("devicelost", map[string]any{"message": msg})
		return nil
	}))
	// NewJS keeps the raw device to wrap its batches in error scopes, so
	// WebGPU validation errors come back from Sync and Read as Go errors.
	be, err := shaders.NewJS(dev, &shaders.Options{Name: adapter})
	if err != nil {
		g.reason = err.Error()
		return g, nil
	}
	g.be = be
	return g, nil
}

// takeErr returns (and clears) the first uncaptured WebGPU error since the
// last call, or the device-lost error (which stays).
func (g *gpuState) takeErr() error {
	g.errMu.Lock()
	defer g.errMu.Unlock()
	if g.lost != nil {
		return g.lost
	}
	err := g.lastErr
	g.lastErr = nil
	return err
}

// requestDevice asks navigator.gpu (or takes the page's device) for a device
// with the adapter's largest buffer and binding sizes: cogentcore/webgpu
// drops RequiredLimits on js, so this goes through syscall/js.
func requestDevice(page js.Value) (dev js.Value, name string, err error) {
	if !page.IsUndefined() && !page.IsNull() {
		if !isInstance(page, "GPUDevice") {
			return js.Value{}, "", badArg("webkv: create: option device must be a GPUDevice, got %s", typeName(page))
		}
		return page, "page-provided GPUDevice", nil
	}
	gpu := js.Global().Get("navigator").Get("gpu")
	if gpu.IsUndefined() || gpu.IsNull() {
		return js.Value{}, "", errors.New("this browser has no WebGPU (navigator.gpu is undefined; a secure context and a WebGPU-enabled browser are needed)")
	}
	opts := js.Global().Get("Object").New()
	opts.Set("powerPreference", "high-performance")
	ad, err := await(gpu.Call("requestAdapter", opts))
	if err != nil {
		return js.Value{}, "", fmt.Errorf("navigator.gpu.requestAdapter failed: %v", err)
	}
	if ad.IsNull() || ad.IsUndefined() {
		return js.Value{}, "", errors.New("navigator.gpu.requestAdapter found no WebGPU adapter")
	}
	name = adapterName(ad)
	al := ad.Get("limits")
	req := js.Global().Get("Object").New()
	for _, n := range []string{"maxBufferSize", "maxStorageBufferBindingSize", "maxStorageBuffersPerShaderStage"} {
		req.Set(n, al.Get(n))
	}
	desc := js.Global().Get("Object").New()
	desc.Set("requiredLimits", req)
	desc.Set("label", "webkv")
	dev, err = await(ad.Call("requestDevice", desc))
	if err != nil {
		return js.Value{}, "", fmt.Errorf("requestDevice on %s failed: %v", name, err)
	}
	return dev, name, nil
}

// adapterName describes an adapter from GPUAdapter.info (Chrome 127+, the
// older requestAdapterInfo is gone), e.g. "google swiftshader (fallback)".
func adapterName(ad js.Value) string {
	info := ad.Get("info")
	if info.IsUndefined() {
		return "unknown adapter"
	}
	s := ""
	for _, f := range []string{"vendor", "architecture", "device", "description"} {
		if v := info.Get(f); v.Type() == js.TypeString && v.String() != "" {
			if s != "" {
				s += " "
			}
			s += v.String()
		}
	}
	if s == "" {
		s = "unnamed adapter"
	}
	fb := info.Get("isFallbackAdapter")
	if fb.Type() != js.TypeBoolean {
		fb = ad.Get("isFallbackAdapter")
	}
	if fb.Type() == js.TypeBoolean && fb.Bool() {
		s += " (fallback adapter)"
	}
	return s
}

// await blocks the calling goroutine (never a js.FuncOf callback) until p
// settles; a rejection is returned as an error.
func await(p js.Value) (js.Value, error) {
	if p.Type() != js.TypeObject || p.Get("then").Type() != js.TypeFunction {
		return p, nil
	}
	type res struct {
		v   js.Value
		err error
	}
	ch := make(chan res, 1)
	ok := js.FuncOf(func(this js.Value, args []js.Value) any {
		v := js.Undefined()
		if len(args) > 0 {
			v = args[0]
		}
		ch <- res{v: v}
		return nil
	})
	bad := js.FuncOf(func(this js.Value, args []js.Value) any {
		msg := "rejected"
		if len(args) > 0 {
			msg = js.Global().Get("String").Invoke(args[0]).String()
		}
		ch <- res{err: errors.New(msg)}
		return nil
	})
	p.Call("then", ok, bad)
	r := <-ch
	ok.Release()
	bad.Release()
	return r.v, r.err
}

// jsBuffer has the layout of wgpu.Buffer on js (one js.Value field): the
// binding has no constructor from a js.Value, and a page's own GPUBuffer has
// to become a *wgpu.Buffer for shaders.Backend.WrapBuffer without a copy.
type jsBuffer struct{ v js.Value }

// A change of wgpu.Buffer's layout in another binding version fails here at
// compile time instead of corrupting memory.
var _ [unsafe.Sizeof(wgpu.Buffer{}) - unsafe.Sizeof(jsBuffer{})]byte
var _ [unsafe.Sizeof(jsBuffer{}) - unsafe.Sizeof(wgpu.Buffer{})]byte

func wgpuBuffer(v js.Value) *wgpu.Buffer {
	return (*wgpu.Buffer)(unsafe.Pointer(&jsBuffer{v: v}))
}

// GPUBufferUsage bits a wrapped buffer needs: STORAGE | COPY_SRC | COPY_DST.
const neededUsage = 0x80 | 0x04 | 0x08

// wrapGPUBuffer makes a page's GPUBuffer an array on gpu(0) with shape,
// after checking what the binding cannot check on js: device, size, usage.
func wrapGPUBuffer(op string, v js.Value, shape []int, n int) (*kvcore.Array, error) {
	g := &theGPU
	g.mu.Lock()
	be := g.be
	g.mu.Unlock()
	if be == nil {
		return nil, badArg("webkv: %s: a GPUBuffer was given but webkv has no WebGPU device (%s); open it with webkv.gpu() or a \"device\" store first, or pass Float32Arrays", op, g.reasonText())
	}
	size := v.Get("size").Float()
	if size < float64(n)*4 {
		return nil, badArg("webkv: %s: GPUBuffer has %v bytes, the key needs %d float32 values (%d bytes)", op, size, n, n*4)
	}
	if u := v.Get("usage").Int(); u&neededUsage != neededUsage {
		return nil, badArg("webkv: %s: GPUBuffer usage 0x%x lacks STORAGE|COPY_SRC|COPY_DST (0x%x)", op, u, neededUsage)
	}
	b, err := be.WrapBuffer(wgpuBuffer(v), n)
	if err != nil {
		return nil, fmt.Errorf("webkv: %s: %w", op, err)
	}
	a, err := kvcore.WrapBuffer(kvcore.GPU(0, be), b, shape...)
	if err != nil {
		return nil, fmt.Errorf("webkv: %s: %w", op, err)
	}
	return a, nil
}

func (g *gpuState) reasonText() string {
	if g.reason != "" {
		return g.reason
	}
	if !g.tried {
		return "no device store was created"
	}
	return "unknown reason"
}

// jsGPU is webkv.gpu(): opens the device if needed and describes it.
func jsGPU(this js.Value, args []js.Value) any {
	page := js.Undefined()
	if len(args) > 0 {
		page = args[0]
	}
	return promise(func() (any, error) {
		g, err := openGPU(page)
		if err != nil {
			return nil, err
		}
		return g.describe(), nil
	})
}

func (g *gpuState) describe() js.Value {
	g.mu.Lock()
	defer g.mu.Unlock()
	o := js.Global().Get("Object").New()
	o.Set("available", g.be != nil)
	if g.be != nil {
		o.Set("adapter", g.adapter)
		o.Set("backend", g.be.Name())
		o.Set("device", g.dev)
		o.Set("limits", js.ValueOf(g.limits))
	} else {
		o.Set("reason", g.reasonText())
	}
	return o
}
