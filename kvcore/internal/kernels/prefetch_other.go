//go:build !(amd64 || arm64) || purego

package kernels

import "unsafe"

// Prefetch is a no-op here (wasm has no prefetch instruction).
func Prefetch(p unsafe.Pointer) {}
