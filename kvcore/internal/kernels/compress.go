package kernels

import (
	"fmt"
	"math"
)

// Gradient compression, bit-exact with MXNet's 2bit and 1bit compression
// (src/kvstore/gradient_compression-inl.h, kernels quantize_2bit,
// dequantize_2bit, quantize_1bit, dequantize_1bit).
//
// Packing. A compressed gradient is a sequence of 32-bit words stored as
// float32 (MXNet keeps it in a float32 NDArray, so it travels and is stored like
// any other array). MXNet fills each word byte by byte through a char
// pointer, byte 0 at the lowest address; on the little-endian machines MXNet
// and webkv run on, byte b of a word is bits 8b..8b+7 of its uint32 value.
// Inside a byte the first value takes the most significant bits:
//
//	2bit: value j -> word j/16, byte (j%16)/4, bits 7-6, 5-4, 3-2, 1-0 for j%4 = 0..3
//	      code 11 = +threshold, 10 = -threshold, 00 = 0 (01 is never written
//	      and reads as 0)
//	1bit: value j -> word j/32, byte (j%32)/8, bit 7-(j%8); 1 = +1, 0 = -1
//
// Bits of a last, partly used word that no value maps to are 0.
//
// Residual (error feedback). Quantize first adds the gradient into the
// residual, then quantizes the residual and subtracts what the code stands
// for, all in float32 exactly in MXNet's order:
//
//	2bit: r += g; if r >= t {11; r -= t} else if r <= -t {10; r -= -t} else {00}
//	1bit: r += g; if r > t {1; r -= 1} else {0; r += 1}
//
// 1bit dequantizes to ±1 whatever the threshold is, so the residual moves by
// 1, not by t (MXNet 2.0 #17952). A NaN residual gives code 00 (2bit) or 0
// (1bit), as the comparisons in MXNet's kernels do.
//
// Splitting. Word k depends only on values 16k..16k+15 (2bit) or
// 32k..32k+31 (1bit), so the functions below may be called on sub-slices that
// start at a multiple of 16 (2bit) or 32 (1bit) values and the matching word:
// Quantize2Bit(out[lo/16:], g[lo:hi], r[lo:hi], t) for lo%16 == 0 gives the
// same words as one whole call. The CPU backend's parallel chunks are aligned
// to 32 values, which suits both.

// Packed2Bit is the number of words that n 2bit codes take: ceil(n/16).
func Packed2Bit(n int) int { return (n + 15) / 16 }

// Packed1Bit is the number of words that n 1bit codes take: ceil(n/32).
func Packed1Bit(n int) int { return (n + 31) / 32 }

func checkQuantizeLens(kind string, packed int, out, g, r []float32) {
	if len(r) != len(g) || len(out) != packed {
		panic(fmt.Sprintf("kernels: quantize %s of %d values with residual of %d and out of %d words (want %d)",
			kind, len(g), len(r), len(out), packed))
	}
}

func checkDequantizeLens(kind string, packed int, out, in []float32) {
	if len(in) != packed {
		panic(fmt.Sprintf("kernels: dequantize %s into %d values from %d words (want %d)",
			kind, len(out), len(in), packed))
	}
}

// Quantize2Bit adds g into the residual r and packs the 2-bit codes of r
// into out, then takes what each code stands for off r; see the comment at
// the top of this file for the exact layout and rule. len(r) must equal len(g) and
// len(out) must be Packed2Bit(len(g)); other lengths panic (the
// backends check lengths and return errors before calling this).
func Quantize2Bit(out, g, r []float32, threshold float32) {
	checkQuantizeLens("2bit", Packed2Bit(len(g)), out, g, r)
	pos, neg := threshold, -1*threshold
	quantize2Rest(out, g, r, pos, neg, quantize2Vec(out[:len(g)/16], g, r, pos, neg))
}

// quantize2Rest is Quantize2Bit's reference loop from word from on: the
// vector loop (quantize2Vec) did the words before it.
func quantize2Rest(out, g, r []float32, pos, neg float32, from int) {
	n := len(g)
	full := n / 16
	for w := from; w < full; w++ {
		out[w] = math.Float32frombits(quantize2Word(g[w*16:w*16+16], r[w*16:w*16+16], pos, neg))
	}
	if tail := n - full*16; tail > 0 {
		// Pad to a whole word: zero gradient and residual beyond n give
		// code 00 (threshold > 0), the padding MXNet leaves.
		var gt, rt [16]float32
		copy(gt[:], g[full*16:])
		copy(rt[:], r[full*16:])
		word := quantize2Word(gt[:], rt[:], pos, neg)
		copy(r[full*16:], rt[:tail])
		// Clear the codes of padding values in case threshold <= 0 was passed
		// directly (ParseCompression rejects it): padding stays 0 bits.
		word &= tailMask2[tail]
		out[full] = math.Float32frombits(word)
	}
}

// tailMask2[k] keeps the codes of the first k values of a 2bit word.
var tailMask2 = func() (m [16]uint32) {
	for k := 1; k < 16; k++ {
		m[k] = m[k-1] | 3<<shift2(k-1)
	}
	return m
}()

// tailMask1[k] keeps the bits of the first k values of a 1bit word.
var tailMask1 = func() (m [32]uint32) {
	for k := 1; k < 32; k++ {
		m[k] = m[k-1] | 1<<shift1(k-1)
	}
	return m
}()

// shift2 is the bit position of the low bit of value k's 2-bit code in its
// word: byte k/4, and the first value of a byte in its top two bits.
func shift2(k int) uint { return uint(8*(k/4) + 6 - 2*(k%4)) }

