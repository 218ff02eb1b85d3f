package native

import (
	"errors"
)

// ErrNoAdapter is returned (wrapped) when the host offers no WebGPU adapter
// at all, not even a CPU one.
var ErrNoAdapter = errors.New("no WebGPU adapter")

// ErrNoCgo is returned by NewBackend in builds without cgo, where wgpu-native
// cannot be linked.
var ErrNoCgo = errors.New("built without cgo, so there is no native WebGPU backend " +
	"(rebuild with CGO_ENABLED=1, or use the CPU backend, compute.NewCPU)")
