//go:build amd64 && !purego

#include "textflag.h"

// The optimizer kernels, 8 float32 lanes at a time with AVX2 (no FMA): the
// same IEEE operations in the same order as the reference loops in
// optimizers.go, so the same bits. Each takes
//
//	k   *vk       constants, slot i (8 copies of one value) at i*32(R11)
//	n   int       elements, a multiple of 8, > 0
//	w, gr, s0, s1, s2 *float32   weight, gradient and up to three states
//
// Slots 0 and 1 are always the gradient clip bound C and -C (+Inf and -Inf
// when clipping is off: then the clip changes nothing, NaN included), kept
// in Y14 and Y15. Go's operand order is reversed from Intel's: VSUBPS B, A, D
// is D = A - B, and VMINPS X, C, D is D = C < X ? C : X, which passes a NaN
// X through as mshadow's clip does.
//
// Registers: R11 k, DI w, SI g, R8 s0, R9 s1, R10 s2, AX byte offset, CX end.

#define PROLOGUE \
	MOVQ k+0(FP), R11 \
	MOVQ n+8(FP), CX \
	MOVQ w+16(FP), DI \
	MOVQ gr+24(FP), SI \
	MOVQ s0+32(FP), R8 \
	MOVQ s1+40(FP), R9 \
	MOVQ s2+48(FP), R10 \
	SHLQ $2, CX \
	XORQ AX, AX \
	VMOVUPS 0(R11), Y14 \
	VMOVUPS 32(R11), Y15

#define NEXT(LOOP) \
	ADDQ $32, AX \
	CMPQ AX, CX \
	JB   LOOP \
	VZEROUPPER \
	RET

// CLIP(x): x = min(max(x, -C), C) in mshadow's order, NaN passed through.
#define CLIP(x) \
	VMINPS x, Y14, x \
	VMAXPS x, Y15, x

// Slot offsets.
#define S2 64(R11)
#define S3 96(R11)
#define S4 128(R11)
#define S5 160(R11)
#define S6 192(R11)
#define S7 224(R11)
#define S8 256(R11)
#define S9 288(R11)
#define S10 320(R11)
#define S11 352(R11)

// Comparison predicates (ordered, quiet: false for NaN).
#define GT $0x1e
#define LT $0x11

// SIGN(x, zero, t, d): d = (x > 0) - (x < 0) as 1, -1 or +0 (0 for NaN),
// with slot ONE = 1 and MONE = -1.
#define SIGN(x, zero, t, d, ONE, MONE) \
	VCMPPS GT, zero, x, d \
	VANDPS ONE, d, d \
	VCMPPS LT, zero, x, t \
	VANDPS MONE, t, t \
	VORPS  t, d, d

// func sgdAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// w = decay*w - A*clip(B*g); slots: 2 B, 3 A, 4 decay.
TEXT ·sgdAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
loop:
	VMOVUPS (SI)(AX*1), Y1
	VMULPS  S2, Y1, Y1
	CLIP(Y1)
	VMULPS  S3, Y1, Y1
	VMOVUPS (DI)(AX*1), Y0
	VMULPS  S4, Y0, Y0
	VSUBPS  Y1, Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	NEXT(loop)

// func sgdMomAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// m = (mu*mom - lrwd*w) - A*clip(B*g); mom = m; w = w + m.
// Slots: 2 B, 3 A, 4 mu, 5 lrwd.
TEXT ·sgdMomAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
loop:
	VMOVUPS (SI)(AX*1), Y1
	VMULPS  S2, Y1, Y1
	CLIP(Y1)
	VMULPS  S3, Y1, Y1
	VMOVUPS (DI)(AX*1), Y0
	VMOVUPS (R8)(AX*1), Y2
	VMULPS  S4, Y2, Y2
	VMULPS  S5, Y0, Y3
	VSUBPS  Y3, Y2, Y2
	VSUBPS  Y1, Y2, Y2
	VMOVUPS Y2, (R8)(AX*1)
	VADDPS  Y2, Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	NEXT(loop)

