//go:build !cgo || js

package native

import "github.com/webkv/webkv/kvcore"

// NewBackend returns ErrNoCgo: this build has no wgpu-native. Callers fall
// back to kvcore.CPU() and should say so.
func NewBackend(opts *Options) (kvcore.Backend, error) { return nil, ErrNoCgo }
