#include "textflag.h"

// func sumSquaresAVX512(n int, x *float32) float64
// Σ x[i]² over n values (a multiple of 16), in float64: two running sums
// of eight lanes, each value widened exactly and its square exact.
TEXT ·sumSquaresAVX512(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ x+8(FP), SI
	VXORPD Z0, Z0, Z0
	VXORPD Z1, Z1, Z1
	SHRQ $4, CX
	JZ ssdone
ssloop:
	VCVTPS2PD (SI), Z2
	VCVTPS2PD 32(SI), Z3
	VFMADD231PD Z2, Z2, Z0
	VFMADD231PD Z3, Z3, Z1
	ADDQ $64, SI
	DECQ CX
	JNZ ssloop
ssdone:
	VADDPD Z1, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPD Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPD X1, X0, X0
	VPERMILPD $1, X0, X1
	VADDSD X1, X0, X0
	VMOVSD X0, ret+16(FP)
	VZEROUPPER
	RET

// func normRowAVX512(n int, y, x, w *float32, s float32)
// y[i] = x[i]·s·w[i] over n values (a multiple of 16), rounded as Go
// rounds (x·s first).
TEXT ·normRowAVX512(SB), NOSPLIT, $0-36
	MOVQ n+0(FP), CX
	MOVQ y+8(FP), DI
	MOVQ x+16(FP), SI
	MOVQ w+24(FP), DX
	VBROADCASTSS s+32(FP), Z0
	SHRQ $4, CX
	JZ nrdone
nrloop:
	VMULPS (SI), Z0, Z1
	VMULPS (DX), Z1, Z1
	VMOVUPS Z1, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ nrloop
nrdone:
	VZEROUPPER
	RET