// func nagAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// gr = clip(rs*g); m = mu*mom
// w' = (w - m) + mu1*(m - lr*(gr + wd*w)); mom = m - lr*(gr + wd*w').
// Slots: 2 rs, 3 mu, 4 mu1, 5 lr, 6 wd.
TEXT ·nagAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
loop:
	VMOVUPS (SI)(AX*1), Y1
	VMULPS  S2, Y1, Y1
	CLIP(Y1)
	VMOVUPS (R8)(AX*1), Y2
	VMULPS  S3, Y2, Y2
	VMOVUPS (DI)(AX*1), Y0
	VMULPS  S6, Y0, Y3
	VADDPS  Y3, Y1, Y3
	VMULPS  S5, Y3, Y3
	VSUBPS  Y3, Y2, Y3
	VMULPS  S4, Y3, Y3
	VSUBPS  Y2, Y0, Y4
	VADDPS  Y3, Y4, Y4
	VMOVUPS Y4, (DI)(AX*1)
	VMULPS  S6, Y4, Y5
	VADDPS  Y5, Y1, Y5
	VMULPS  S5, Y5, Y5
	VSUBPS  Y5, Y2, Y5
	VMOVUPS Y5, (R8)(AX*1)
	NEXT(loop)

// func adamAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// gr = clip(g*rs + w*wd); m = b1*mean + nb1*gr; v = b2*var + (nb2*gr)*gr;
// w = w - (lr*m)/(sqrt(v) + eps).
// Slots: 2 rs, 3 wd, 4 b1, 5 nb1, 6 b2, 7 nb2, 8 lr, 9 eps.
TEXT ·adamAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
loop:
	VMOVUPS (DI)(AX*1), Y0
	VMOVUPS (SI)(AX*1), Y1
	VMULPS  S2, Y1, Y1
	VMULPS  S3, Y0, Y2
	VADDPS  Y2, Y1, Y1
	CLIP(Y1)
	VMOVUPS (R8)(AX*1), Y3
	VMULPS  S4, Y3, Y3
	VMULPS  S5, Y1, Y4
	VADDPS  Y4, Y3, Y3
	VMOVUPS Y3, (R8)(AX*1)
	VMULPS  S7, Y1, Y5
	VMULPS  Y1, Y5, Y5
	VMOVUPS (R9)(AX*1), Y6
	VMULPS  S6, Y6, Y6
	VADDPS  Y5, Y6, Y6
	VMOVUPS Y6, (R9)(AX*1)
	VSQRTPS Y6, Y7
	VADDPS  S9, Y7, Y7
	VMULPS  S8, Y3, Y8
	VDIVPS  Y7, Y8, Y8
	VSUBPS  Y8, Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	NEXT(loop)

// func adamWAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// gr = clip(rs*g); m, v as Adam; w = w - eta*(m/(sqrt(v) + eps) + wd*w).
// Slots: 2 rs, 3 wd, 4 b1, 5 nb1, 6 b2, 7 nb2, 8 eta, 9 eps.
TEXT ·adamWAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
loop:
	VMOVUPS (SI)(AX*1), Y1
	VMULPS  S2, Y1, Y1
	CLIP(Y1)
	VMOVUPS (R8)(AX*1), Y3
	VMULPS  S4, Y3, Y3
	VMULPS  S5, Y1, Y4
	VADDPS  Y4, Y3, Y3
	VMOVUPS Y3, (R8)(AX*1)
	VMULPS  S7, Y1, Y5
	VMULPS  Y1, Y5, Y5
	VMOVUPS (R9)(AX*1), Y6
	VMULPS  S6, Y6, Y6
	VADDPS  Y5, Y6, Y6
	VMOVUPS Y6, (R9)(AX*1)
	VSQRTPS Y6, Y7
	VADDPS  S9, Y7, Y7
	VDIVPS  Y7, Y3, Y8
	VMOVUPS (DI)(AX*1), Y0
	VMULPS  S3, Y0, Y2
	VADDPS  Y2, Y8, Y8
	VMULPS  S8, Y8, Y8
	VSUBPS  Y8, Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	NEXT(loop)

