//go:build (amd64 && !purego) || wasm

package kernels

import "math"

// What the vector loops (AVX2 on amd64, unrolled on wasm) share. They have
// one loop per kernel: the reference loops' switches become values that
// change nothing, so every element runs the same instructions.

var inf32 = float32(math.Inf(1))

// bound is a clip bound as the vector loops take it: c when the reference
// clips (on and c >= 0), else +Inf: clip32(x, +Inf) and the AVX2 min/max
// pair return x unchanged, NaN included.
func bound(c float32, on bool) float32 {
	if on && c >= 0 {
		return c
	}
	return inf32
}

// lambCoefs are the bias corrections LAMB divides by; without bias
// correction 1 and 1 (x/1 == x exactly).
func lambCoefs(p *Params) (c1, c2 float32) {
	if p.Flags&FlagBiasCorrection != 0 {
		return p.Coef1, p.Coef2
	}
	return 1, 1
}

// keep32 is FTRL's gt::Map(abs(z), lamda1) as a factor: 1 where
// |z| > lamda1, else 0 (NaN: 0).
func keep32(z, l1 float32) float32 {
	if z > l1 || -z > l1 {
		return 1
	}
	return 0
}
