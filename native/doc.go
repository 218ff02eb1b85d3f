// Package native opens a WebGPU device on the host through wgpu-native
// (github.com/cogentcore/webgpu, cgo) for webkv's `device` store type, for
// the demo's native workers and for native apps: it is webkv's one device
// bring-up, and ErrNoAdapter its one "no adapter" error.
//
// Open prefers a real GPU adapter (discrete, then integrated, then virtual)
// and falls back to a CPU Vulkan adapter (Mesa's lavapipe/llvmpipe), so the
// same code runs on machines without a GPU. When no adapter exists at all it
// returns ErrNoAdapter with a hint on what to install. NewBackend wraps a
// device of its own in the WebGPU compute.Backend of package shaders and
// releases it on Close.
//
// Adapters lists what Open chooses from; the command webkv-gpu
// (native/cmd/webkv-gpu) prints it, checks the WebGPU backend against the
// CPU backend and compares their speed, and says which one to prefer. The
// command webkv (native/cmd/webkv: relay, worker, demo) runs the demo's
// workers on a device opened here.
//
// The package needs cgo. Built without cgo (CGO_ENABLED=0, GOOS=wasip1) it
// still compiles, and NewBackend returns ErrNoCgo so callers can fall back to
// the CPU backend (compute.NewCPU) and say so.
package native