// func adaGradAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// gr = clip(rs*g); h = hist + gr*gr; w = w + (gr/sqrt(h + eps) + w*wd)*nlr.
// Slots: 2 rs, 3 wd, 4 nlr, 5 eps.
TEXT ·adaGradAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
loop:
	VMOVUPS (SI)(AX*1), Y1
	VMULPS  S2, Y1, Y1
	CLIP(Y1)
	VMULPS  Y1, Y1, Y2
	VMOVUPS (R8)(AX*1), Y3
	VADDPS  Y2, Y3, Y3
	VMOVUPS Y3, (R8)(AX*1)
	VADDPS  S5, Y3, Y3
	VSQRTPS Y3, Y3
	VDIVPS  Y3, Y1, Y4
	VMOVUPS (DI)(AX*1), Y0
	VMULPS  S3, Y0, Y5
	VADDPS  Y5, Y4, Y4
	VMULPS  S4, Y4, Y4
	VADDPS  Y4, Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	NEXT(loop)

// func rmsPropAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// gr = clip(rs*g + wd*w); n = ng1*(gr*gr) + g1*n;
// w = clipw(w - lr*(gr/sqrt(n + eps))).
// Slots: 2 rs, 3 wd, 4 ng1, 5 g1, 6 lr, 7 eps, 8 CW, 9 -CW.
TEXT ·rmsPropAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
	VMOVUPS S8, Y12
	VMOVUPS S9, Y13
loop:
	VMOVUPS (DI)(AX*1), Y0
	VMOVUPS (SI)(AX*1), Y1
	VMULPS  S2, Y1, Y1
	VMULPS  S3, Y0, Y2
	VADDPS  Y2, Y1, Y1
	CLIP(Y1)
	VMULPS  Y1, Y1, Y3
	VMULPS  S4, Y3, Y3
	VMOVUPS (R8)(AX*1), Y4
	VMULPS  S5, Y4, Y4
	VADDPS  Y4, Y3, Y3
	VMOVUPS Y3, (R8)(AX*1)
	VADDPS  S7, Y3, Y3
	VSQRTPS Y3, Y3
	VDIVPS  Y3, Y1, Y5
	VMULPS  S6, Y5, Y5
	VSUBPS  Y5, Y0, Y0
	VMINPS  Y0, Y12, Y0
	VMAXPS  Y0, Y13, Y0
	VMOVUPS Y0, (DI)(AX*1)
	NEXT(loop)

// func rmsPropCenteredAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// gr = clip(rs*g + wd*w); n = (ng1*gr)*gr + g1*n; gm = ng1*gr + g1*gm;
// delta = g2*delta - (lr*gr)/sqrt((n - gm*gm) + eps); w = clipw(w + delta).
// Slots: 2 rs, 3 wd, 4 ng1, 5 g1, 6 g2, 7 lr, 8 eps, 9 CW, 10 -CW.
TEXT ·rmsPropCenteredAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
	VMOVUPS S9, Y12
	VMOVUPS S10, Y13
loop:
	VMOVUPS (DI)(AX*1), Y0
	VMOVUPS (SI)(AX*1), Y1
	VMULPS  S2, Y1, Y1
	VMULPS  S3, Y0, Y2
	VADDPS  Y2, Y1, Y1
	CLIP(Y1)
	VMULPS  S4, Y1, Y2
	VMULPS  Y1, Y2, Y3
	VMOVUPS (R8)(AX*1), Y4
	VMULPS  S5, Y4, Y4
	VADDPS  Y4, Y3, Y3
	VMOVUPS Y3, (R8)(AX*1)
	VMOVUPS (R9)(AX*1), Y4
	VMULPS  S5, Y4, Y4
	VADDPS  Y4, Y2, Y2
	VMOVUPS Y2, (R9)(AX*1)
	VMULPS  Y2, Y2, Y2
	VSUBPS  Y2, Y3, Y3
	VADDPS  S8, Y3, Y3
	VSQRTPS Y3, Y3
	VMULPS  S7, Y1, Y5
	VDIVPS  Y3, Y5, Y5
	VMOVUPS (R10)(AX*1), Y6
	VMULPS  S6, Y6, Y6
	VSUBPS  Y5, Y6, Y6
	VMOVUPS Y6, (R10)(AX*1)
	VADDPS  Y6, Y0, Y0
	VMINPS  Y0, Y12, Y0
	VMAXPS  Y0, Y13, Y0
	VMOVUPS Y0, (DI)(AX*1)
	NEXT(loop)

