//go:build amd64 && !purego

#include "textflag.h"

// func finiteBlocksAVX2(p *byte, blocks int) int
// Per 128-byte block: each float32 masked to its exponent bits, compared
// with all ones, the four compares ORed and tested.
TEXT ·finiteBlocksAVX2(SB), NOSPLIT, $0-24
	MOVQ p+0(FP), SI
	MOVQ blocks+8(FP), CX
	MOVL $0x7f800000, AX
	MOVQ AX, X15
	VPBROADCASTD X15, Y15
	XORQ DX, DX
loop:
	CMPQ DX, CX
	JGE  done
	VPAND    (SI), Y15, Y0
	VPAND    32(SI), Y15, Y1
	VPAND    64(SI), Y15, Y2
	VPAND    96(SI), Y15, Y3
	VPCMPEQD Y15, Y0, Y0
	VPCMPEQD Y15, Y1, Y1
	VPCMPEQD Y15, Y2, Y2
	VPCMPEQD Y15, Y3, Y3
	VPOR     Y1, Y0, Y0
	VPOR     Y3, Y2, Y2
	VPOR     Y2, Y0, Y0
	VPTEST   Y0, Y0
	JNZ      done
	ADDQ     $128, SI
	INCQ     DX
	JMP      loop
done:
	MOVQ DX, ret+16(FP)
	VZEROUPPER
	RET

// func copyFiniteAVX2(dst, src *float32, blocks int) int
// As finiteBlocksAVX2, storing each loaded block to dst before testing it.
TEXT ·copyFiniteAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ blocks+16(FP), CX
	MOVL $0x7f800000, AX
	MOVQ AX, X15
	VPBROADCASTD X15, Y15
	XORQ DX, DX
cloop:
	CMPQ DX, CX
	JGE  cdone
	VMOVUPS  (SI), Y0
	VMOVUPS  32(SI), Y1
	VMOVUPS  64(SI), Y2
	VMOVUPS  96(SI), Y3
	VMOVUPS  Y0, (DI)
	VMOVUPS  Y1, 32(DI)
	VMOVUPS  Y2, 64(DI)
	VMOVUPS  Y3, 96(DI)
	VPAND    Y15, Y0, Y0
	VPAND    Y15, Y1, Y1
	VPAND    Y15, Y2, Y2
	VPAND    Y15, Y3, Y3
	VPCMPEQD Y15, Y0, Y0
	VPCMPEQD Y15, Y1, Y1
	VPCMPEQD Y15, Y2, Y2
	VPCMPEQD Y15, Y3, Y3
	VPOR     Y1, Y0, Y0
	VPOR     Y3, Y2, Y2
	VPOR     Y2, Y0, Y0
	VPTEST   Y0, Y0
	JNZ      cdone
	ADDQ     $128, SI
	ADDQ     $128, DI
	INCQ     DX
	JMP      cloop
cdone:
	MOVQ DX, ret+24(FP)
	VZEROUPPER
	RET

// func copyFinite8AVX2(dst, src *float32, units int) int
// As copyFiniteAVX2 with 8-float units: one 32-byte load, store and test
// per unit (small keys, and the tail of 32-float blocks).
TEXT ·copyFinite8AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ units+16(FP), CX
	MOVL $0x7f800000, AX
	MOVQ AX, X15
	VPBROADCASTD X15, Y15
	XORQ DX, DX
uloop:
	CMPQ DX, CX
	JGE  udone
	VMOVUPS  (SI), Y0
	VMOVUPS  Y0, (DI)
	VPAND    Y15, Y0, Y0
	VPCMPEQD Y15, Y0, Y0
	VPTEST   Y0, Y0
	JNZ      udone
	ADDQ     $32, SI
	ADDQ     $32, DI
	INCQ     DX
	JMP      uloop
udone:
	MOVQ DX, ret+24(FP)
	VZEROUPPER
	RET
