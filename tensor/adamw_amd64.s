#include "textflag.h"

// func adamwAVX2(n int, data, grad, m, v *float32, s *AdamWStep)
// One AdamW step over n elements (a multiple of 8), each operation rounded
// on its own as in adamwGo. AdamWStep's fields in order: decay, β₁, 1−β₁,
// β₂, 1−β₂, √(1−β₂ᵗ), eps, step size.
TEXT ·adamwAVX2(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ data+8(FP), DI
	MOVQ grad+16(FP), SI
	MOVQ m+24(FP), R8
	MOVQ v+32(FP), R9
	MOVQ s+40(FP), AX
	VBROADCASTSS 0(AX), Y8   // decay
	VBROADCASTSS 4(AX), Y9   // β₁
	VBROADCASTSS 8(AX), Y10  // 1−β₁
	VBROADCASTSS 12(AX), Y11 // β₂
	VBROADCASTSS 16(AX), Y12 // 1−β₂
	VBROADCASTSS 20(AX), Y13 // √(1−β₂ᵗ)
	VBROADCASTSS 24(AX), Y14 // eps
	VBROADCASTSS 28(AX), Y15 // step size
	SHRQ $3, CX
	JZ adone

aloop:
	VMOVUPS (SI), Y1
	VMULPS (DI), Y8, Y0      // data·decay
	VMULPS (R8), Y9, Y2      // β₁m
	VMULPS Y1, Y10, Y3       // (1−β₁)g
	VADDPS Y3, Y2, Y2        // m
	VMOVUPS Y2, (R8)
	VMULPS (R9), Y11, Y4     // β₂v
	VMULPS Y1, Y12, Y5       // (1−β₂)g
	VMULPS Y1, Y5, Y5        // ·g
	VADDPS Y5, Y4, Y4        // v
	VMOVUPS Y4, (R9)
	VSQRTPS Y4, Y6
	VDIVPS Y13, Y6, Y6       // √v / √(1−β₂ᵗ)
	VADDPS Y14, Y6, Y6       // + eps
	VMULPS Y2, Y15, Y7       // step size·m
	VDIVPS Y6, Y7, Y7
	VSUBPS Y7, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R8
	ADDQ $32, R9
	DECQ CX
	JNZ aloop

adone:
	VZEROUPPER
	RET
