package kernels

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// FirstNonFinite returns the index of the first NaN or ±Inf among the
// little-endian float32 values in data (a trailing partial value is
// ignored), or -1 when all are finite. Reference loop:
//
//	for i := range len(data) / 4 {
//		f := math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
//		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
//			return i
//		}
//	}
//	return -1
//
// A float32 is NaN or ±Inf when its 8 exponent bits are all ones. The
// vector path (AVX2) clears 32 values per step; the Go loop tests 16 per
// branch (each half of a 64-bit word, masked to its exponent, carries into
// its sign bit when 1<<23 is added, and only then) and finds the exact
// index in the first block that has one.
func FirstNonFinite(data []byte) int {
	const (
		exp   = 0x7f800000
		exp2  = exp<<32 | exp
		carry = 1<<55 | 1<<23
		sign2 = 1<<63 | 1<<31
	)
	n := len(data) / 4
	i := nonFiniteVec(data[:4*n]) / 4 // values before i are finite
	for ; i+16 <= n; i += 16 {
		b := data[4*i : 4*i+64]
		t := (binary.LittleEndian.Uint64(b[0:])&exp2 + carry) |
			(binary.LittleEndian.Uint64(b[8:])&exp2 + carry) |
			(binary.LittleEndian.Uint64(b[16:])&exp2 + carry) |
			(binary.LittleEndian.Uint64(b[24:])&exp2 + carry) |
			(binary.LittleEndian.Uint64(b[32:])&exp2 + carry) |
			(binary.LittleEndian.Uint64(b[40:])&exp2 + carry) |
			(binary.LittleEndian.Uint64(b[48:])&exp2 + carry) |
			(binary.LittleEndian.Uint64(b[56:])&exp2 + carry)
		if t&sign2 != 0 {
			break // the loop below finds which
		}
	}
	for ; i < n; i++ {
		if binary.LittleEndian.Uint32(data[4*i:])&exp == exp {
			return i
		}
	}
	return -1
}

// CopyFinite copies src into dst[:len(src)] and returns the index of the
// first NaN or ±Inf in src, or -1: copy and FirstNonFinite in one pass over
// src (AVX2: 32 floats per step, then 8, loaded once for both; fewer
// than copyFiniteSmall floats, and the vector path's tail:
// copyFiniteWords).
// dst must not be shorter than src, nor overlap it other than exactly.
func CopyFinite(dst, src []float32) int {
	dst = dst[:len(src)]
	done := copyFiniteVec(dst, src) // copied, and finite
	if done == len(src) {
		return -1
	}
	if copyFiniteSmall > 0 && len(src)-done < copyFiniteSmall {
		if i := copyFiniteWords(dst[done:], src[done:]); i >= 0 {
			return done + i
		}
		return -1
	}
	copy(dst[done:], src[done:])
	rest := src[done:]
	if i := FirstNonFinite(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(rest))), 4*len(rest))); i >= 0 {
		return done + i
	}
	return -1
}

// copyFiniteWords is CopyFinite's loop for few floats: it copies src into
// dst (as long) two floats per 64-bit word, ORs each word's exponents
// with FirstNonFinite's carry test, and only when a word had one finds
// the exact index.
func copyFiniteWords(dst, src []float32) int {
	const (
		exp   = 0x7f800000
		exp2  = exp<<32 | exp
		carry = 1<<55 | 1<<23
		sign2 = 1<<63 | 1<<31
	)
	n := len(src)
	if n == 0 {
		return -1
	}
	dst = dst[:n]
	s := unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*n)
	d := unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*n)
	var t uint64
	i := 0
	for ; i+8 <= len(s); i += 8 {
		v := binary.NativeEndian.Uint64(s[i : i+8])
		binary.NativeEndian.PutUint64(d[i:i+8], v)
		t |= v&exp2 + carry
	}
	if i < len(s) {
		v := binary.NativeEndian.Uint32(s[i : i+4])
		binary.NativeEndian.PutUint32(d[i:i+4], v)
		t |= uint64(v&exp + 1<<23)
	}
	if t&sign2 == 0 {
		return -1
	}
	for i, f := range src {
		if math.Float32bits(f)&exp == exp {
			return i
		}
	}
	return -1
}