// func adaDeltaAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// gr = clip(rs*g); ag = rho*accG + (nrho*gr)*gr;
// d = (sqrt(accD + eps)/sqrt(ag + eps))*gr; accD = rho*accD + (nrho*d)*d;
// w = w - (d + wd*w).
// Slots: 2 rs, 3 wd, 4 rho, 5 nrho, 6 eps.
TEXT ·adaDeltaAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
loop:
	VMOVUPS (SI)(AX*1), Y1
	VMULPS  S2, Y1, Y1
	CLIP(Y1)
	VMULPS  S5, Y1, Y2
	VMULPS  Y1, Y2, Y2
	VMOVUPS (R8)(AX*1), Y3
	VMULPS  S4, Y3, Y3
	VADDPS  Y2, Y3, Y3
	VMOVUPS Y3, (R8)(AX*1)
	VADDPS  S6, Y3, Y3
	VSQRTPS Y3, Y3
	VMOVUPS (R9)(AX*1), Y4
	VADDPS  S6, Y4, Y5
	VSQRTPS Y5, Y5
	VDIVPS  Y3, Y5, Y5
	VMULPS  Y1, Y5, Y5
	VMULPS  S4, Y4, Y4
	VMULPS  S5, Y5, Y6
	VMULPS  Y5, Y6, Y6
	VADDPS  Y6, Y4, Y4
	VMOVUPS Y4, (R9)(AX*1)
	VMOVUPS (DI)(AX*1), Y0
	VMULPS  S3, Y0, Y7
	VADDPS  Y7, Y5, Y5
	VSUBPS  Y5, Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	NEXT(loop)

// func signSGDAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// w = decay*w - lr*sign(g). Slots: 2 decay, 3 lr, 4 one, 5 minus one.
TEXT ·signSGDAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
	VXORPS  Y9, Y9, Y9
loop:
	VMOVUPS (SI)(AX*1), Y1
	SIGN(Y1, Y9, Y3, Y2, S4, S5)
	VMULPS  S3, Y2, Y2
	VMOVUPS (DI)(AX*1), Y0
	VMULPS  S2, Y0, Y0
	VSUBPS  Y2, Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	NEXT(loop)

// func signumAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// gr = clip(rs*g); m = (mu*mom - nmuwd*w) - nmu*gr; w = decay*w + lr*sign(m).
// Slots: 2 rs, 3 mu, 4 nmuwd, 5 nmu, 6 decay, 7 lr, 8 one, 9 minus one.
TEXT ·signumAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
	VXORPS  Y9, Y9, Y9
loop:
	VMOVUPS (SI)(AX*1), Y1
	VMULPS  S2, Y1, Y1
	CLIP(Y1)
	VMULPS  S5, Y1, Y1
	VMOVUPS (DI)(AX*1), Y0
	VMOVUPS (R8)(AX*1), Y2
	VMULPS  S3, Y2, Y2
	VMULPS  S4, Y0, Y3
	VSUBPS  Y3, Y2, Y2
	VSUBPS  Y1, Y2, Y2
	VMOVUPS Y2, (R8)(AX*1)
	SIGN(Y2, Y9, Y5, Y4, S8, S9)
	VMULPS  S7, Y4, Y4
	VMULPS  S6, Y0, Y0
	VADDPS  Y4, Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	NEXT(loop)

// func ftrlAVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// gr = clip(rs*g); gg = gr*gr; z = z + (gr - ((sqrt(n + gg) - sqrt(n))*w)/lr);
// n = n + gg; w = ((sign(z)*l1 - z)/((beta + sqrt(n))/lr + wd)) * (z > l1 || z < -l1).
// Slots: 2 rs, 3 wd, 4 lr, 5 l1, 6 -l1, 7 beta, 8 one, 9 minus one.
TEXT ·ftrlAVX2(SB), NOSPLIT, $0-56
	PROLOGUE
	VXORPS  Y9, Y9, Y9
	VMOVUPS S5, Y12
	VMOVUPS S6, Y13
