//go:build amd64 && !purego

package kernels

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

var hasAVX2 = cpu.X86.HasAVX2

// sum4sVec sums the leading multiple of 8 elements with AVX2 and returns how
// many it did (0 without AVX2). VADDPS and VMULPS are the same IEEE
// operations, in the same order, as the scalar loop: the bits are equal.
func sum4sVec(d, a, b, c, e []float32, s float32) int {
	m := len(d) &^ 7
	if !hasAVX2 || m == 0 {
		return 0
	}
	if m >= ntMin && uintptr(unsafe.Pointer(&d[0]))%32 == 0 {
		sum4sAVX2NT(&d[0], &a[0], &b[0], &c[0], &e[0], m/8, s)
	} else {
		sum4sAVX2(&d[0], &a[0], &b[0], &c[0], &e[0], m/8, s)
	}
	return m
}

// ntMin is the chunk length from which the output is written with
// non-temporal stores: far beyond the last-level cache, where keeping the
// output in cache buys nothing and its read for ownership costs a sixth of
// the traffic.
const ntMin = 1 << 20

//go:noescape
func sum4sAVX2(d, a, b, c, e *float32, blocks int, s float32)

//go:noescape
func sum4sAVX2NT(d, a, b, c, e *float32, blocks int, s float32)
