package native

import (
	"errors"
)

// ErrNoAdapter is returned (wrapped) when the host offers no WebGPU adapter
// at all, not even a CPU one.
var ErrNoAdapter = errors.New("native: no WebGPU adapter")

// noDriverHint is what Open adds when there is no adapter at all.
const noDriverHint = "no GPU driver and no CPU Vulkan driver (on Debian/Ubuntu " +
	"`apt-get install mesa-vulkan-drivers libvulkan1` provides the lavapipe CPU adapter)"

// ErrNoCgo is returned by NewBackend in builds without cgo, where wgpu-native
// cannot be linked.
var ErrNoCgo = errors.New("native: built without cgo, so there is no native WebGPU backend " +
	"(rebuild with CGO_ENABLED=1, or use the CPU backend, compute.NewCPU)")
