//go:build !cgo || js

package native

import "github.com/webkv/webkv/kvcore/compute"

// NewBackend returns ErrNoCgo: this build has no wgpu-native. Callers fall
// back to the CPU backend (compute.NewCPU) and should say so.
func NewBackend(opts *Options) (compute.Backend, error) { return nil, ErrNoCgo }
