//go:build wasm

package kernels

import "unsafe"

// Go's wasm backend returns to a br_table dispatch at the top of the
// function on every loop iteration, so a plain element loop is bound by that
// dispatch, not by memory: unrolling 32 elements per iteration brings the
// 4-input reduce in wazero from about 8x native to about 3x (BenchmarkReduceWazero). Same
// arithmetic, same order, same bits as cpu_sum.go (generated loops: keep
// them in step with it).

func sum2s(d, a, b []float32, s float32) {
	n := len(d) &^ 31
	a = a[:len(d)]
	b = b[:len(d)]
	for i := 0; i < n; i += 32 {
		dd := (*[32]float32)(d[i : i+32])
		aa := (*[32]float32)(a[i : i+32])
		bb := (*[32]float32)(b[i : i+32])
		dd[0] = (aa[0] + bb[0]) * s
		dd[1] = (aa[1] + bb[1]) * s
		dd[2] = (aa[2] + bb[2]) * s
		dd[3] = (aa[3] + bb[3]) * s
		dd[4] = (aa[4] + bb[4]) * s
		dd[5] = (aa[5] + bb[5]) * s
		dd[6] = (aa[6] + bb[6]) * s
		dd[7] = (aa[7] + bb[7]) * s
		dd[8] = (aa[8] + bb[8]) * s
		dd[9] = (aa[9] + bb[9]) * s
		dd[10] = (aa[10] + bb[10]) * s
		dd[11] = (aa[11] + bb[11]) * s
		dd[12] = (aa[12] + bb[12]) * s
		dd[13] = (aa[13] + bb[13]) * s
		dd[14] = (aa[14] + bb[14]) * s
		dd[15] = (aa[15] + bb[15]) * s
		dd[16] = (aa[16] + bb[16]) * s
		dd[17] = (aa[17] + bb[17]) * s
		dd[18] = (aa[18] + bb[18]) * s
		dd[19] = (aa[19] + bb[19]) * s
		dd[20] = (aa[20] + bb[20]) * s
		dd[21] = (aa[21] + bb[21]) * s
		dd[22] = (aa[22] + bb[22]) * s
		dd[23] = (aa[23] + bb[23]) * s
		dd[24] = (aa[24] + bb[24]) * s
		dd[25] = (aa[25] + bb[25]) * s
		dd[26] = (aa[26] + bb[26]) * s
		dd[27] = (aa[27] + bb[27]) * s
		dd[28] = (aa[28] + bb[28]) * s
		dd[29] = (aa[29] + bb[29]) * s
		dd[30] = (aa[30] + bb[30]) * s
		dd[31] = (aa[31] + bb[31]) * s
	}
	for i := n; i < len(d); i++ {
		d[i] = (a[i] + b[i]) * s
	}
}

func sum3s(d, a, b, c []float32, s float32) {
	n := len(d) &^ 31
	a = a[:len(d)]
	b = b[:len(d)]
	c = c[:len(d)]
	for i := 0; i < n; i += 32 {
		dd := (*[32]float32)(d[i : i+32])
		aa := (*[32]float32)(a[i : i+32])
		bb := (*[32]float32)(b[i : i+32])
		cc := (*[32]float32)(c[i : i+32])
		dd[0] = ((aa[0] + bb[0]) + cc[0]) * s
		dd[1] = ((aa[1] + bb[1]) + cc[1]) * s
		dd[2] = ((aa[2] + bb[2]) + cc[2]) * s
		dd[3] = ((aa[3] + bb[3]) + cc[3]) * s
		dd[4] = ((aa[4] + bb[4]) + cc[4]) * s
		dd[5] = ((aa[5] + bb[5]) + cc[5]) * s
		dd[6] = ((aa[6] + bb[6]) + cc[6]) * s
		dd[7] = ((aa[7] + bb[7]) + cc[7]) * s
		dd[8] = ((aa[8] + bb[8]) + cc[8]) * s
		dd[9] = ((aa[9] + bb[9]) + cc[9]) * s
		dd[10] = ((aa[10] + bb[10]) + cc[10]) * s
		dd[11] = ((aa[11] + bb[11]) + cc[11]) * s
		dd[12] = ((aa[12] + bb[12]) + cc[12]) * s
		dd[13] = ((aa[13] + bb[13]) + cc[13]) * s
		dd[14] = ((aa[14] + bb[14]) + cc[14]) * s
		dd[15] = ((aa[15] + bb[15]) + cc[15]) * s
		dd[16] = ((aa[16] + bb[16]) + cc[16]) * s
		dd[17] = ((aa[17] + bb[17]) + cc[17]) * s
		dd[18] = ((aa[18] + bb[18]) + cc[18]) * s
		dd[19] = ((aa[19] + bb[19]) + cc[19]) * s
		dd[20] = ((aa[20] + bb[20]) + cc[20]) * s
		dd[21] = ((aa[21] + bb[21]) + cc[21]) * s
		dd[22] = ((aa[22] + bb[22]) + cc[22]) * s
		dd[23] = ((aa[23] + bb[23]) + cc[23]) * s
		dd[24] = ((aa[24] + bb[24]) + cc[24]) * s
		dd[25] = ((aa[25] + bb[25]) + cc[25]) * s
		dd[26] = ((aa[26] + bb[26]) + cc[26]) * s
		dd[27] = ((aa[27] + bb[27]) + cc[27]) * s
		dd[28] = ((aa[28] + bb[28]) + cc[28]) * s
		dd[29] = ((aa[29] + bb[29]) + cc[29]) * s
		dd[30] = ((aa[30] + bb[30]) + cc[30]) * s
		dd[31] = ((aa[31] + bb[31]) + cc[31]) * s
	}
	for i := n; i < len(d); i++ {
		d[i] = ((a[i] + b[i]) + c[i]) * s
	}
}

