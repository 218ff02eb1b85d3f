//go:build !cgo && !js && !wasip1

package main

import (
	"fmt"

	"github.com/webkv/webkv/native"
)

// openGPU fails in builds without cgo: wgpu-native cannot be linked.
func openGPU(n, maxBatch int) (engines, error) {
	return engines{}, fmt.Errorf("native: %w", native.ErrNoCgo)
}
