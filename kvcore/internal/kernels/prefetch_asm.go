//go:build (amd64 || arm64) && !purego

package kernels

import "unsafe"

// HasPrefetch is whether Prefetch does anything here: callers put the
// work of finding what to prefetch behind it, so that a build without
// one (wasm, whose runtime's size is budgeted) has none of that code.
const HasPrefetch = true

// Prefetch asks the CPU to bring the cache line at p into its caches
// (PREFETCHT0 on amd64, PRFM PLDL1KEEP on arm64): a hint, which never
// faults whatever p is (nil, freed, unmapped) and changes no memory. A
// pass over many small objects (a list call's keys and arrays, each its
// own allocation) calls it a few objects ahead, so their cache misses
// overlap with the work on the ones before (RATIONALE: "Why does a list
// call prefetch its keys' lines a few keys ahead?").
//
//go:noescape
func Prefetch(p unsafe.Pointer)

// PrefetchOff is Prefetch of the line off bytes after p, which may lie
// beyond p's object (a prefetch never reads it into the program): the
// address is made in assembly, where Go's pointer checks (checkptr, on
// with -race) do not refuse an address outside p's allocation.
//
//go:noescape
func PrefetchOff(p unsafe.Pointer, off uintptr)