// shift1 is the bit position of value k's bit in its word: byte k/8, the
// first value of a byte in its top bit.
func shift1(k int) uint { return uint(8*(k/8) + 7 - k%8) }

// quantize2Word quantizes 16 values (len(g) == len(r) == 16) into one word.
// A byte is built by shifting left, so its first value ends in the top bits.
// The loop has no data-dependent branch (random gradients would mispredict
// about half of them): the code and the amount taken off the residual are
// selected with integer masks, and taking off +0 leaves any residual,
// including -0, unchanged.
func quantize2Word(g, r []float32, pos, neg float32) uint32 {
	g, r = g[:16], r[:16]
	pb, nb := math.Float32bits(pos), math.Float32bits(neg)
	var word uint32
	for b := 0; b < 4; b++ {
		var byt uint32
		for c := 0; c < 4; c++ {
			i := 4*b + c
			v := r[i] + g[i]
			ge := b2u(v >= pos)
			le := b2u(v <= neg) &^ ge // else-if, as MXNet
			r[i] = v - math.Float32frombits(pb&-ge|nb&-le)
			byt = byt<<2 | ge*3 | le*2
		}
		word |= byt << (8 * b)
	}
	return word
}

// b2u is 1 for true; the compiler turns it into a flag-setting instruction.
func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Quantize1Bit adds g into the residual r and packs 1-bit codes into out:
// bit 1 where r > threshold (then r -= 1), else bit 0 (then r += 1). Lengths
// as for Quantize2Bit with Packed1Bit.
func Quantize1Bit(out, g, r []float32, threshold float32) {
	checkQuantizeLens("1bit", Packed1Bit(len(g)), out, g, r)
	quantize1Rest(out, g, r, threshold, quantize1Vec(out[:len(g)/32], g, r, threshold))
}

// quantize1Rest is Quantize1Bit's reference loop from word from on.
func quantize1Rest(out, g, r []float32, threshold float32, from int) {
	n := len(g)
	full := n / 32
	for w := from; w < full; w++ {
		out[w] = math.Float32frombits(quantize1Word(g[w*32:w*32+32], r[w*32:w*32+32], threshold))
	}
	if tail := n - full*32; tail > 0 {
		var gt, rt [32]float32
		copy(gt[:], g[full*32:])
		copy(rt[:], r[full*32:])
		word := quantize1Word(gt[:], rt[:], threshold)
		copy(r[full*32:], rt[:tail])
		// Padding values may compare above a negative threshold: MXNet never
		// looks at them, so their bits stay 0.
		out[full] = math.Float32frombits(word & tailMask1[tail])
	}
}

// quantize1Word quantizes 32 values into one word, without data-dependent
// branches: adding -1 is subtracting 1 exactly, so the residual moves by
// ±1 selected through the sign bit.
func quantize1Word(g, r []float32, t float32) uint32 {
	g, r = g[:32], r[:32]
	const one = 0x3f800000 // float32 1
	var word uint32
	for b := 0; b < 4; b++ {
		var byt uint32
		for c := 0; c < 8; c++ {
			i := 8*b + c
			v := r[i] + g[i]
			bit := b2u(v > t)
			r[i] = v + math.Float32frombits(one|bit<<31)
			byt = byt<<1 | bit
		}
		word |= byt << (8 * b)
	}
	return word
}

// Dequantize2Bit unpacks the 2-bit codes in in into out: 11 -> +threshold,
// 10 -> -threshold, 00 and 01 -> 0. len(in) must be
// Packed2Bit(len(out)); other lengths panic.
func Dequantize2Bit(out, in []float32, threshold float32) {
	checkDequantizeLens("2bit", Packed2Bit(len(out)), out, in)
	vals := [4]float32{0, 0, -1 * threshold, threshold}
	dequantize2Rest(out, in, &vals, dequantize2Vec(out, in[:len(out)/16], &vals))
}

// dequantize2Rest is Dequantize2Bit's reference loop from word from on.
func dequantize2Rest(out, in []float32, vals *[4]float32, from int) {
	n := len(out)
	full := n / 16
	for w := from; w < full; w++ {
		word := math.Float32bits(in[w])
		o := out[w*16 : w*16+16]
		for k := range o {
			o[k] = vals[(word>>shift2(k))&3]
		}
	}
	if tail := n - full*16; tail > 0 {
		word := math.Float32bits(in[full])
		o := out[full*16:]
		for k := range o {
			o[k] = vals[(word>>shift2(k))&3]
		}
	}
}

// Dequantize1Bit unpacks the bits in in into out: 1 -> +1, 0 -> -1, whatever
// the threshold (MXNet's dequantize_1bit ignores it). len(in) must be
// Packed1Bit(len(out)); other lengths panic.
func Dequantize1Bit(out, in []float32, threshold float32) {
	checkDequantizeLens("1bit", Packed1Bit(len(out)), out, in)
	vals := [2]float32{-1, 1}
	dequantize1Rest(out, in, &vals, dequantize1Vec(out, in[:len(out)/32], &vals))
}

// dequantize1Rest is Dequantize1Bit's reference loop from word from on.
func dequantize1Rest(out, in []float32, vals *[2]float32, from int) {
	n := len(out)
	full := n / 32
	for w := from; w < full; w++ {
		word := math.Float32bits(in[w])
		o := out[w*32 : w*32+32]
		for k := range o {
			o[k] = vals[(word>>shift1(k))&1]
		}
	}
	if tail := n - full*32; tail > 0 {
		word := math.Float32bits(in[full])
		o := out[full*32:]
		for k := range o {
			o[k] = vals[(word>>shift1(k))&1]
		}
	}
}
