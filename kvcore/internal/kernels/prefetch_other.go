//go:build !(amd64 || arm64) || purego

package kernels

import "unsafe"

// HasPrefetch: see prefetch_asm.go.
const HasPrefetch = false

// Prefetch is a no-op here (wasm has no prefetch instruction).
func Prefetch(p unsafe.Pointer) {}

// PrefetchOff is a no-op here.
func PrefetchOff(p unsafe.Pointer, off uintptr) {}
