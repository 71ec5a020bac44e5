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

// func addAVX512(n int, y, x *float32)
// y[i] += x[i] over n values (a multiple of 16).
TEXT ·addAVX512(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ y+8(FP), DI
	MOVQ x+16(FP), SI
	SHRQ $4, CX
	JZ adddone
addloop:
	VMOVUPS (DI), Z0
	VADDPS (SI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ addloop
adddone:
	VZEROUPPER
	RET

// ROPE rotates x1 (Z0) and x2 (Z1) by c (Z2) and s (Z3) into Z4, Z6:
// x1·c − (dir·x2)·s and x2·c + (dir·x1)·s, dir in Z31.
#define ROPE \
	VMULPS Z2, Z0, Z4; \
	VMULPS Z31, Z1, Z5; \
	VMULPS Z3, Z5, Z5; \
	VSUBPS Z5, Z4, Z4; \
	VMULPS Z2, Z1, Z6; \
	VMULPS Z31, Z0, Z7; \
	VMULPS Z3, Z7, Z7; \
	VADDPS Z7, Z6, Z6

// func ropeAVX512(rows, half int, v, c, s *float32, dir float32)
// Rotates rows vectors of 2·half values (one after another, v) by the
// angles whose cosines and sines are c[0:half], s[0:half]: x1 = v[i], x2
// = v[half+i] become x1·c − (dir·x2)·s and x2·c + (dir·x1)·s, each
// product and the sum rounded as Go rounds them. K1 masks the last
// partial vector of each half.
TEXT ·ropeAVX512(SB), NOSPLIT, $0-44
	MOVQ rows+0(FP), BX
	MOVQ half+8(FP), R8
	MOVQ v+16(FP), DI
	MOVQ c+24(FP), R9
	MOVQ s+32(FP), R10
	VBROADCASTSS dir+40(FP), Z31
	MOVQ R8, CX
	ANDQ $15, CX
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1 // the partial vector's lanes
	LEAQ (DI)(R8*4), R11 // the row's second half
	SHLQ $3, R8 // bytes in a row
ropes:
	XORQ DX, DX // byte offset within the half
	MOVQ half+8(FP), CX
	SHRQ $4, CX
	JZ ropetail
ropevec:
	VMOVUPS (DI)(DX*1), Z0
	VMOVUPS (R11)(DX*1), Z1
	VMOVUPS (R9)(DX*1), Z2
	VMOVUPS (R10)(DX*1), Z3
	ROPE
	VMOVUPS Z4, (DI)(DX*1)
	VMOVUPS Z6, (R11)(DX*1)
	ADDQ $64, DX
	DECQ CX
	JNZ ropevec
ropetail:
	KORTESTW K1, K1
	JZ ropenext
	VMOVUPS.Z (DI)(DX*1), K1, Z0
	VMOVUPS.Z (R11)(DX*1), K1, Z1
	VMOVUPS.Z (R9)(DX*1), K1, Z2
	VMOVUPS.Z (R10)(DX*1), K1, Z3
	ROPE
	VMOVUPS Z4, K1, (DI)(DX*1)
	VMOVUPS Z6, K1, (R11)(DX*1)
ropenext:
	ADDQ R8, DI
	ADDQ R8, R11
	DECQ BX
	JNZ ropes
	VZEROUPPER
	RET

// func dealRowAVX512(panels int, row, dst *float32, stride int)
// Copies 32 values at a time from row to dst, dst+stride, dst+2·stride …
// (stride in values): one row of B dealt out to its packed panels.
TEXT ·dealRowAVX512(SB), NOSPLIT, $0-32
	MOVQ panels+0(FP), CX
	MOVQ row+8(FP), SI
	MOVQ dst+16(FP), DI
	MOVQ stride+24(FP), DX
	SHLQ $2, DX
dealloop:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	ADDQ $128, SI
	ADDQ DX, DI
	DECQ CX
	JNZ dealloop
	VZEROUPPER
	RET
