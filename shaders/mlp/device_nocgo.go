//go:build !cgo

package mlp

import "errors"

// ErrNoNativeGPU is returned by OpenEngine in builds without cgo, where
// wgpu-native cannot be linked. Under GOOS=js, create the device from the
// page and call NewGPU on it instead.
var ErrNoNativeGPU = errors.New("mlp: built without cgo, so there is no native WebGPU (rebuild with CGO_ENABLED=1)")

// OpenEngine always fails in builds without cgo; see the cgo version.
func OpenEngine(s Shape, maxBatch int) (Engine, string, func(), error) {
	return nil, "", nil, ErrNoNativeGPU
}

// OpenEngines always fails in builds without cgo; see the cgo version.
func OpenEngines(s Shape, maxBatch, n int) ([]Engine, string, func(), error) {
	return nil, "", nil, ErrNoNativeGPU
}