func sum4s(d, a, b, c, e []float32, s float32) {
	n := len(d) &^ 31
	a, b, c, e = a[:len(d)], b[:len(d)], c[:len(d)], e[:len(d)]
	if n > 0 {
		// One bounds check per input for the whole unrolled part.
		_, _, _, _, _ = d[n-1], a[n-1], b[n-1], c[n-1], e[n-1]
		pd, pa, pb, pc, pe := unsafe.Pointer(&d[0]), unsafe.Pointer(&a[0]), unsafe.Pointer(&b[0]), unsafe.Pointer(&c[0]), unsafe.Pointer(&e[0])
		for off := uintptr(0); off < uintptr(n)*4; off += 128 {
			dd := (*[32]float32)(unsafe.Add(pd, off))
			aa := (*[32]float32)(unsafe.Add(pa, off))
			bb := (*[32]float32)(unsafe.Add(pb, off))
			cc := (*[32]float32)(unsafe.Add(pc, off))
			ee := (*[32]float32)(unsafe.Add(pe, off))
			dd[0] = (((aa[0] + bb[0]) + cc[0]) + ee[0]) * s
			dd[1] = (((aa[1] + bb[1]) + cc[1]) + ee[1]) * s
			dd[2] = (((aa[2] + bb[2]) + cc[2]) + ee[2]) * s
			dd[3] = (((aa[3] + bb[3]) + cc[3]) + ee[3]) * s
			dd[4] = (((aa[4] + bb[4]) + cc[4]) + ee[4]) * s
			dd[5] = (((aa[5] + bb[5]) + cc[5]) + ee[5]) * s
			dd[6] = (((aa[6] + bb[6]) + cc[6]) + ee[6]) * s
			dd[7] = (((aa[7] + bb[7]) + cc[7]) + ee[7]) * s
			dd[8] = (((aa[8] + bb[8]) + cc[8]) + ee[8]) * s
			dd[9] = (((aa[9] + bb[9]) + cc[9]) + ee[9]) * s
			dd[10] = (((aa[10] + bb[10]) + cc[10]) + ee[10]) * s
			dd[11] = (((aa[11] + bb[11]) + cc[11]) + ee[11]) * s
			dd[12] = (((aa[12] + bb[12]) + cc[12]) + ee[12]) * s
			dd[13] = (((aa[13] + bb[13]) + cc[13]) + ee[13]) * s
			dd[14] = (((aa[14] + bb[14]) + cc[14]) + ee[14]) * s
			dd[15] = (((aa[15] + bb[15]) + cc[15]) + ee[15]) * s
			dd[16] = (((aa[16] + bb[16]) + cc[16]) + ee[16]) * s
			dd[17] = (((aa[17] + bb[17]) + cc[17]) + ee[17]) * s
			dd[18] = (((aa[18] + bb[18]) + cc[18]) + ee[18]) * s
			dd[19] = (((aa[19] + bb[19]) + cc[19]) + ee[19]) * s
			dd[20] = (((aa[20] + bb[20]) + cc[20]) + ee[20]) * s
			dd[21] = (((aa[21] + bb[21]) + cc[21]) + ee[21]) * s
			dd[22] = (((aa[22] + bb[22]) + cc[22]) + ee[22]) * s
			dd[23] = (((aa[23] + bb[23]) + cc[23]) + ee[23]) * s
			dd[24] = (((aa[24] + bb[24]) + cc[24]) + ee[24]) * s
			dd[25] = (((aa[25] + bb[25]) + cc[25]) + ee[25]) * s
			dd[26] = (((aa[26] + bb[26]) + cc[26]) + ee[26]) * s
			dd[27] = (((aa[27] + bb[27]) + cc[27]) + ee[27]) * s
			dd[28] = (((aa[28] + bb[28]) + cc[28]) + ee[28]) * s
			dd[29] = (((aa[29] + bb[29]) + cc[29]) + ee[29]) * s
			dd[30] = (((aa[30] + bb[30]) + cc[30]) + ee[30]) * s
			dd[31] = (((aa[31] + bb[31]) + cc[31]) + ee[31]) * s
		}
	}
	for i := n; i < len(d); i++ {
		d[i] = (((a[i] + b[i]) + c[i]) + e[i]) * s
	}
}
