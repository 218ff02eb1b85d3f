//go:build amd64 && !purego

#include "textflag.h"

// 2bit and 1bit quantization with AVX2, whole 32-bit words at a time (16
// values for 2bit, 32 for 1bit), bit-exact with compress.go: the same
// float32 addition, comparisons and subtraction per value, the same masks
// instead of branches. The codes go from comparison masks (all ones or
// zeros per float lane) to the word's bits in four steps: VPACKSSDW and
// VPACKSSWB narrow the masks to bytes, VPERMQ undoes the lane interleaving
// of the packs, VPSHUFB puts each byte where its bit goes in the word, and
// VPMOVMSKB gathers the top bit of each of the 32 bytes: byte j of the
// shuffled vector is bit j of the word.

// q2shuf: within each 8-byte group [lo codes of values 0-3 | hi codes of
// values 0-3] of one byte of the word, bit p (from the lowest) is the lo
// (p even) or hi (p odd) code of value 3-p/2: the first value of a byte
// takes its top two bits.
DATA q2shuf<>+0(SB)/8, $0x0400050106020703
DATA q2shuf<>+8(SB)/8, $0x0c080d090e0a0f0b
DATA q2shuf<>+16(SB)/8, $0x0400050106020703
DATA q2shuf<>+24(SB)/8, $0x0c080d090e0a0f0b
GLOBL q2shuf<>(SB), RODATA|NOPTR, $32

// q1shuf: after the packs and VPERMQ a 16-byte lane holds the masks of
// values [0-3, 8-11, 4-7, 12-15] (of its half word); bit j of the half word
// is value 8*(j/8) + 7 - j%8.
DATA q1shuf<>+0(SB)/8, $0x0001020308090a0b
DATA q1shuf<>+8(SB)/8, $0x040506070c0d0e0f
DATA q1shuf<>+16(SB)/8, $0x0001020308090a0b
DATA q1shuf<>+24(SB)/8, $0x040506070c0d0e0f
GLOBL q1shuf<>(SB), RODATA|NOPTR, $32

// The bit position of each value's code in its word, for the 8 values of
// one vector: 2bit values 0-7 and 8-15, 1bit values 0-7 (the next 8 are the
// word shifted right by 8).
DATA d2shift<>+0(SB)/4, $6
DATA d2shift<>+4(SB)/4, $4
DATA d2shift<>+8(SB)/4, $2
DATA d2shift<>+12(SB)/4, $0
DATA d2shift<>+16(SB)/4, $14
DATA d2shift<>+20(SB)/4, $12
DATA d2shift<>+24(SB)/4, $10
DATA d2shift<>+28(SB)/4, $8
DATA d2shift<>+32(SB)/4, $22
DATA d2shift<>+36(SB)/4, $20
DATA d2shift<>+40(SB)/4, $18
DATA d2shift<>+44(SB)/4, $16
DATA d2shift<>+48(SB)/4, $30
DATA d2shift<>+52(SB)/4, $28
DATA d2shift<>+56(SB)/4, $26
DATA d2shift<>+60(SB)/4, $24
GLOBL d2shift<>(SB), RODATA|NOPTR, $64

DATA d1shift<>+0(SB)/4, $7
DATA d1shift<>+4(SB)/4, $6
DATA d1shift<>+8(SB)/4, $5
DATA d1shift<>+12(SB)/4, $4
DATA d1shift<>+16(SB)/4, $3
DATA d1shift<>+20(SB)/4, $2
DATA d1shift<>+24(SB)/4, $1
DATA d1shift<>+28(SB)/4, $0
GLOBL d1shift<>(SB), RODATA|NOPTR, $32

#define GE $0x1d
#define LE $0x12
#define GT $0x1e

// DEQ2(STORE, LOOP): 16 values per word. table is {0, 0, -t, t} twice:
// VPERMILPS picks by the low 2 bits of each lane of the shifted word, which
// are the value's code.
#define DEQ2(STORE, LOOP) \
	MOVQ out+0(FP), DI \
	MOVQ in+8(FP), SI \
	MOVQ words+16(FP), CX \
	MOVQ table+24(FP), AX \
	VMOVUPS (AX), Y14 \
	VMOVDQU d2shift<>(SB), Y12 \
	VMOVDQU d2shift<>+32(SB), Y13 \
LOOP: \
	VPBROADCASTD (SI), Y0 \
	VPSRLVD   Y12, Y0, Y1 \
	VPSRLVD   Y13, Y0, Y2 \
	VPERMILPS Y1, Y14, Y1 \
	VPERMILPS Y2, Y14, Y2 \
	STORE     Y1, (DI) \
	STORE     Y2, 32(DI) \
	ADDQ      $4, SI \
	ADDQ      $64, DI \
	DECQ      CX \
	JNZ       LOOP

// DEQ1(STORE, LOOP): 32 values per word. table is {-1, 1, -1, 1} twice:
// the low bit of each lane picks.
#define DEQ1(STORE, LOOP) \
	MOVQ out+0(FP), DI \
	MOVQ in+8(FP), SI \
	MOVQ words+16(FP), CX \
	MOVQ table+24(FP), AX \
	VMOVUPS (AX), Y14 \
	VMOVDQU d1shift<>(SB), Y12 \
LOOP: \
	VPBROADCASTD (SI), Y0 \
	VPSRLVD   Y12, Y0, Y1 \
	VPSRLD    $8, Y0, Y0 \
	VPSRLVD   Y12, Y0, Y2 \
	VPSRLD    $8, Y0, Y0 \
	VPSRLVD   Y12, Y0, Y3 \
	VPSRLD    $8, Y0, Y0 \
	VPSRLVD   Y12, Y0, Y4 \
	VPERMILPS Y1, Y14, Y1 \
	VPERMILPS Y2, Y14, Y2 \
	VPERMILPS Y3, Y14, Y3 \
	VPERMILPS Y4, Y14, Y4 \
	STORE     Y1, (DI) \
	STORE     Y2, 32(DI) \
	STORE     Y3, 64(DI) \
	STORE     Y4, 96(DI) \
	ADDQ      $4, SI \
	ADDQ      $128, DI \
	DECQ      CX \
	JNZ       LOOP

