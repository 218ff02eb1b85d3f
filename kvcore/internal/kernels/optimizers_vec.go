//go:build (amd64 && !purego) || wasm

package kernels

// What the vector loops (AVX2 on amd64, unrolled on wasm) share.

// lambCoefs are the bias corrections LAMB divides by; without bias
// correction 1 and 1 (x/1 == x exactly).
func lambCoefs(p *Params) (c1, c2 float32) {
	if p.Flags&FlagBiasCorrection != 0 {
		return p.Coef1, p.Coef2
	}
	return 1, 1
}
