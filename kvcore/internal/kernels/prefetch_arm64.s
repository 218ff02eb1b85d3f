//go:build arm64 && !purego

#include "textflag.h"

// func Prefetch(p unsafe.Pointer)
TEXT ·Prefetch(SB), NOSPLIT|NOFRAME, $0-8
	MOVD p+0(FP), R0
	PRFM (R0), PLDL1KEEP
	RET

// func PrefetchOff(p unsafe.Pointer, off uintptr)
TEXT ·PrefetchOff(SB), NOSPLIT|NOFRAME, $0-16
	MOVD p+0(FP), R0
	MOVD off+8(FP), R1
	ADD  R1, R0
	PRFM (R0), PLDL1KEEP
	RET
