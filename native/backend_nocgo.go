//go:build !cgo || js

package native

import "github.com/webkv/webkv/kvcore"

// Backend is the native WebGPU backend; builds without cgo have none (see
// NewBackend), so it only holds the interface for the type to exist.
type Backend struct {
	kvcore.Backend
}

// NewBackend returns ErrNoCgo: this build has no wgpu-native. Callers fall
// back to kvcore.CPU() and should say so.
func NewBackend(opts *Options) (*Backend, error) { return nil, ErrNoCgo }

// IsCPU reports false: there is no adapter in this build.
func (b *Backend) IsCPU() bool { return false }

// Close does nothing: there is no device in this build.
func (b *Backend) Close() error { return nil }