loop:
	VMOVUPS (SI)(AX*1), Y1
	VMULPS  S2, Y1, Y1
	CLIP(Y1)
	VMULPS  Y1, Y1, Y2
	VMOVUPS (R9)(AX*1), Y3
	VADDPS  Y2, Y3, Y4
	VSQRTPS Y4, Y5
	VSQRTPS Y3, Y6
	VSUBPS  Y6, Y5, Y5
	VMOVUPS (DI)(AX*1), Y0
	VMULPS  Y0, Y5, Y5
	VDIVPS  S4, Y5, Y5
	VSUBPS  Y5, Y1, Y5
	VMOVUPS (R8)(AX*1), Y6
	VADDPS  Y5, Y6, Y6
	VMOVUPS Y6, (R8)(AX*1)
	VMOVUPS Y4, (R9)(AX*1)
	VCMPPS  GT, Y12, Y6, Y7
	VCMPPS  LT, Y13, Y6, Y8
	VORPS   Y8, Y7, Y7
	VANDPS  S8, Y7, Y7
	SIGN(Y6, Y9, Y8, Y10, S8, S9)
	VMULPS  Y12, Y10, Y10
	VSUBPS  Y6, Y10, Y10
	VSQRTPS Y4, Y4
	VADDPS  S7, Y4, Y4
	VDIVPS  S4, Y4, Y4
	VADDPS  S3, Y4, Y4
	VDIVPS  Y4, Y10, Y10
	VMULPS  Y7, Y10, Y10
	VMOVUPS Y10, (DI)(AX*1)
	NEXT(loop)

// func lambPhase2AVX2(k *vk, n int, w, gr, s0, s1, s2 *float32)
// u = (m/c1)/(sqrt(v/c2) + eps) + wd*w; w = w - lr*u (g unused).
// Slots: 2 c1, 3 c2, 4 eps, 5 wd, 6 lr.
TEXT ·lambPhase2AVX2(SB), NOSPLIT, $0-56
	PROLOGUE
loop:
	VMOVUPS (R8)(AX*1), Y3
	VDIVPS  S2, Y3, Y3
	VMOVUPS (R9)(AX*1), Y4
	VDIVPS  S3, Y4, Y4
	VSQRTPS Y4, Y4
	VADDPS  S4, Y4, Y4
	VDIVPS  Y4, Y3, Y3
	VMOVUPS (DI)(AX*1), Y0
	VMULPS  S5, Y0, Y5
	VADDPS  Y5, Y3, Y3
	VMULPS  S6, Y3, Y3
	VSUBPS  Y3, Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	NEXT(loop)

// ADDSEQ(y, x, t, t2, acc): acc += y[0]; acc += y[1]; acc += y[2];
// acc += y[3] for the 4 float64 lanes of y (x is y's low half), one after
// the other (the reference's order).
#define ADDSEQ(y, x, t, t2, acc) \
	VADDSD       x, acc, acc \
	VPERMILPD    $1, x, t \
	VADDSD       t, acc, acc \
	VEXTRACTF128 $1, y, t2 \
	VADDSD       t2, acc, acc \
	VPERMILPD    $1, t2, t2 \
	VADDSD       t2, acc, acc

