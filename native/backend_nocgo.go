//go:build !cgo || js

package native

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
)

// Backend is the native WebGPU backend; builds without cgo have none (see
// NewBackend), so it only holds the interface for the type to exist.
type Backend struct {
	compute.Backend
}

// NewBackend returns ErrNoCgo: this build has no wgpu-native. Callers fall
// back to the CPU backend (compute.NewCPU) and should say so.
func NewBackend(opts *Options) (*Backend, error) { return nil, fmt.Errorf("native: %w", ErrNoCgo) }

// IsCPU reports false: there is no adapter in this build.
func (b *Backend) IsCPU() bool { return false }

// Close does nothing: there is no device in this build.
func (b *Backend) Close() error { return nil }