// func quantize2AVX2(out *float32, gr, r *float32, words int, pos, neg float32)
TEXT ·quantize2AVX2(SB), NOSPLIT, $0-40
	MOVQ out+0(FP), DX
	MOVQ gr+8(FP), SI
	MOVQ r+16(FP), DI
	MOVQ words+24(FP), CX
	VBROADCASTSS pos+32(FP), Y14
	VBROADCASTSS neg+36(FP), Y15
	VMOVDQU q2shuf<>(SB), Y13
loop:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VADDPS  (SI), Y0, Y0
	VADDPS  32(SI), Y1, Y1
	VCMPPS  GE, Y14, Y0, Y2 // ge = v >= pos
	VCMPPS  GE, Y14, Y1, Y3
	VCMPPS  LE, Y15, Y0, Y4
	VCMPPS  LE, Y15, Y1, Y5
	VANDNPS Y4, Y2, Y4      // le = (v <= neg) &^ ge
	VANDNPS Y5, Y3, Y5
	VANDPS  Y14, Y2, Y6     // r = v - (pos&ge | neg&le)
	VANDPS  Y15, Y4, Y7
	VORPS   Y7, Y6, Y6
	VSUBPS  Y6, Y0, Y0
	VANDPS  Y14, Y3, Y6
	VANDPS  Y15, Y5, Y7
	VORPS   Y7, Y6, Y6
	VSUBPS  Y6, Y1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VORPS   Y4, Y2, Y4      // hi bit: ge or le; lo bit: ge
	VORPS   Y5, Y3, Y5
	VPACKSSDW Y4, Y2, Y6
	VPACKSSDW Y5, Y3, Y7
	VPACKSSWB Y7, Y6, Y6
	VPERMQ  $0xd8, Y6, Y6
	VPSHUFB Y13, Y6, Y6
	VPMOVMSKB Y6, BX
	MOVL    BX, (DX)
	ADDQ    $4, DX
	ADDQ    $64, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     loop
	VZEROUPPER
	RET

// func quantize1AVX2(out *float32, gr, r *float32, words int, t float32)
TEXT ·quantize1AVX2(SB), NOSPLIT, $0-36
	MOVQ out+0(FP), DX
	MOVQ gr+8(FP), SI
	MOVQ r+16(FP), DI
	MOVQ words+24(FP), CX
	VBROADCASTSS t+32(FP), Y14
	MOVL $0x3f800000, BX
	MOVL BX, X12
	VPBROADCASTD X12, Y12 // 1.0
	MOVL $0x80000000, BX
	MOVL BX, X13
	VPBROADCASTD X13, Y13 // sign bit
	VMOVDQU q1shuf<>(SB), Y11
loop:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VADDPS  (SI), Y0, Y0
	VADDPS  32(SI), Y1, Y1
	VADDPS  64(SI), Y2, Y2
	VADDPS  96(SI), Y3, Y3
	VCMPPS  GT, Y14, Y0, Y4 // bit = v > t
	VCMPPS  GT, Y14, Y1, Y5
	VCMPPS  GT, Y14, Y2, Y6
	VCMPPS  GT, Y14, Y3, Y7
	VANDPS  Y13, Y4, Y8     // r = v + (bit ? -1 : 1)
	VORPS   Y12, Y8, Y8
	VADDPS  Y8, Y0, Y0
	VANDPS  Y13, Y5, Y8
	VORPS   Y12, Y8, Y8
	VADDPS  Y8, Y1, Y1
	VANDPS  Y13, Y6, Y8
	VORPS   Y12, Y8, Y8
	VADDPS  Y8, Y2, Y2
	VANDPS  Y13, Y7, Y8
	VORPS   Y12, Y8, Y8
	VADDPS  Y8, Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VPACKSSDW Y5, Y4, Y4
	VPACKSSDW Y7, Y6, Y6
	VPACKSSWB Y6, Y4, Y4
	VPERMQ  $0xd8, Y4, Y4
	VPSHUFB Y11, Y4, Y4
	VPMOVMSKB Y4, BX
	MOVL    BX, (DX)
	ADDQ    $4, DX
	ADDQ    $128, SI
	ADDQ    $128, DI
	DECQ    CX
	JNZ     loop
	VZEROUPPER
	RET

// func dequantize2AVX2(out, in *float32, words int, table *[8]float32)
TEXT ·dequantize2AVX2(SB), NOSPLIT, $0-32
	DEQ2(VMOVUPS, loop)
	VZEROUPPER
	RET

// func dequantize2AVX2NT(out, in *float32, words int, table *[8]float32)
// As dequantize2AVX2 with non-temporal stores (out 32-byte aligned).
TEXT ·dequantize2AVX2NT(SB), NOSPLIT, $0-32
	DEQ2(VMOVNTPS, loop)
	SFENCE
	VZEROUPPER
	RET

// func dequantize1AVX2(out, in *float32, words int, table *[8]float32)
TEXT ·dequantize1AVX2(SB), NOSPLIT, $0-32
	DEQ1(VMOVUPS, loop)
	VZEROUPPER
	RET

// func dequantize1AVX2NT(out, in *float32, words int, table *[8]float32)
TEXT ·dequantize1AVX2NT(SB), NOSPLIT, $0-32
	DEQ1(VMOVNTPS, loop)
	SFENCE
	VZEROUPPER
	RET