// LAMB1(OFF, WW, UU): 8 elements of LAMB phase 1 at byte offset OFF:
// gr = clip(g*rs); m = b1*mean + nb1*gr; v = b2*var + (nb2*gr)*gr;
// u = (m/c1)/(sqrt(v/c2) + eps) + wd*w; WW += w*w and UU += u*u in float64,
// element after element. Uses Y0-Y7.
// Slots: 2 rs, 3 b1, 4 nb1, 5 b2, 6 nb2, 7 c1, 8 c2, 9 eps, 10 wd.
#define LAMB1(OFF, WW, UU) \
	VMOVUPS (SI)(OFF*1), Y1 \
	VMULPS  S2, Y1, Y1 \
	CLIP(Y1) \
	VMOVUPS (R8)(OFF*1), Y3 \
	VMULPS  S3, Y3, Y3 \
	VMULPS  S4, Y1, Y4 \
	VADDPS  Y4, Y3, Y3 \
	VMOVUPS Y3, (R8)(OFF*1) \
	VMULPS  S6, Y1, Y5 \
	VMULPS  Y1, Y5, Y5 \
	VMOVUPS (R9)(OFF*1), Y6 \
	VMULPS  S5, Y6, Y6 \
	VADDPS  Y5, Y6, Y6 \
	VMOVUPS Y6, (R9)(OFF*1) \
	VDIVPS  S7, Y3, Y3 \
	VDIVPS  S8, Y6, Y6 \
	VSQRTPS Y6, Y6 \
	VADDPS  S9, Y6, Y6 \
	VDIVPS  Y6, Y3, Y3 \
	VMOVUPS (DI)(OFF*1), Y0 \
	VMULPS  S10, Y0, Y5 \
	VADDPS  Y5, Y3, Y3 \
	VCVTPS2PD X0, Y4 \
	VMULPD    Y4, Y4, Y4 \
	VCVTPS2PD X3, Y5 \
	VMULPD    Y5, Y5, Y5 \
	ADDSEQ(Y4, X4, X6, X7, WW) \
	ADDSEQ(Y5, X5, X6, X7, UU) \
	VEXTRACTF128 $1, Y0, X0 \
	VEXTRACTF128 $1, Y3, X3 \
	VCVTPS2PD X0, Y4 \
	VMULPD    Y4, Y4, Y4 \
	VCVTPS2PD X3, Y5 \
	VMULPD    Y5, Y5, Y5 \
	ADDSEQ(Y4, X4, X6, X7, WW) \
	ADDSEQ(Y5, X5, X6, X7, UU)

// func lambPhase1AVX2(k *vk, n int, w, gr, s0, s1 *float32, sums *[2]float64)
// LAMB phase 1 over n elements, adding to sums[0] (w*w) and sums[1] (u*u).
TEXT ·lambPhase1AVX2(SB), NOSPLIT, $0-56
	MOVQ k+0(FP), R11
	MOVQ n+8(FP), CX
	MOVQ w+16(FP), DI
	MOVQ gr+24(FP), SI
	MOVQ s0+32(FP), R8
	MOVQ s1+40(FP), R9
	MOVQ sums+48(FP), R10
	SHLQ $2, CX
	XORQ AX, AX
	VMOVUPS 0(R11), Y14
	VMOVUPS 32(R11), Y15
	VMOVSD  0(R10), X12
	VMOVSD  8(R10), X13
loop:
	LAMB1(AX, X12, X13)
	ADDQ $32, AX
	CMPQ AX, CX
	JB   loop
	VMOVSD X12, 0(R10)
	VMOVSD X13, 8(R10)
	VZEROUPPER
	RET

// func lambPhase1x2AVX2(k *vk, n int, w, gr, s0, s1 *float32, sums *[4]float64, stride int)
// LAMB phase 1 over two blocks of n elements, the second stride bytes after
// the first, interleaved: each block's sums are still added element after
// element (sums[0], sums[1] for the first block, sums[2], sums[3] for the
// second), but the two blocks' addition chains overlap in the pipeline,
// where one block's chains alone bound the loop by their latency.
TEXT ·lambPhase1x2AVX2(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), R11
	MOVQ n+8(FP), CX
	MOVQ w+16(FP), DI
	MOVQ gr+24(FP), SI
	MOVQ s0+32(FP), R8
	MOVQ s1+40(FP), R9
	MOVQ sums+48(FP), R10
	MOVQ stride+56(FP), DX
	SHLQ $2, CX
	XORQ AX, AX
	VMOVUPS 0(R11), Y14
	VMOVUPS 32(R11), Y15
	VMOVSD  0(R10), X10
	VMOVSD  8(R10), X11
	VMOVSD  16(R10), X12
	VMOVSD  24(R10), X13
loop:
	LAMB1(AX, X10, X11)
	LEAQ (AX)(DX*1), BX
	LAMB1(BX, X12, X13)
	ADDQ $32, AX
	CMPQ AX, CX
	JB   loop
	VMOVSD X10, 0(R10)
	VMOVSD X11, 8(R10)
	VMOVSD X12, 16(R10)
	VMOVSD X13, 24(R10)
	VZEROUPPER
	RET
