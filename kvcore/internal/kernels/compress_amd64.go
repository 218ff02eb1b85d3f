//go:build amd64 && !purego

package kernels

// The AVX2 quantization loops (compress_amd64.s). Each takes whole words
// only: out has one word per 16 (2bit) or 32 (1bit) values of g and r, and
// returns how many words it did (0 without AVX2). Dequantization writes
// outputs of ntMin values or more with non-temporal stores, as the reduce
// does: a fresh output far larger than the caches costs no read for
// ownership then.

import "unsafe"

func quantize2Vec(out, g, r []float32, pos, neg float32) int {
	if !hasAVX2 || len(out) == 0 {
		return 0
	}
	g, r = g[:16*len(out)], r[:16*len(out)]
	quantize2AVX2(&out[0], &g[0], &r[0], len(out), pos, neg)
	return len(out)
}

func quantize1Vec(out, g, r []float32, t float32) int {
	if !hasAVX2 || len(out) == 0 {
		return 0
	}
	g, r = g[:32*len(out)], r[:32*len(out)]
	quantize1AVX2(&out[0], &g[0], &r[0], len(out), t)
	return len(out)
}

func dequantize2Vec(out, in []float32, vals *[4]float32) int {
	if !hasAVX2 || len(in) == 0 {
		return 0
	}
	out = out[:16*len(in)]
	t := [8]float32{vals[0], vals[1], vals[2], vals[3], vals[0], vals[1], vals[2], vals[3]}
	if len(out) >= ntMin && uintptr(unsafe.Pointer(&out[0]))%32 == 0 {
		dequantize2AVX2NT(&out[0], &in[0], len(in), &t)
	} else {
		dequantize2AVX2(&out[0], &in[0], len(in), &t)
	}
	return len(in)
}

func dequantize1Vec(out, in []float32, vals *[2]float32) int {
	if !hasAVX2 || len(in) == 0 {
		return 0
	}
	out = out[:32*len(in)]
	t := [8]float32{vals[0], vals[1], vals[0], vals[1], vals[0], vals[1], vals[0], vals[1]}
	if len(out) >= ntMin && uintptr(unsafe.Pointer(&out[0]))%32 == 0 {
		dequantize1AVX2NT(&out[0], &in[0], len(in), &t)
	} else {
		dequantize1AVX2(&out[0], &in[0], len(in), &t)
	}
	return len(in)
}

//go:noescape
func quantize2AVX2(out *float32, gr, r *float32, words int, pos, neg float32)

//go:noescape
func quantize1AVX2(out *float32, gr, r *float32, words int, t float32)

//go:noescape
func dequantize2AVX2(out, in *float32, words int, table *[8]float32)

//go:noescape
func dequantize1AVX2(out, in *float32, words int, table *[8]float32)

//go:noescape
func dequantize2AVX2NT(out, in *float32, words int, table *[8]float32)

//go:noescape
func dequantize1AVX2NT(out, in *float32, words int, table *[8]float32)
