//go:build amd64 && !purego

#include "textflag.h"

// SUM4(STORE, a label prefix) computes d[i] = (((a[i] + b[i]) + c[i]) + e[i]) * s
// for 8*blocks elements, two blocks (16 elements) per iteration, writing with
// STORE (VMOVUPS, or VMOVNTPS for non-temporal stores).
#define SUM4(STORE, LOOP, ONE, DONE) \
	MOVQ d+0(FP), DI \
	MOVQ a+8(FP), SI \
	MOVQ b+16(FP), R8 \
	MOVQ c+24(FP), R9 \
	MOVQ e+32(FP), R10 \
	MOVQ blocks+40(FP), CX \
	VBROADCASTSS s+48(FP), Y15 \
	XORQ AX, AX \
	MOVQ CX, DX \
	SHRQ $1, DX \
	JZ   ONE \
LOOP: \
	VMOVUPS (SI)(AX*1), Y0 \
	VMOVUPS 32(SI)(AX*1), Y1 \
	VADDPS  (R8)(AX*1), Y0, Y0 \
	VADDPS  32(R8)(AX*1), Y1, Y1 \
	VADDPS  (R9)(AX*1), Y0, Y0 \
	VADDPS  32(R9)(AX*1), Y1, Y1 \
	VADDPS  (R10)(AX*1), Y0, Y0 \
	VADDPS  32(R10)(AX*1), Y1, Y1 \
	VMULPS  Y15, Y0, Y0 \
	VMULPS  Y15, Y1, Y1 \
	STORE   Y0, (DI)(AX*1) \
	STORE   Y1, 32(DI)(AX*1) \
	ADDQ    $64, AX \
	DECQ    DX \
	JNZ     LOOP \
ONE: \
	TESTQ $1, CX \
	JZ    DONE \
	VMOVUPS (SI)(AX*1), Y0 \
	VADDPS  (R8)(AX*1), Y0, Y0 \
	VADDPS  (R9)(AX*1), Y0, Y0 \
	VADDPS  (R10)(AX*1), Y0, Y0 \
	VMULPS  Y15, Y0, Y0 \
	STORE   Y0, (DI)(AX*1) \
DONE:

// func sum4sAVX2(d, a, b, c, e *float32, blocks int, s float32)
TEXT ·sum4sAVX2(SB), NOSPLIT, $0-52
	SUM4(VMOVUPS, loop, one, done)
	VZEROUPPER
	RET

// func sum4sAVX2NT(d, a, b, c, e *float32, blocks int, s float32)
// As sum4sAVX2 with non-temporal stores: d must be 32-byte aligned. For
// outputs far larger than the caches, the stores then skip the read for
// ownership of every output line (a sixth memory stream).
TEXT ·sum4sAVX2NT(SB), NOSPLIT, $0-52
	SUM4(VMOVNTPS, ntloop, ntone, ntdone)
	SFENCE
	VZEROUPPER
	RET
