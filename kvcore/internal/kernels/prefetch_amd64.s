//go:build amd64 && !purego

#include "textflag.h"

// func Prefetch(p unsafe.Pointer)
TEXT ·Prefetch(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ       p+0(FP), AX
	PREFETCHT0 (AX)
	RET

// func PrefetchOff(p unsafe.Pointer, off uintptr)
TEXT ·PrefetchOff(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ       p+0(FP), AX
	ADDQ       off+8(FP), AX
	PREFETCHT0 (AX)
	RET
