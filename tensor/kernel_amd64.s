#include "textflag.h"

// func kernel4x16AVX2(k int, a *float32, cs int, b, c *float32, ldc int, alpha float32, store bool)
// C[4×16] += alpha · A[4×k] · B[k×16], with B packed as k rows of 16; A's
// element (i, p) is a[p·cs + i]: cs = 4 for a packed panel, lda for a
// transposed A read in place. With store, C = 0 + alpha · A · B (its old
// values are not read, as if it had been cleared).
TEXT ·kernel4x16AVX2(SB), NOSPLIT, $0-53
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ cs+16(FP), R9
	SHLQ $2, R9
	MOVQ b+24(FP), DI
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R8
	VBROADCASTSS alpha+48(FP), Y15
	// Y14: the mask for loading C, all ones to accumulate, zero to store.
	MOVBLZX store+52(FP), AX
	DECL AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	TESTQ CX, CX
	JE store

loop:
	VMOVUPS (DI), Y8
	VMOVUPS 32(DI), Y9
	VBROADCASTSS (SI), Y10
	VFMADD231PS Y8, Y10, Y0
	VFMADD231PS Y9, Y10, Y1
	VBROADCASTSS 4(SI), Y11
	VFMADD231PS Y8, Y11, Y2
	VFMADD231PS Y9, Y11, Y3
	VBROADCASTSS 8(SI), Y12
	VFMADD231PS Y8, Y12, Y4
	VFMADD231PS Y9, Y12, Y5
	VBROADCASTSS 12(SI), Y13
	VFMADD231PS Y8, Y13, Y6
	VFMADD231PS Y9, Y13, Y7
	ADDQ R9, SI
	ADDQ $64, DI
	DECQ CX
	JNE loop

store:
	SHLQ $2, R8
	VMASKMOVPS (DX), Y14, Y8
	VFMADD231PS Y0, Y15, Y8
	VMOVUPS Y8, (DX)
	VMASKMOVPS 32(DX), Y14, Y9
	VFMADD231PS Y1, Y15, Y9
	VMOVUPS Y9, 32(DX)
	ADDQ R8, DX
	VMASKMOVPS (DX), Y14, Y8
	VFMADD231PS Y2, Y15, Y8
	VMOVUPS Y8, (DX)
	VMASKMOVPS 32(DX), Y14, Y9
	VFMADD231PS Y3, Y15, Y9
	VMOVUPS Y9, 32(DX)
	ADDQ R8, DX
	VMASKMOVPS (DX), Y14, Y8
	VFMADD231PS Y4, Y15, Y8
	VMOVUPS Y8, (DX)
	VMASKMOVPS 32(DX), Y14, Y9
	VFMADD231PS Y5, Y15, Y9
	VMOVUPS Y9, 32(DX)
	ADDQ R8, DX
	VMASKMOVPS (DX), Y14, Y8
	VFMADD231PS Y6, Y15, Y8
	VMOVUPS Y8, (DX)
	VMASKMOVPS 32(DX), Y14, Y9
	VFMADD231PS Y7, Y15, Y9
	VMOVUPS Y9, 32(DX)
	VZEROUPPER
	RET

// func kernel4x16AVX2N(k int, a *float32, rs int, b, c *float32, ldc int, alpha float32, store bool)
// kernel4x16AVX2 for A read in place by rows: A's element (i, p) is
// a[i·rs + p]. The products are summed in the same order as with a packed A.
TEXT ·kernel4x16AVX2N(SB), NOSPLIT, $0-53
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ rs+16(FP), R9
	SHLQ $2, R9
	MOVQ b+24(FP), DI
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R8
	VBROADCASTSS alpha+48(FP), Y15
	MOVBLZX store+52(FP), AX
	DECL AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	LEAQ (SI)(R9*2), R10
	ADDQ R9, R10 // row 3
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	TESTQ CX, CX
	JE storen

loopn:
	VMOVUPS (DI), Y8
	VMOVUPS 32(DI), Y9
	VBROADCASTSS (SI), Y10
	VFMADD231PS Y8, Y10, Y0
	VFMADD231PS Y9, Y10, Y1
	VBROADCASTSS (SI)(R9*1), Y11
	VFMADD231PS Y8, Y11, Y2
	VFMADD231PS Y9, Y11, Y3
	VBROADCASTSS (SI)(R9*2), Y12
	VFMADD231PS Y8, Y12, Y4
	VFMADD231PS Y9, Y12, Y5
	VBROADCASTSS (R10), Y13
	VFMADD231PS Y8, Y13, Y6
	VFMADD231PS Y9, Y13, Y7
	ADDQ $4, SI
	ADDQ $4, R10
	ADDQ $64, DI
	DECQ CX
	JNE loopn

storen:
	SHLQ $2, R8
	VMASKMOVPS (DX), Y14, Y8
	VFMADD231PS Y0, Y15, Y8
	VMOVUPS Y8, (DX)
	VMASKMOVPS 32(DX), Y14, Y9
	VFMADD231PS Y1, Y15, Y9
	VMOVUPS Y9, 32(DX)
	ADDQ R8, DX
	VMASKMOVPS (DX), Y14, Y8
	VFMADD231PS Y2, Y15, Y8
	VMOVUPS Y8, (DX)
	VMASKMOVPS 32(DX), Y14, Y9
	VFMADD231PS Y3, Y15, Y9
	VMOVUPS Y9, 32(DX)
	ADDQ R8, DX
	VMASKMOVPS (DX), Y14, Y8
	VFMADD231PS Y4, Y15, Y8
	VMOVUPS Y8, (DX)
	VMASKMOVPS 32(DX), Y14, Y9
	VFMADD231PS Y5, Y15, Y9
	VMOVUPS Y9, 32(DX)
	ADDQ R8, DX
	VMASKMOVPS (DX), Y14, Y8
	VFMADD231PS Y6, Y15, Y8
	VMOVUPS Y8, (DX)
	VMASKMOVPS 32(DX), Y14, Y9
	VFMADD231PS Y7, Y15, Y9
	VMOVUPS Y9, 32(DX)
	VZEROUPPER
	RET

// func kernel8x32AVX512(k int, a *float32, cs int, b, c *float32, ldc int, alpha float32, store bool)
// C[8×32] += alpha · A[8×k] · B[k×32], B packed as k rows of 32; A's
// element (i, p) is a[p·cs + i]: cs = 8 for a packed panel, lda for a
// transposed A read in place. With store, C = 0 + alpha · A · B (its old
// values are not read, as if it had been cleared).
TEXT ·kernel8x32AVX512(SB), NOSPLIT, $0-53
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ cs+16(FP), R9
	SHLQ $2, R9
	MOVQ b+24(FP), DI
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R8
	VBROADCASTSS alpha+48(FP), Z31
	// K1: the mask for loading C, all ones to accumulate, zero to store.
	MOVBLZX store+52(FP), AX
	DECL AX
	KMOVW AX, K1
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	TESTQ CX, CX
	JE store512

loop512:
	VMOVUPS (DI), Z16
	VMOVUPS 64(DI), Z17
	VBROADCASTSS 0(SI), Z18
	VFMADD231PS Z16, Z18, Z0
	VFMADD231PS Z17, Z18, Z1
	VBROADCASTSS 4(SI), Z19
	VFMADD231PS Z16, Z19, Z2
	VFMADD231PS Z17, Z19, Z3
	VBROADCASTSS 8(SI), Z20
	VFMADD231PS Z16, Z20, Z4
	VFMADD231PS Z17, Z20, Z5
	VBROADCASTSS 12(SI), Z21
	VFMADD231PS Z16, Z21, Z6
	VFMADD231PS Z17, Z21, Z7
	VBROADCASTSS 16(SI), Z18
	VFMADD231PS Z16, Z18, Z8
	VFMADD231PS Z17, Z18, Z9
	VBROADCASTSS 20(SI), Z19
	VFMADD231PS Z16, Z19, Z10
	VFMADD231PS Z17, Z19, Z11
	VBROADCASTSS 24(SI), Z20
	VFMADD231PS Z16, Z20, Z12
	VFMADD231PS Z17, Z20, Z13
	VBROADCASTSS 28(SI), Z21
	VFMADD231PS Z16, Z21, Z14
	VFMADD231PS Z17, Z21, Z15
	ADDQ R9, SI
	ADDQ $128, DI
	DECQ CX
	JNE loop512

store512:
	SHLQ $2, R8
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z0, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z1, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z2, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z3, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z4, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z5, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z6, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z7, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z8, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z9, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z10, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z11, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z12, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z13, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z14, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z15, Z31, Z17
	VMOVUPS Z17, 64(DX)
	VZEROUPPER
	RET

// func kernel8x32AVX512N(k int, a *float32, rs int, b, c *float32, ldc int, alpha float32, store bool)
// kernel8x32AVX512 for A read in place by rows: A's element (i, p) is
// a[i·rs + p]. Each step broadcasts one value from each of the eight rows;
// the products are summed in the same order as with a packed A.
TEXT ·kernel8x32AVX512N(SB), NOSPLIT, $0-53
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ rs+16(FP), R9
	SHLQ $2, R9
	MOVQ b+24(FP), DI
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R8
	VBROADCASTSS alpha+48(FP), Z31
	// K1: the mask for loading C, all ones to accumulate, zero to store.
	MOVBLZX store+52(FP), AX
	DECL AX
	KMOVW AX, K1
	LEAQ (SI)(R9*2), R10
	ADDQ R9, R10 // row 3
	LEAQ (R10)(R9*2), R11
	ADDQ R9, R11 // row 6
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	TESTQ CX, CX
	JE store512n

loop512n:
	VMOVUPS (DI), Z16
	VMOVUPS 64(DI), Z17
	VBROADCASTSS (SI), Z18
	VFMADD231PS Z16, Z18, Z0
	VFMADD231PS Z17, Z18, Z1
	VBROADCASTSS (SI)(R9*1), Z19
	VFMADD231PS Z16, Z19, Z2
	VFMADD231PS Z17, Z19, Z3
	VBROADCASTSS (SI)(R9*2), Z20
	VFMADD231PS Z16, Z20, Z4
	VFMADD231PS Z17, Z20, Z5
	VBROADCASTSS (R10), Z21
	VFMADD231PS Z16, Z21, Z6
	VFMADD231PS Z17, Z21, Z7
	VBROADCASTSS (SI)(R9*4), Z18
	VFMADD231PS Z16, Z18, Z8
	VFMADD231PS Z17, Z18, Z9
	VBROADCASTSS (R10)(R9*2), Z19
	VFMADD231PS Z16, Z19, Z10
	VFMADD231PS Z17, Z19, Z11
	VBROADCASTSS (R11), Z20
	VFMADD231PS Z16, Z20, Z12
	VFMADD231PS Z17, Z20, Z13
	VBROADCASTSS (R10)(R9*4), Z21
	VFMADD231PS Z16, Z21, Z14
	VFMADD231PS Z17, Z21, Z15
	ADDQ $4, SI
	ADDQ $4, R10
	ADDQ $4, R11
	ADDQ $128, DI
	DECQ CX
	JNE loop512n

store512n:
	SHLQ $2, R8
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z0, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z1, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z2, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z3, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z4, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z5, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z6, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z7, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z8, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z9, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z10, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z11, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z12, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z13, Z31, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VMOVUPS.Z (DX), K1, Z16
	VFMADD231PS Z14, Z31, Z16
	VMOVUPS Z16, (DX)
	VMOVUPS.Z 64(DX), K1, Z17
	VFMADD231PS Z15, Z31, Z17
	VMOVUPS Z17, 64(DX)
	VZEROUPPER
	RET

// func dotAVX2(n int, a, b *float32) float32
// Σ a[i]·b[i] over the first n&^7 elements (the caller adds the tail), with
// four accumulators so that the FMA latency is hidden.
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ n+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

loop32:
	CMPQ CX, $32
	JLT loop8
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP loop32

loop8:
	CMPQ CX, $8
	JLT done
	VMOVUPS (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP loop8

done:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func dotBF16AVX2(n int, a *float32, b *uint16) float32
// As dotAVX2 with b in bfloat16, widened to float32 by a 16-bit shift.
TEXT ·dotBF16AVX2(SB), NOSPLIT, $0-28
	MOVQ n+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

bloop32:
	CMPQ CX, $32
	JLT bloop8
	VPMOVZXWD (DI), Y4
	VPMOVZXWD 16(DI), Y5
	VPMOVZXWD 32(DI), Y6
	VPMOVZXWD 48(DI), Y7
	VPSLLD $16, Y4, Y4
	VPSLLD $16, Y5, Y5
	VPSLLD $16, Y6, Y6
	VPSLLD $16, Y7, Y7
	VFMADD231PS (SI), Y4, Y0
	VFMADD231PS 32(SI), Y5, Y1
	VFMADD231PS 64(SI), Y6, Y2
	VFMADD231PS 96(SI), Y7, Y3
	ADDQ $128, SI
	ADDQ $64, DI
	SUBQ $32, CX
	JMP bloop32

bloop8:
	CMPQ CX, $8
	JLT bdone
	VPMOVZXWD (DI), Y4
	VPSLLD $16, Y4, Y4
	VFMADD231PS (SI), Y4, Y0
	ADDQ $32, SI
	ADDQ $16, DI
	SUBQ $8, CX
	JMP bloop8

bdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func axpyAVX2(n int, alpha float32, x, y *float32)
// y[i] += alpha·x[i] over the first n&^7 elements (the caller does the tail).
TEXT ·axpyAVX2(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	VBROADCASTSS alpha+8(FP), Y0
	MOVQ x+16(FP), SI
	MOVQ y+24(FP), DI

aloop32:
	CMPQ CX, $32
	JLT aloop8
	VMOVUPS (DI), Y1
	VMOVUPS 32(DI), Y2
	VMOVUPS 64(DI), Y3
	VMOVUPS 96(DI), Y4
	VFMADD231PS (SI), Y0, Y1
	VFMADD231PS 32(SI), Y0, Y2
	VFMADD231PS 64(SI), Y0, Y3
	VFMADD231PS 96(SI), Y0, Y4
	VMOVUPS Y1, (DI)
	VMOVUPS Y2, 32(DI)
	VMOVUPS Y3, 64(DI)
	VMOVUPS Y4, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP aloop32

aloop8:
	CMPQ CX, $8
	JLT adone
	VMOVUPS (DI), Y1
	VFMADD231PS (SI), Y0, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP aloop8

adone:
	VZEROUPPER
	RET

// func dot4AVX2(n int, w, x *float32, ldx int, out *float32)
// out[r] = Σ w[i]·x[r·ldx+i] for the four rows r of x, over the first n&^7
// elements: each 8 values of w are loaded once for the four rows.
TEXT ·dot4AVX2(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), DI
	MOVQ ldx+24(FP), R8
	MOVQ out+32(FP), DX
	SHLQ $2, R8
	LEAQ (DI)(R8*1), R9
	LEAQ (R9)(R8*1), R10
	LEAQ (R10)(R8*1), R11
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

d4loop:
	CMPQ CX, $8
	JLT d4done
	VMOVUPS (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS (R9), Y4, Y1
	VFMADD231PS (R10), Y4, Y2
	VFMADD231PS (R11), Y4, Y3
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R9
	ADDQ $32, R10
	ADDQ $32, R11
	SUBQ $8, CX
	JMP d4loop

d4done:
	// Horizontal sums of the four accumulators into out[0..3].
	VHADDPS Y1, Y0, Y0
	VHADDPS Y3, Y2, Y2
	VHADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVUPS X0, (DX)
	VZEROUPPER
	RET

// func dot8AVX2(n int, w, x *float32, ldx int, out *float32)
// dot4AVX2 for eight rows of x: twice the independent FMAs per load of w,
// so the accumulators' latency no longer bounds decoding batches of 8.
// Each row is summed in the same order as dot4AVX2 sums it.
TEXT ·dot8AVX2(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), DI
	MOVQ ldx+24(FP), R8
	MOVQ out+32(FP), DX
	SHLQ $2, R8
	LEAQ (DI)(R8*1), R9
	LEAQ (R9)(R8*1), R10
	LEAQ (R10)(R8*1), R11
	SHLQ $2, R8 // four rows on: rows 4-7 are rows 0-3 + R8
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

d8loop:
	CMPQ CX, $8
	JLT d8done
	VMOVUPS (SI), Y8
	VFMADD231PS (DI), Y8, Y0
	VFMADD231PS (R9), Y8, Y1
	VFMADD231PS (R10), Y8, Y2
	VFMADD231PS (R11), Y8, Y3
	VFMADD231PS (DI)(R8*1), Y8, Y4
	VFMADD231PS (R9)(R8*1), Y8, Y5
	VFMADD231PS (R10)(R8*1), Y8, Y6
	VFMADD231PS (R11)(R8*1), Y8, Y7
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R9
	ADDQ $32, R10
	ADDQ $32, R11
	SUBQ $8, CX
	JMP d8loop

d8done:
	VHADDPS Y1, Y0, Y0
	VHADDPS Y3, Y2, Y2
	VHADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVUPS X0, (DX)
	VHADDPS Y5, Y4, Y4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VADDPS X5, X4, X4
	VMOVUPS X4, 16(DX)
	VZEROUPPER
	RET

// func cpuidF16C() bool
// CPUID leaf 1, ECX bit 29: the F16C half-float conversions, which
// golang.org/x/sys/cpu does not report.
TEXT ·cpuidF16C(SB), NOSPLIT, $0-1
	MOVL $1, AX
	XORL CX, CX
	CPUID
	SHRL $29, CX
	ANDL $1, CX
	MOVB CX, ret+0(FP)
	RET

// func dotF16AVX2(n int, a *float32, b *uint16) float32
// As dotBF16AVX2 with b in IEEE half precision, widened by VCVTPH2PS;
// n is a multiple of 8.
TEXT ·dotF16AVX2(SB), NOSPLIT, $0-28
	MOVQ n+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

hloop32:
	CMPQ CX, $32
	JLT hloop8
	VCVTPH2PS (DI), Y4
	VCVTPH2PS 16(DI), Y5
	VCVTPH2PS 32(DI), Y6
	VCVTPH2PS 48(DI), Y7
	VFMADD231PS (SI), Y4, Y0
	VFMADD231PS 32(SI), Y5, Y1
	VFMADD231PS 64(SI), Y6, Y2
	VFMADD231PS 96(SI), Y7, Y3
	ADDQ $128, SI
	ADDQ $64, DI
	SUBQ $32, CX
	JMP hloop32

hloop8:
	CMPQ CX, $8
	JLT hdone
	VCVTPH2PS (DI), Y4
	VFMADD231PS (SI), Y4, Y0
	ADDQ $32, SI
	ADDQ $16, DI
	SUBQ $8, CX
	JMP hloop8

hdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func dotQ8_0AVX2(nb int, a *float32, b *byte) float32
// Σ a[i]·w[i] over nb ggml Q8_0 blocks b (a float16 scale d, then 32
// int8 q, w = d·q): each block's Σ q·a is summed in two registers and
// then scaled by d into the two accumulators, two multiplies fewer per
// block than scaling every q (the loop is bound by arithmetic, not by
// reading the weights).
TEXT ·dotQ8_0AVX2(SB), NOSPLIT, $0-28
	MOVQ nb+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	TESTQ CX, CX
	JEQ q8done

q8loop:
	VPMOVSXBD 2(DI), Y4
	VPMOVSXBD 10(DI), Y5
	VPMOVSXBD 18(DI), Y6
	VPMOVSXBD 26(DI), Y7
	VPBROADCASTW (DI), X8
	VCVTPH2PS X8, Y8
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y6, Y6
	VCVTDQ2PS Y7, Y7
	VMULPS (SI), Y4, Y4
	VMULPS 32(SI), Y5, Y5
	VFMADD231PS 64(SI), Y6, Y4
	VFMADD231PS 96(SI), Y7, Y5
	VFMADD231PS Y8, Y4, Y0
	VFMADD231PS Y8, Y5, Y1
	ADDQ $128, SI
	ADDQ $34, DI
	DECQ CX
	JNZ q8loop

q8done:
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func dotQ4_0AVX2(nb int, a *float32, b *byte) float32
// As dotQ8_0AVX2 over ggml Q4_0 blocks (a float16 scale d, then 16
// bytes: value j in the low nibble of byte j, value j+16 in its high
// nibble; w = d·(nibble−8)). Each 8 bytes, zero-extended to 8 int32s
// once, give 8 values from the low nibbles and 8 from the high ones.
TEXT ·dotQ4_0AVX2(SB), NOSPLIT, $0-28
	MOVQ nb+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	MOVL $15, AX
	MOVQ AX, X15
	VPBROADCASTD X15, Y15
	MOVL $8, AX
	MOVQ AX, X14
	VPBROADCASTD X14, Y14
	TESTQ CX, CX
	JEQ q4done

q4loop:
	VPMOVZXBD 2(DI), Y4
	VPMOVZXBD 10(DI), Y5
	VPSRLD $4, Y4, Y6
	VPSRLD $4, Y5, Y7
	VPAND Y15, Y4, Y4
	VPAND Y15, Y5, Y5
	VPSUBD Y14, Y4, Y4
	VPSUBD Y14, Y5, Y5
	VPSUBD Y14, Y6, Y6
	VPSUBD Y14, Y7, Y7
	VPBROADCASTW (DI), X8
	VCVTPH2PS X8, Y8
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y6, Y6
	VCVTDQ2PS Y7, Y7
	VMULPS (SI), Y4, Y4
	VMULPS 32(SI), Y5, Y5
	VFMADD231PS 64(SI), Y6, Y4
	VFMADD231PS 96(SI), Y7, Y5
	VFMADD231PS Y8, Y4, Y0
	VFMADD231PS Y8, Y5, Y1
	ADDQ $128, SI
	ADDQ $18, DI
	DECQ CX
	JNZ q4loop

q4done:
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func wsum32AVX2(n int, p, v *float32, ldv int, out *float32)
// out[c] = Σ_j p[j]·v[j·ldv+c] for the 32 columns c, over n rows: the
// attention-weighted sum of cached values. Even and odd rows go to
// separate accumulators, so two FMA chains run at once per column block.
TEXT ·wsum32AVX2(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ p+8(FP), SI
	MOVQ v+16(FP), DI
	MOVQ ldv+24(FP), R8
	MOVQ out+32(FP), DX
	SHLQ $2, R8
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

ws2:
	CMPQ CX, $2
	JLT ws1
	VBROADCASTSS (SI), Y8
	VBROADCASTSS 4(SI), Y9
	LEAQ (DI)(R8*1), R9
	VFMADD231PS (DI), Y8, Y0
	VFMADD231PS 32(DI), Y8, Y1
	VFMADD231PS 64(DI), Y8, Y2
	VFMADD231PS 96(DI), Y8, Y3
	VFMADD231PS (R9), Y9, Y4
	VFMADD231PS 32(R9), Y9, Y5
	VFMADD231PS 64(R9), Y9, Y6
	VFMADD231PS 96(R9), Y9, Y7
	ADDQ $8, SI
	LEAQ (R9)(R8*1), DI
	SUBQ $2, CX
	JMP ws2

ws1:
	CMPQ CX, $1
	JLT wsdone
	VBROADCASTSS (SI), Y8
	VFMADD231PS (DI), Y8, Y0
	VFMADD231PS 32(DI), Y8, Y1
	VFMADD231PS 64(DI), Y8, Y2
	VFMADD231PS 96(DI), Y8, Y3

wsdone:
	VADDPS Y4, Y0, Y0
	VADDPS Y5, Y1, Y1
	VADDPS Y6, Y2, Y2
	VADDPS Y7, Y3, Y3
	VMOVUPS Y0, (DX)
	VMOVUPS Y1, 32(DX)
	VMOVUPS Y2, 64(DX)
	VMOVUPS Y3, 96(DX)
	VZEROUPPER
	RET

// func wsum8AVX2(n int, p, v *float32, ldv int, out *float32)
// wsum32AVX2 for 8 columns: out[c] = Σ p[i]·v[i·ldv+c], c < 8, four
// rows of v in flight.
TEXT ·wsum8AVX2(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ p+8(FP), SI
	MOVQ v+16(FP), DI
	MOVQ ldv+24(FP), R8
	MOVQ out+32(FP), DX
	SHLQ $2, R8
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

w8loop4:
	CMPQ CX, $4
	JLT w8loop1
	VBROADCASTSS (SI), Y8
	VBROADCASTSS 4(SI), Y9
	VBROADCASTSS 8(SI), Y10
	VBROADCASTSS 12(SI), Y11
	VFMADD231PS (DI), Y8, Y0
	ADDQ R8, DI
	VFMADD231PS (DI), Y9, Y1
	ADDQ R8, DI
	VFMADD231PS (DI), Y10, Y2
	ADDQ R8, DI
	VFMADD231PS (DI), Y11, Y3
	ADDQ R8, DI
	ADDQ $16, SI
	SUBQ $4, CX
	JMP w8loop4

w8loop1:
	TESTQ CX, CX
	JEQ w8done
	VBROADCASTSS (SI), Y8
	VFMADD231PS (DI), Y8, Y0
	ADDQ R8, DI
	ADDQ $4, SI
	DECQ CX
	JMP w8loop1

w8done:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VMOVUPS Y0, (DX)
	VZEROUPPER
	RET

// func gemvAVX2(n int, x, w *float32, ldw, rows int, y *float32)
// y[r] = Σ x[i]·w[r·ldw+i] over i < n (a multiple of 8) for each of the
// rows: decoding's matrix-vector product in one call, each row summed
// exactly as dotAVX2 sums it.
TEXT ·gemvAVX2(SB), NOSPLIT, $0-48
	MOVQ x+8(FP), R10
	MOVQ w+16(FP), R11
	MOVQ ldw+24(FP), R8
	MOVQ rows+32(FP), R9
	MOVQ y+40(FP), DX
	SHLQ $2, R8

grow:
	CMPQ R9, $0
	JEQ gdone
	MOVQ n+0(FP), CX
	MOVQ R10, SI
	MOVQ R11, DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

gloop32:
	CMPQ CX, $32
	JLT gloop8
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP gloop32

gloop8:
	CMPQ CX, $8
	JLT growdone
	VMOVUPS (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP gloop8

growdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, (DX)
	ADDQ $4, DX
	ADDQ R8, R11
	DECQ R9
	JMP grow

gdone:
	VZEROUPPER
	RET

// The Q8_0 × Q8_0 and Q4_0 × Q8_0 decoding kernels: per block of 32, the
// weight codes w (signed bytes) and the input codes x give Σ w·x exactly
// as VPMADDUBSW(|w|, x·sign(w)) (16-bit pairs, at most 2·128·127) then
// VPMADDWD with ones (8 int32 sums); the sums, as floats, times the two
// scales go into the accumulator. Registers: DI the weight block, SI the
// input codes, R13 the input scales; Y13 words of 1, Y14 bytes of 8,
// Y15 bytes of 15.

// QDOT finishes a block whose signed weight codes are in Y4: acc += the
// block's products times d_w (float16 at wd) · d_x (float32 at xd).
#define QDOT(xq, wd, xd, acc) \
	VMOVDQU xq, Y5; \
	VPSIGNB Y4, Y4, Y6; \
	VPSIGNB Y4, Y5, Y5; \
	VPMADDUBSW Y5, Y6, Y6; \
	VPMADDWD Y13, Y6, Y6; \
	VCVTDQ2PS Y6, Y6; \
	VPBROADCASTW wd, X8; \
	VCVTPH2PS X8, Y8; \
	VBROADCASTSS xd, Y9; \
	VMULPS Y9, Y8, Y8; \
	VFMADD231PS Y8, Y6, acc

// Q4CODES loads a Q4_0 block's 32 codes at w (16 bytes: value j in the
// low nibble of byte j, value j+16 in its high one) into Y4 as signed
// bytes, nibble − 8.
#define Q4CODES(w) \
	VMOVDQU w, X4; \
	VPSRLW $4, X4, X5; \
	VINSERTI128 $1, X5, Y4, Y4; \
	VPAND Y15, Y4, Y4; \
	VPSUBB Y14, Y4, Y4

// QCONSTS sets Y13, Y14 and Y15.
#define QCONSTS \
	MOVL $0x00010001, AX; \
	MOVQ AX, X13; \
	VPBROADCASTD X13, Y13; \
	MOVL $0x08080808, AX; \
	MOVQ AX, X14; \
	VPBROADCASTD X14, Y14; \
	MOVL $0x0f0f0f0f, AX; \
	MOVQ AX, X15; \
	VPBROADCASTD X15, Y15

// QROWSUM adds the two accumulators, sums the lanes and stores the row's
// result at (DX), moving DX on.
#define QROWSUM \
	VADDPS Y1, Y0, Y0; \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS X1, X0, X0; \
	VHADDPS X0, X0, X0; \
	VHADDPS X0, X0, X0; \
	MOVSS X0, (DX); \
	ADDQ $4, DX

// func gemvQ8Q8AVX2(nb int, xq *int8, xd *float32, w *byte, rows int, y *float32)
// y[r] = Σ over the nb Q8_0 blocks of weight row r (rows consecutive from
// w) of the block's code products times both scales.
TEXT ·gemvQ8Q8AVX2(SB), NOSPLIT, $0-48
	MOVQ xq+8(FP), R10
	MOVQ xd+16(FP), R12
	MOVQ w+24(FP), DI
	MOVQ rows+32(FP), R9
	MOVQ y+40(FP), DX
	QCONSTS

q88row:
	CMPQ R9, $0
	JEQ q88done
	MOVQ nb+0(FP), CX
	MOVQ R10, SI
	MOVQ R12, R13
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1

q88two:
	CMPQ CX, $2
	JLT q88one
	VMOVDQU 2(DI), Y4
	QDOT((SI), (DI), (R13), Y0)
	VMOVDQU 36(DI), Y4
	QDOT(32(SI), 34(DI), 4(R13), Y1)
	ADDQ $68, DI
	ADDQ $64, SI
	ADDQ $8, R13
	SUBQ $2, CX
	JMP q88two

q88one:
	CMPQ CX, $1
	JLT q88sum
	VMOVDQU 2(DI), Y4
	QDOT((SI), (DI), (R13), Y0)
	ADDQ $34, DI

q88sum:
	QROWSUM
	DECQ R9
	JMP q88row

q88done:
	VZEROUPPER
	RET

// func gemvQ4Q8AVX2(nb int, xq *int8, xd *float32, w *byte, rows int, y *float32)
// gemvQ8Q8AVX2 for Q4_0 weight rows.
TEXT ·gemvQ4Q8AVX2(SB), NOSPLIT, $0-48
	MOVQ xq+8(FP), R10
	MOVQ xd+16(FP), R12
	MOVQ w+24(FP), DI
	MOVQ rows+32(FP), R9
	MOVQ y+40(FP), DX
	QCONSTS

q48row:
	CMPQ R9, $0
	JEQ q48done
	MOVQ nb+0(FP), CX
	MOVQ R10, SI
	MOVQ R12, R13
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1

q48two:
	CMPQ CX, $2
	JLT q48one
	Q4CODES(2(DI))
	QDOT((SI), (DI), (R13), Y0)
	Q4CODES(20(DI))
	QDOT(32(SI), 18(DI), 4(R13), Y1)
	ADDQ $36, DI
	ADDQ $64, SI
	ADDQ $8, R13
	SUBQ $2, CX
	JMP q48two

q48one:
	CMPQ CX, $1
	JLT q48sum
	Q4CODES(2(DI))
	QDOT((SI), (DI), (R13), Y0)
	ADDQ $18, DI

q48sum:
	QROWSUM
	DECQ R9
	JMP q48row

q48done:
	VZEROUPPER
	RET

// func gemvQ4Q8VNNI(nb int, xq *int8, xd *float32, bias *int32, w *byte, rows int, y *float32)
// gemvQ4Q8AVX2 with AVX512-VNNI's VPDPBUSD, which multiplies unsigned by
// signed bytes and sums each four into an int32 lane: the nibbles go in
// unsigned (0…15) and the −8 comes back as −8·Σx, which bias holds in the
// first of each block's eight lanes (the accumulator starts from it).
TEXT ·gemvQ4Q8VNNI(SB), NOSPLIT, $0-56
	MOVQ xq+8(FP), R10
	MOVQ xd+16(FP), R12
	MOVQ bias+24(FP), R11
	MOVQ w+32(FP), DI
	MOVQ rows+40(FP), R9
	MOVQ y+48(FP), DX
	QCONSTS

q4vrow:
	CMPQ R9, $0
	JEQ q4vdone
	MOVQ nb+0(FP), CX
	MOVQ R10, SI
	MOVQ R12, R13
	MOVQ R11, R14
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1

q4vtwo:
	CMPQ CX, $2
	JLT q4vone
	VMOVDQU 2(DI), X4
	VMOVDQU 20(DI), X5
	VPSRLW $4, X4, X6
	VPSRLW $4, X5, X7
	VINSERTI128 $1, X6, Y4, Y4
	VINSERTI128 $1, X7, Y5, Y5
	VPAND Y15, Y4, Y4
	VPAND Y15, Y5, Y5
	VMOVDQU (R14), Y6
	VMOVDQU 32(R14), Y7
	VPDPBUSD (SI), Y4, Y6
	VPDPBUSD 32(SI), Y5, Y7
	VCVTDQ2PS Y6, Y6
	VCVTDQ2PS Y7, Y7
	VPBROADCASTW (DI), X8
	VPBROADCASTW 18(DI), X9
	VCVTPH2PS X8, Y8
	VCVTPH2PS X9, Y9
	VMULPS.BCST (R13), Y8, Y8
	VMULPS.BCST 4(R13), Y9, Y9
	VFMADD231PS Y8, Y6, Y0
	VFMADD231PS Y9, Y7, Y1
	ADDQ $36, DI
	ADDQ $64, SI
	ADDQ $8, R13
	ADDQ $64, R14
	SUBQ $2, CX
	JMP q4vtwo

q4vone:
	CMPQ CX, $1
	JLT q4vsum
	VMOVDQU 2(DI), X4
	VPSRLW $4, X4, X6
	VINSERTI128 $1, X6, Y4, Y4
	VPAND Y15, Y4, Y4
	VMOVDQU (R14), Y6
	VPDPBUSD (SI), Y4, Y6
	VCVTDQ2PS Y6, Y6
	VPBROADCASTW (DI), X8
	VCVTPH2PS X8, Y8
	VMULPS.BCST (R13), Y8, Y8
	VFMADD231PS Y8, Y6, Y0
	ADDQ $18, DI

q4vsum:
	QROWSUM
	DECQ R9
	JMP q4vrow

q4vdone:
	VZEROUPPER
	RET

// nf4ilv interleaves two vectors of 16 (VPERMI2PS indices): 0, 16, 1, 17, ...
DATA nf4ilv<>+0(SB)/8, $0x0000001000000000
DATA nf4ilv<>+8(SB)/8, $0x0000001100000001
DATA nf4ilv<>+16(SB)/8, $0x0000001200000002
DATA nf4ilv<>+24(SB)/8, $0x0000001300000003
DATA nf4ilv<>+32(SB)/8, $0x0000001400000004
DATA nf4ilv<>+40(SB)/8, $0x0000001500000005
DATA nf4ilv<>+48(SB)/8, $0x0000001600000006
DATA nf4ilv<>+56(SB)/8, $0x0000001700000007
DATA nf4ilv<>+64(SB)/8, $0x0000001800000008
DATA nf4ilv<>+72(SB)/8, $0x0000001900000009
DATA nf4ilv<>+80(SB)/8, $0x0000001a0000000a
DATA nf4ilv<>+88(SB)/8, $0x0000001b0000000b
DATA nf4ilv<>+96(SB)/8, $0x0000001c0000000c
DATA nf4ilv<>+104(SB)/8, $0x0000001d0000000d
DATA nf4ilv<>+112(SB)/8, $0x0000001e0000000e
DATA nf4ilv<>+120(SB)/8, $0x0000001f0000000f
GLOBL nf4ilv<>(SB), RODATA|NOPTR, $128

// func widenNF4AVX512(nb int, packed *byte, scales, table, dst *float32, stride int)
// Widens nb whole NF4 blocks of 64 values (32 bytes, value 2i in the high
// nibble of byte i and 2i+1 in the low one) to table[code]·scales[block],
// each 32 values (128 bytes) stride bytes after the previous.
TEXT ·widenNF4AVX512(SB), NOSPLIT, $0-48
	MOVQ nb+0(FP), CX
	MOVQ packed+8(FP), SI
	MOVQ scales+16(FP), R8
	MOVQ table+24(FP), AX
	MOVQ dst+32(FP), DI
	MOVQ stride+40(FP), R9
	VMOVUPS (AX), Z15
	MOVL $15, AX
	VPBROADCASTD AX, Z14
	VMOVDQU32 nf4ilv<>+0(SB), Z12
	VMOVDQU32 nf4ilv<>+64(SB), Z11

	// A block of 64 values is 32 bytes; each half of 16 bytes is widened
	// to 16 dword codes, whose high and low nibbles index the block's
	// scaled table (NF4Code·scale: the bits of scaling each value), and the
	// two vectors of values are interleaved, high nibble first.
nf4blk:
	TESTQ CX, CX
	JEQ nf4done
	VBROADCASTSS (R8), Z13
	VMULPS Z13, Z15, Z16
	VPMOVZXBD (SI), Z0
	VPMOVZXBD 16(SI), Z4
	VPSRLD $4, Z0, Z1
	VPSRLD $4, Z4, Z5
	VPANDD Z14, Z0, Z0
	VPANDD Z14, Z4, Z4
	VPERMPS Z16, Z1, Z1
	VPERMPS Z16, Z0, Z0
	VPERMPS Z16, Z5, Z5
	VPERMPS Z16, Z4, Z4
	VMOVDQA32 Z12, Z2
	VMOVDQA32 Z11, Z3
	VMOVDQA32 Z12, Z6
	VMOVDQA32 Z11, Z7
	VPERMI2PS Z0, Z1, Z2
	VPERMI2PS Z0, Z1, Z3
	VPERMI2PS Z4, Z5, Z6
	VPERMI2PS Z4, Z5, Z7
	VMOVUPS Z2, (DI)
	VMOVUPS Z3, 64(DI)
	ADDQ R9, DI
	VMOVUPS Z6, (DI)
	VMOVUPS Z7, 64(DI)
	ADDQ R9, DI
	ADDQ $32, SI
	ADDQ $4, R8
	DECQ CX
	JMP nf4blk

nf4done:
	VZEROUPPER
	RET

// NF4TPAIR widens byte off/64 of the 16 rows in Z0 (rows 0-7) and Z4
// (rows 8-15) to two values of each row, scaled by Z30, and stores them as
// two rows of dst (DI, DI+R9), moving DI on by two.
#define NF4TPAIR(off) \
	VMOVDQU64 off(R15), Z8; \
	VPERMI2B Z4, Z0, Z8; \
	VPSRLD $4, Z8, Z9; \
	VPERMPS Z31, Z9, Z9; \
	VPERMPS Z31, Z8, Z8; \
	VMULPS Z30, Z9, Z9; \
	VMULPS Z30, Z8, Z8; \
	VMOVUPS Z9, (DI); \
	VMOVUPS Z8, (DI)(R9*1); \
	ADDQ DX, DI

// func widenNF4TAVX512(nb int, packed *byte, rowBytes int, scales, table *float32, idx *byte, dst *float32, ldd int)
// Widens nb whole NF4 blocks of each of 16 rows (row r's codes at packed +
// r·rowBytes) transposed: value k of row r to dst + k·ldd + 4r, as
// table[code]·scales[16·(k/64) + r].
TEXT ·widenNF4TAVX512(SB), NOSPLIT, $0-64
	MOVQ nb+0(FP), CX
	MOVQ packed+8(FP), SI
	MOVQ rowBytes+16(FP), BX
	MOVQ scales+24(FP), R8
	MOVQ table+32(FP), AX
	MOVQ idx+40(FP), R15
	MOVQ dst+48(FP), DI
	MOVQ ldd+56(FP), R9
	VMOVUPS (AX), Z31
	LEAQ (R9)(R9*1), DX
	// Bases from which the 16 rows are one scaled index away: rows 0, 1,
	// 2, 4, 8 from SI; 3, 5, 7, 11 from R10; 6, 10, 14 from R11; 9, 13 from
	// R12; 12 and 15.
	LEAQ (BX)(BX*2), AX
	LEAQ (SI)(AX*1), R10
	LEAQ (R10)(AX*1), R11
	LEAQ (R11)(AX*1), R12
	LEAQ (R12)(AX*1), R13
	LEAQ (R13)(AX*1), R14

	// Each step takes 8 bytes (16 values) of each row: the 16 rows' bytes
	// in two vectors, byte i of every row moved to the low byte of one
	// dword each (VPERMI2B), whose high nibble codes value 2i of the row
	// and low nibble value 2i+1 (VPERMPS reads an index's low 4 bits only,
	// so the dwords' other bytes do not matter).
nf4tblk:
	TESTQ CX, CX
	JEQ nf4tdone
	VMOVUPS (R8), Z30
	MOVQ $4, AX

nf4tstep:
	VMOVQ (SI), X0
	VPINSRQ $1, (SI)(BX*1), X0, X0
	VMOVQ (SI)(BX*2), X1
	VPINSRQ $1, (R10), X1, X1
	VMOVQ (SI)(BX*4), X2
	VPINSRQ $1, (R10)(BX*2), X2, X2
	VMOVQ (R11), X3
	VPINSRQ $1, (R10)(BX*4), X3, X3
	VMOVQ (SI)(BX*8), X4
	VPINSRQ $1, (R12), X4, X4
	VMOVQ (R11)(BX*4), X5
	VPINSRQ $1, (R10)(BX*8), X5, X5
	VMOVQ (R13), X6
	VPINSRQ $1, (R12)(BX*4), X6, X6
	VMOVQ (R11)(BX*8), X7
	VPINSRQ $1, (R14), X7, X7
	VINSERTI32X4 $1, X1, Z0, Z0
	VINSERTI32X4 $2, X2, Z0, Z0
	VINSERTI32X4 $3, X3, Z0, Z0
	VINSERTI32X4 $1, X5, Z4, Z4
	VINSERTI32X4 $2, X6, Z4, Z4
	VINSERTI32X4 $3, X7, Z4, Z4
	NF4TPAIR(0)
	NF4TPAIR(64)
	NF4TPAIR(128)
	NF4TPAIR(192)
	NF4TPAIR(256)
	NF4TPAIR(320)
	NF4TPAIR(384)
	NF4TPAIR(448)
	ADDQ $8, SI
	ADDQ $8, R10
	ADDQ $8, R11
	ADDQ $8, R12
	ADDQ $8, R13
	ADDQ $8, R14
	DECQ AX
	JNZ nf4tstep
	ADDQ $64, R8
	DECQ CX
	JMP nf4tblk

nf4tdone:
	VZEROUPPER
	RET

// NF4CODES codes the 16 values in x (divided by the maximum in Z4) and
// stores their 8 bytes at dst: c = 8·(x > mid[7]), then c += 4·(x >
// mid[c+3]), 2·(x > mid[c+1]) and x > mid[c], the midpoints looked up in Z30.
#define NF4CODES(x, dst) \
	VDIVPS Z4, x, x; \
	VCMPPS $0x1e, Z23, x, K1; \
	VPXORD Z8, Z8, Z8; \
	VPADDD Z26, Z8, K1, Z8; \
	VPADDD Z28, Z8, Z9; \
	VPERMPS Z30, Z9, Z9; \
	VCMPPS $0x1e, Z9, x, K1; \
	VPADDD Z25, Z8, K1, Z8; \
	VPADDD Z27, Z8, Z9; \
	VPERMPS Z30, Z9, Z9; \
	VCMPPS $0x1e, Z9, x, K1; \
	VPADDD Z24, Z8, K1, Z8; \
	VPERMPS Z30, Z8, Z9; \
	VCMPPS $0x1e, Z9, x, K1; \
	VPADDD Z27, Z8, K1, Z8; \
	VPSLLQ $4, Z8, Z9; \
	VPSRLQ $32, Z8, Z8; \
	VPORQ Z8, Z9, Z8; \
	VPMOVQB Z8, dst

// func quantizeNF4AVX512(nb int, w, mid *float32, packed *byte, absmax *float32)
// Quantizes nb whole blocks of 64 values as QuantizeNF4 does: each block's
// absolute maximum (the largest sign-cleared bit pattern, so a NaN wins
// over every number), then each value divided by it and coded by a
// four-step binary search over the 15 midpoints (mid, 16 values, the last
// +Inf), two codes a byte, the first in the high nibble. Blocks whose
// maximum is not positive are left for the caller to code.
TEXT ·quantizeNF4AVX512(SB), NOSPLIT, $0-40
	MOVQ nb+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ mid+16(FP), AX
	MOVQ packed+24(FP), DI
	MOVQ absmax+32(FP), R8
	VMOVUPS (AX), Z30
	MOVL $0x7fffffff, AX
	VPBROADCASTD AX, Z31
	MOVL $7, AX
	VPBROADCASTD AX, Z29
	MOVL $3, AX
	VPBROADCASTD AX, Z28
	MOVL $1, AX
	VPBROADCASTD AX, Z27
	MOVL $8, AX
	VPBROADCASTD AX, Z26
	MOVL $4, AX
	VPBROADCASTD AX, Z25
	MOVL $2, AX
	VPBROADCASTD AX, Z24
	VPERMPS Z30, Z29, Z23 // mid[7] in every lane

nf4qblk:
	TESTQ CX, CX
	JEQ nf4qdone
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVUPS 128(SI), Z2
	VMOVUPS 192(SI), Z3
	VPANDD Z31, Z0, Z4
	VPANDD Z31, Z1, Z5
	VPANDD Z31, Z2, Z6
	VPANDD Z31, Z3, Z7
	VPMAXUD Z4, Z5, Z4
	VPMAXUD Z6, Z7, Z6
	VPMAXUD Z4, Z6, Z4
	VEXTRACTI64X4 $1, Z4, Y5
	VPMAXUD Y4, Y5, Y4
	VEXTRACTI128 $1, Y4, X5
	VPMAXUD X4, X5, X4
	VPSHUFD $0x4e, X4, X5
	VPMAXUD X4, X5, X4
	VPSHUFD $0xb1, X4, X5
	VPMAXUD X4, X5, X4
	VMOVSS X4, (R8)
	VPBROADCASTD X4, Z4
	NF4CODES(Z0, (DI))
	NF4CODES(Z1, 8(DI))
	NF4CODES(Z2, 16(DI))
	NF4CODES(Z3, 24(DI))
	ADDQ $256, SI
	ADDQ $32, DI
	ADDQ $4, R8
	DECQ CX
	JMP nf4qblk

nf4qdone:
	VZEROUPPER
	RET

// func transpose8AVX2(src *float32, lds int, dst *float32, ldd int)
// dst[p·ldd + j] = src[j·lds + p] for an 8×8 block: rows interleaved in
// pairs (UNPCK), then in fours (SHUFPS), then halves swapped (VPERM2F128).
TEXT ·transpose8AVX2(SB), NOSPLIT, $0-32
	MOVQ src+0(FP), SI
	MOVQ lds+8(FP), AX
	MOVQ dst+16(FP), DI
	MOVQ ldd+24(FP), BX
	SHLQ $2, AX
	SHLQ $2, BX
	LEAQ (AX)(AX*2), CX // 3·lds
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(AX*1), Y1
	VMOVUPS (SI)(AX*2), Y2
	VMOVUPS (SI)(CX*1), Y3
	LEAQ (SI)(AX*4), SI
	VMOVUPS (SI), Y4
	VMOVUPS (SI)(AX*1), Y5
	VMOVUPS (SI)(AX*2), Y6
	VMOVUPS (SI)(CX*1), Y7
	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15
	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7
	LEAQ (BX)(BX*2), CX // 3·ldd
	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, (DI)(BX*1)
	VMOVUPS Y10, (DI)(BX*2)
	VMOVUPS Y11, (DI)(CX*1)
	LEAQ (DI)(BX*4), DI
	VMOVUPS Y12, (DI)
	VMOVUPS Y13, (DI)(BX*1)
	VMOVUPS Y14, (DI)(BX*2)
	VMOVUPS Y15, (DI)(CX*1)
	VZEROUPPER
	RET

// func widenBF16AVX2(n int, dst *float32, src *uint16)
// dst[i] = the bfloat16 src[i] as float32 (its bits shifted up 16), over
// the first n&^7 values.
TEXT ·widenBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI

wb32:
	CMPQ CX, $32
	JLT wb8
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPMOVZXWD 32(SI), Y2
	VPMOVZXWD 48(SI), Y3
	VPSLLD $16, Y0, Y0
	VPSLLD $16, Y1, Y1
	VPSLLD $16, Y2, Y2
	VPSLLD $16, Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $64, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP wb32

wb8:
	CMPQ CX, $8
	JLT wbdone
	VPMOVZXWD (SI), Y0
	VPSLLD $16, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP wb8

wbdone:
	VZEROUPPER
	RET

// func widenF16AVX2(n int, dst *float32, src *uint16)
// dst[i] = the IEEE half src[i] as float32 (F16C), over the first n&^7.
TEXT ·widenF16AVX2(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI

wh32:
	CMPQ CX, $32
	JLT wh8
	VCVTPH2PS (SI), Y0
	VCVTPH2PS 16(SI), Y1
	VCVTPH2PS 32(SI), Y2
	VCVTPH2PS 48(SI), Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $64, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP wh32

wh8:
	CMPQ CX, $8
	JLT whdone
	VCVTPH2PS (SI), Y0
	VMOVUPS Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP wh8

whdone:
	VZEROUPPER
	RET

// func gemvBF16AVX2(n int, x *float32, w *uint16, ldw, rows int, y *float32)
// gemvAVX2 with bfloat16 weight rows, each row summed exactly as
// dotBF16AVX2 sums it.
TEXT ·gemvBF16AVX2(SB), NOSPLIT, $0-48
	MOVQ x+8(FP), R10
	MOVQ w+16(FP), R11
	MOVQ ldw+24(FP), R8
	MOVQ rows+32(FP), R9
	MOVQ y+40(FP), DX
	SHLQ $1, R8

gbrow:
	CMPQ R9, $0
	JEQ gbdone
	MOVQ n+0(FP), CX
	MOVQ R10, SI
	MOVQ R11, DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

gb32:
	CMPQ CX, $32
	JLT gb8
	VPMOVZXWD (DI), Y4
	VPMOVZXWD 16(DI), Y5
	VPMOVZXWD 32(DI), Y6
	VPMOVZXWD 48(DI), Y7
	VPSLLD $16, Y4, Y4
	VPSLLD $16, Y5, Y5
	VPSLLD $16, Y6, Y6
	VPSLLD $16, Y7, Y7
	VFMADD231PS (SI), Y4, Y0
	VFMADD231PS 32(SI), Y5, Y1
	VFMADD231PS 64(SI), Y6, Y2
	VFMADD231PS 96(SI), Y7, Y3
	ADDQ $128, SI
	ADDQ $64, DI
	SUBQ $32, CX
	JMP gb32

gb8:
	CMPQ CX, $8
	JLT gbrowdone
	VPMOVZXWD (DI), Y4
	VPSLLD $16, Y4, Y4
	VFMADD231PS (SI), Y4, Y0
	ADDQ $32, SI
	ADDQ $16, DI
	SUBQ $8, CX
	JMP gb8

gbrowdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, (DX)
	ADDQ $4, DX
	ADDQ R8, R11
	DECQ R9
	JMP gbrow

gbdone:
	VZEROUPPER
	RET

// func gemvBF16AVX512(n int, x *float32, w *uint16, ldw, rows int, y *float32)
// gemvBF16AVX2 in 16 lanes: n a multiple of 16; four accumulators over 64
// values, one over each further 16, then the lanes summed.
TEXT ·gemvBF16AVX512(SB), NOSPLIT, $0-48
	MOVQ x+8(FP), R10
	MOVQ w+16(FP), R11
	MOVQ ldw+24(FP), R8
	MOVQ rows+32(FP), R9
	MOVQ y+40(FP), DX
	SHLQ $1, R8

gzrow:
	CMPQ R9, $0
	JEQ gzdone
	MOVQ n+0(FP), CX
	MOVQ R10, SI
	MOVQ R11, DI
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3

gz64:
	CMPQ CX, $64
	JLT gz16
	VPMOVZXWD (DI), Z4
	VPMOVZXWD 32(DI), Z5
	VPMOVZXWD 64(DI), Z6
	VPMOVZXWD 96(DI), Z7
	VPSLLD $16, Z4, Z4
	VPSLLD $16, Z5, Z5
	VPSLLD $16, Z6, Z6
	VPSLLD $16, Z7, Z7
	VFMADD231PS (SI), Z4, Z0
	VFMADD231PS 64(SI), Z5, Z1
	VFMADD231PS 128(SI), Z6, Z2
	VFMADD231PS 192(SI), Z7, Z3
	ADDQ $256, SI
	ADDQ $128, DI
	SUBQ $64, CX
	JMP gz64

gz16:
	CMPQ CX, $16
	JLT gzrowdone
	VPMOVZXWD (DI), Z4
	VPSLLD $16, Z4, Z4
	VFMADD231PS (SI), Z4, Z0
	ADDQ $64, SI
	ADDQ $32, DI
	SUBQ $16, CX
	JMP gz16

gzrowdone:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	VEXTRACTF32X8 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, (DX)
	ADDQ $4, DX
	ADDQ R8, R11
	DECQ R9
	JMP gzrow

gzdone:
	VZEROUPPER
	RET

// func decodeQ8_0AVX2(nb int, dst *float32, b *byte)
// DecodeQ8_0 over nb whole blocks: d·q, 32 values a block.
TEXT ·decodeQ8_0AVX2(SB), NOSPLIT, $0-24
	MOVQ nb+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ b+16(FP), SI
	TESTQ CX, CX
	JEQ dq8done

dq8loop:
	VPBROADCASTW (SI), X8
	VCVTPH2PS X8, Y8
	VPMOVSXBD 2(SI), Y0
	VPMOVSXBD 10(SI), Y1
	VPMOVSXBD 18(SI), Y2
	VPMOVSXBD 26(SI), Y3
	VCVTDQ2PS Y0, Y0
	VCVTDQ2PS Y1, Y1
	VCVTDQ2PS Y2, Y2
	VCVTDQ2PS Y3, Y3
	VMULPS Y8, Y0, Y0
	VMULPS Y8, Y1, Y1
	VMULPS Y8, Y2, Y2
	VMULPS Y8, Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $34, SI
	ADDQ $128, DI
	DECQ CX
	JNZ dq8loop

dq8done:
	VZEROUPPER
	RET

// func decodeQ4_0AVX2(nb int, dst *float32, b *byte)
// DecodeQ4_0 over nb whole blocks: d·(nibble − 8), value j from the low
// nibble of byte j and value j+16 from its high one.
TEXT ·decodeQ4_0AVX2(SB), NOSPLIT, $0-24
	MOVQ nb+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ b+16(FP), SI
	MOVL $15, AX
	MOVQ AX, X15
	VPBROADCASTD X15, Y15
	MOVL $8, AX
	MOVQ AX, X14
	VPBROADCASTD X14, Y14
	TESTQ CX, CX
	JEQ dq4done

dq4loop:
	VPBROADCASTW (SI), X8
	VCVTPH2PS X8, Y8
	VPMOVZXBD 2(SI), Y0
	VPMOVZXBD 10(SI), Y1
	VPSRLD $4, Y0, Y2
	VPSRLD $4, Y1, Y3
	VPAND Y15, Y0, Y0
	VPAND Y15, Y1, Y1
	VPSUBD Y14, Y0, Y0
	VPSUBD Y14, Y1, Y1
	VPSUBD Y14, Y2, Y2
	VPSUBD Y14, Y3, Y3
	VCVTDQ2PS Y0, Y0
	VCVTDQ2PS Y1, Y1
	VCVTDQ2PS Y2, Y2
	VCVTDQ2PS Y3, Y3
	VMULPS Y8, Y0, Y0
	VMULPS Y8, Y1, Y1
	VMULPS Y8, Y2, Y2
	VMULPS Y8, Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $18, SI
	ADDQ $128, DI
	DECQ CX
	JNZ dq4loop

dq4done:
	VZEROUPPER
	RET

// func gemvAVX512(n int, x, w *float32, ldw, rows int, y *float32)
// gemvAVX2 in 16 lanes: n a multiple of 16; four accumulators over 64
// values, one over each further 16, then the lanes summed.
TEXT ·gemvAVX512(SB), NOSPLIT, $0-48
	MOVQ x+8(FP), R10
	MOVQ w+16(FP), R11
	MOVQ ldw+24(FP), R8
	MOVQ rows+32(FP), R9
	MOVQ y+40(FP), DX
	SHLQ $2, R8

gfrow:
	CMPQ R9, $0
	JEQ gfdone
	MOVQ n+0(FP), CX
	MOVQ R10, SI
	MOVQ R11, DI
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3

gf64:
	CMPQ CX, $64
	JLT gf16
	VMOVUPS (SI), Z4
	VMOVUPS 64(SI), Z5
	VMOVUPS 128(SI), Z6
	VMOVUPS 192(SI), Z7
	VFMADD231PS (DI), Z4, Z0
	VFMADD231PS 64(DI), Z5, Z1
	VFMADD231PS 128(DI), Z6, Z2
	VFMADD231PS 192(DI), Z7, Z3
	ADDQ $256, SI
	ADDQ $256, DI
	SUBQ $64, CX
	JMP gf64

gf16:
	CMPQ CX, $16
	JLT gfrowdone
	VMOVUPS (SI), Z4
	VFMADD231PS (DI), Z4, Z0
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP gf16

gfrowdone:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	VEXTRACTF32X8 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, (DX)
	ADDQ $4, DX
	ADDQ R8, R11
	DECQ R9
	JMP gfrow

gfdone:
	VZEROUPPER
	RET

// func gemv4AVX512(n int, x, w *float32, ldw, rows, q int, y *float32)
// gemvAVX512 over four streams of rows at once: for r < rows, rows r,
// r+q, r+2q and r+3q of w into y[r], y[r+q], y[r+2q], y[r+3q], each summed
// exactly as gemvAVX512 sums it. Decoding reads every weight once, and
// four streams read at once draw more of memory's bandwidth than one.
TEXT ·gemv4AVX512(SB), NOSPLIT, $0-56
	MOVQ x+8(FP), R10
	MOVQ w+16(FP), R11
	MOVQ ldw+24(FP), R8
	MOVQ rows+32(FP), R9
	MOVQ q+40(FP), R12
	MOVQ y+48(FP), DX
	SHLQ $2, R8
	MOVQ R12, R13
	IMULQ R8, R13 // bytes between streams
	SHLQ $2, R12  // output bytes between streams

g4row:
	CMPQ R9, $0
	JEQ g4done
	MOVQ n+0(FP), CX
	MOVQ R10, SI
	MOVQ R11, DI
	LEAQ (DI)(R13*1), AX
	LEAQ (AX)(R13*1), BX
	LEAQ (BX)(R13*1), R14
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15

g464:
	CMPQ CX, $64
	JLT g416
	VMOVUPS (SI), Z16
	VMOVUPS 64(SI), Z17
	VMOVUPS 128(SI), Z18
	VMOVUPS 192(SI), Z19
	VFMADD231PS (DI), Z16, Z0
	VFMADD231PS 64(DI), Z17, Z1
	VFMADD231PS 128(DI), Z18, Z2
	VFMADD231PS 192(DI), Z19, Z3
	VFMADD231PS (AX), Z16, Z4
	VFMADD231PS 64(AX), Z17, Z5
	VFMADD231PS 128(AX), Z18, Z6
	VFMADD231PS 192(AX), Z19, Z7
	VFMADD231PS (BX), Z16, Z8
	VFMADD231PS 64(BX), Z17, Z9
	VFMADD231PS 128(BX), Z18, Z10
	VFMADD231PS 192(BX), Z19, Z11
	VFMADD231PS (R14), Z16, Z12
	VFMADD231PS 64(R14), Z17, Z13
	VFMADD231PS 128(R14), Z18, Z14
	VFMADD231PS 192(R14), Z19, Z15
	ADDQ $256, SI
	ADDQ $256, DI
	ADDQ $256, AX
	ADDQ $256, BX
	ADDQ $256, R14
	SUBQ $64, CX
	JMP g464

g416:
	CMPQ CX, $16
	JLT g4sum
	VMOVUPS (SI), Z16
	VFMADD231PS (DI), Z16, Z0
	VFMADD231PS (AX), Z16, Z4
	VFMADD231PS (BX), Z16, Z8
	VFMADD231PS (R14), Z16, Z12
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, AX
	ADDQ $64, BX
	ADDQ $64, R14
	SUBQ $16, CX
	JMP g416

g4sum:
	LEAQ (DX)(R12*2), R15
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	VEXTRACTF32X8 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VMOVSS X0, (DX)
	VADDPS Z5, Z4, Z4
	VADDPS Z7, Z6, Z6
	VADDPS Z6, Z4, Z4
	VEXTRACTF32X8 $1, Z4, Y5
	VADDPS Y5, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VADDPS X5, X4, X4
	VHADDPS X4, X4, X4
	VHADDPS X4, X4, X4
	VMOVSS X4, (DX)(R12*1)
	VADDPS Z9, Z8, Z8
	VADDPS Z11, Z10, Z10
	VADDPS Z10, Z8, Z8
	VEXTRACTF32X8 $1, Z8, Y9
	VADDPS Y9, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VADDPS X9, X8, X8
	VHADDPS X8, X8, X8
	VHADDPS X8, X8, X8
	VMOVSS X8, (R15)
	VADDPS Z13, Z12, Z12
	VADDPS Z15, Z14, Z14
	VADDPS Z14, Z12, Z12
	VEXTRACTF32X8 $1, Z12, Y13
	VADDPS Y13, Y12, Y12
	VEXTRACTF128 $1, Y12, X13
	VADDPS X13, X12, X12
	VHADDPS X12, X12, X12
	VHADDPS X12, X12, X12
	VMOVSS X12, (R15)(R12*1)
	ADDQ $4, DX
	ADDQ R8, R11
	DECQ R9
	JMP g4row

g4done:
	VZEROUPPER
	RET

// func gemvF16AVX2(n int, x *float32, w *uint16, ldw, rows int, y *float32)
// gemvBF16AVX2 with IEEE half weight rows (F16C), each row summed exactly
// as dotF16AVX2 sums it.
TEXT ·gemvF16AVX2(SB), NOSPLIT, $0-48
	MOVQ x+8(FP), R10
	MOVQ w+16(FP), R11
	MOVQ ldw+24(FP), R8
	MOVQ rows+32(FP), R9
	MOVQ y+40(FP), DX
	SHLQ $1, R8

ghrow:
	CMPQ R9, $0
	JEQ ghdone
	MOVQ n+0(FP), CX
	MOVQ R10, SI
	MOVQ R11, DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

gh32:
	CMPQ CX, $32
	JLT gh8
	VCVTPH2PS (DI), Y4
	VCVTPH2PS 16(DI), Y5
	VCVTPH2PS 32(DI), Y6
	VCVTPH2PS 48(DI), Y7
	VFMADD231PS (SI), Y4, Y0
	VFMADD231PS 32(SI), Y5, Y1
	VFMADD231PS 64(SI), Y6, Y2
	VFMADD231PS 96(SI), Y7, Y3
	ADDQ $128, SI
	ADDQ $64, DI
	SUBQ $32, CX
	JMP gh32

gh8:
	CMPQ CX, $8
	JLT ghrowdone
	VCVTPH2PS (DI), Y4
	VFMADD231PS (SI), Y4, Y0
	ADDQ $32, SI
	ADDQ $16, DI
	SUBQ $8, CX
	JMP gh8

ghrowdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, (DX)
	ADDQ $4, DX
	ADDQ R8, R11
	DECQ R9
	JMP ghrow

ghdone:
	VZEROUPPER
	RET


// func gemvF16AVX512(n int, x *float32, w *uint16, ldw, rows int, y *float32)
// gemvF16AVX2 in 16 lanes: n a multiple of 16; four accumulators over 64
// values, one over each further 16, then the lanes summed.
TEXT ·gemvF16AVX512(SB), NOSPLIT, $0-48
	MOVQ x+8(FP), R10
	MOVQ w+16(FP), R11
	MOVQ ldw+24(FP), R8
	MOVQ rows+32(FP), R9
	MOVQ y+40(FP), DX
	SHLQ $1, R8

gyrow:
	CMPQ R9, $0
	JEQ gydone
	MOVQ n+0(FP), CX
	MOVQ R10, SI
	MOVQ R11, DI
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3

gy64:
	CMPQ CX, $64
	JLT gy16
	VCVTPH2PS (DI), Z4
	VCVTPH2PS 32(DI), Z5
	VCVTPH2PS 64(DI), Z6
	VCVTPH2PS 96(DI), Z7
	VFMADD231PS (SI), Z4, Z0
	VFMADD231PS 64(SI), Z5, Z1
	VFMADD231PS 128(SI), Z6, Z2
	VFMADD231PS 192(SI), Z7, Z3
	ADDQ $256, SI
	ADDQ $128, DI
	SUBQ $64, CX
	JMP gy64

gy16:
	CMPQ CX, $16
	JLT gyrowdone
	VCVTPH2PS (DI), Z4
	VFMADD231PS (SI), Z4, Z0
	ADDQ $64, SI
	ADDQ $32, DI
	SUBQ $16, CX
	JMP gy16

gyrowdone:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	VEXTRACTF32X8 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, (DX)
	ADDQ $4, DX
	ADDQ R8, R11
	DECQ R9
	JMP gyrow

gydone:
	VZEROUPPER
	RET

// The dword lanes of a pair: each of a pair's two scales, four lanes at a
// time, in the order gemvQ4Q8VNNI512's sums come out.
DATA q4pairidx<>+0(SB)/4, $0
DATA q4pairidx<>+4(SB)/4, $0
DATA q4pairidx<>+8(SB)/4, $0
DATA q4pairidx<>+12(SB)/4, $0
DATA q4pairidx<>+16(SB)/4, $1
DATA q4pairidx<>+20(SB)/4, $1
DATA q4pairidx<>+24(SB)/4, $1
DATA q4pairidx<>+28(SB)/4, $1
DATA q4pairidx<>+32(SB)/4, $0
DATA q4pairidx<>+36(SB)/4, $0
DATA q4pairidx<>+40(SB)/4, $0
DATA q4pairidx<>+44(SB)/4, $0
DATA q4pairidx<>+48(SB)/4, $1
DATA q4pairidx<>+52(SB)/4, $1
DATA q4pairidx<>+56(SB)/4, $1
DATA q4pairidx<>+60(SB)/4, $1
GLOBL q4pairidx<>(SB), RODATA|NOPTR, $64

// func gemvQ4Q8VNNI512(np int, xq *int8, xd *float32, bias *int32, w *byte, rows int, y *float32)
// gemvQ4Q8VNNI two blocks a 512-bit register, over np pairs of blocks: the
// pair's nibbles as [block 0 low, block 1 low, block 0 high, block 1 high]
// (16 bytes each) meet the input codes in that order (q4PairsOf), each
// sum starting from its block's −8·Σx; the two scales d_w·d_x go to their
// lanes by one VPERMPS. A prefetch 1 KB ahead keeps more of the weight
// stream in flight (about +10% at 7B with 2 threads, in alternating runs).
TEXT ·gemvQ4Q8VNNI512(SB), NOSPLIT, $0-56
	MOVQ xq+8(FP), R10
	MOVQ xd+16(FP), R12
	MOVQ bias+24(FP), R11
	MOVQ w+32(FP), DI
	MOVQ rows+40(FP), R9
	MOVQ y+48(FP), DX
	MOVL $0x0f0f0f0f, AX
	VPBROADCASTD AX, Z15
	VMOVDQU32 q4pairidx<>(SB), Z12

q4prow:
	CMPQ R9, $0
	JEQ q4pdone
	MOVQ np+0(FP), CX
	MOVQ R10, SI
	MOVQ R12, R13
	MOVQ R11, R14
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1

q4ploop2:
	CMPQ CX, $2
	JLT q4ploop1
	PREFETCHT0 1024(DI)
	VMOVDQU 2(DI), X4
	VINSERTI128 $1, 20(DI), Y4, Y4
	VPSRLW $4, Y4, Y5
	VINSERTI64X4 $1, Y5, Z4, Z4
	VPANDD Z15, Z4, Z4
	VMOVDQU32 (R14), Z6
	VPDPBUSD (SI), Z4, Z6
	VCVTDQ2PS Z6, Z6
	MOVWLZX (DI), AX
	MOVWLZX 18(DI), BX
	SHLL $16, BX
	ORL BX, AX
	VMOVD AX, X8
	VCVTPH2PS X8, X8
	VMOVQ (R13), X9
	VMULPS X9, X8, X8
	VPERMPS Z8, Z12, Z8
	VFMADD231PS Z8, Z6, Z0
	VMOVDQU 38(DI), X2
	VINSERTI128 $1, 56(DI), Y2, Y2
	VPSRLW $4, Y2, Y3
	VINSERTI64X4 $1, Y3, Z2, Z2
	VPANDD Z15, Z2, Z2
	VMOVDQU32 64(R14), Z7
	VPDPBUSD 64(SI), Z2, Z7
	VCVTDQ2PS Z7, Z7
	MOVWLZX 36(DI), AX
	MOVWLZX 54(DI), BX
	SHLL $16, BX
	ORL BX, AX
	VMOVD AX, X10
	VCVTPH2PS X10, X10
	VMOVQ 8(R13), X11
	VMULPS X11, X10, X10
	VPERMPS Z10, Z12, Z10
	VFMADD231PS Z10, Z7, Z1
	ADDQ $72, DI
	ADDQ $128, SI
	ADDQ $16, R13
	ADDQ $128, R14
	SUBQ $2, CX
	JMP q4ploop2

q4ploop1:
	TESTQ CX, CX
	JEQ q4psum
	VMOVDQU 2(DI), X4
	VINSERTI128 $1, 20(DI), Y4, Y4
	VPSRLW $4, Y4, Y5
	VINSERTI64X4 $1, Y5, Z4, Z4
	VPANDD Z15, Z4, Z4
	VMOVDQU32 (R14), Z6
	VPDPBUSD (SI), Z4, Z6
	VCVTDQ2PS Z6, Z6
	MOVWLZX (DI), AX
	MOVWLZX 18(DI), BX
	SHLL $16, BX
	ORL BX, AX
	VMOVD AX, X8
	VCVTPH2PS X8, X8
	VMOVQ (R13), X9
	VMULPS X9, X8, X8
	VPERMPS Z8, Z12, Z8
	VFMADD231PS Z8, Z6, Z0
	ADDQ $36, DI

q4psum:
	VADDPS Z1, Z0, Z0
	VEXTRACTF32X8 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, (DX)
	ADDQ $4, DX
	DECQ R9
	JMP q4prow

q4pdone:
	VZEROUPPER
	RET

// func gemv4BF16AVX512(n int, x *float32, w *uint16, ldw, rows, q int, y *float32)
// gemvBF16AVX512 over four streams of rows a quarter apart, as gemv4AVX512 does
// for float32: each row summed exactly as gemvBF16AVX512 sums it.
TEXT ·gemv4BF16AVX512(SB), NOSPLIT, $0-56
	MOVQ x+8(FP), R10
	MOVQ w+16(FP), R11
	MOVQ ldw+24(FP), R8
	MOVQ rows+32(FP), R9
	MOVQ q+40(FP), R12
	MOVQ y+48(FP), DX
	SHLQ $1, R8
	MOVQ R12, R13
	IMULQ R8, R13 // bytes between streams
	SHLQ $2, R12  // output bytes between streams

gb4row:
	CMPQ R9, $0
	JEQ gb4done
	MOVQ n+0(FP), CX
	MOVQ R10, SI
	MOVQ R11, DI
	LEAQ (DI)(R13*1), AX
	LEAQ (AX)(R13*1), BX
	LEAQ (BX)(R13*1), R14
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15

gb464:
	CMPQ CX, $64
	JLT gb416
	VMOVUPS (SI), Z16
	VMOVUPS 64(SI), Z17
	VMOVUPS 128(SI), Z18
	VMOVUPS 192(SI), Z19
	VPMOVZXWD (DI), Z20
	VPSLLD $16, Z20, Z20
	VPMOVZXWD 32(DI), Z21
	VPSLLD $16, Z21, Z21
	VPMOVZXWD 64(DI), Z22
	VPSLLD $16, Z22, Z22
	VPMOVZXWD 96(DI), Z23
	VPSLLD $16, Z23, Z23
	VFMADD231PS Z16, Z20, Z0
	VFMADD231PS Z17, Z21, Z1
	VFMADD231PS Z18, Z22, Z2
	VFMADD231PS Z19, Z23, Z3
	VPMOVZXWD (AX), Z20
	VPSLLD $16, Z20, Z20
	VPMOVZXWD 32(AX), Z21
	VPSLLD $16, Z21, Z21
	VPMOVZXWD 64(AX), Z22
	VPSLLD $16, Z22, Z22
	VPMOVZXWD 96(AX), Z23
	VPSLLD $16, Z23, Z23
	VFMADD231PS Z16, Z20, Z4
	VFMADD231PS Z17, Z21, Z5
	VFMADD231PS Z18, Z22, Z6
	VFMADD231PS Z19, Z23, Z7
	VPMOVZXWD (BX), Z20
	VPSLLD $16, Z20, Z20
	VPMOVZXWD 32(BX), Z21
	VPSLLD $16, Z21, Z21
	VPMOVZXWD 64(BX), Z22
	VPSLLD $16, Z22, Z22
	VPMOVZXWD 96(BX), Z23
	VPSLLD $16, Z23, Z23
	VFMADD231PS Z16, Z20, Z8
	VFMADD231PS Z17, Z21, Z9
	VFMADD231PS Z18, Z22, Z10
	VFMADD231PS Z19, Z23, Z11
	VPMOVZXWD (R14), Z20
	VPSLLD $16, Z20, Z20
	VPMOVZXWD 32(R14), Z21
	VPSLLD $16, Z21, Z21
	VPMOVZXWD 64(R14), Z22
	VPSLLD $16, Z22, Z22
	VPMOVZXWD 96(R14), Z23
	VPSLLD $16, Z23, Z23
	VFMADD231PS Z16, Z20, Z12
	VFMADD231PS Z17, Z21, Z13
	VFMADD231PS Z18, Z22, Z14
	VFMADD231PS Z19, Z23, Z15
	ADDQ $256, SI
	ADDQ $128, DI
	ADDQ $128, AX
	ADDQ $128, BX
	ADDQ $128, R14
	SUBQ $64, CX
	JMP gb464

gb416:
	CMPQ CX, $16
	JLT gb4sum
	VMOVUPS (SI), Z16
	VPMOVZXWD (DI), Z20
	VPSLLD $16, Z20, Z20
	VFMADD231PS Z16, Z20, Z0
	VPMOVZXWD (AX), Z20
	VPSLLD $16, Z20, Z20
	VFMADD231PS Z16, Z20, Z4
	VPMOVZXWD (BX), Z20
	VPSLLD $16, Z20, Z20
	VFMADD231PS Z16, Z20, Z8
	VPMOVZXWD (R14), Z20
	VPSLLD $16, Z20, Z20
	VFMADD231PS Z16, Z20, Z12
	ADDQ $64, SI
	ADDQ $32, DI
	ADDQ $32, AX
	ADDQ $32, BX
	ADDQ $32, R14
	SUBQ $16, CX
	JMP gb416

gb4sum:
	LEAQ (DX)(R12*2), R15
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	VEXTRACTF32X8 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VMOVSS X0, (DX)
	VADDPS Z5, Z4, Z4
	VADDPS Z7, Z6, Z6
	VADDPS Z6, Z4, Z4
	VEXTRACTF32X8 $1, Z4, Y5
	VADDPS Y5, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VADDPS X5, X4, X4
	VHADDPS X4, X4, X4
	VHADDPS X4, X4, X4
	VMOVSS X4, (DX)(R12*1)
	VADDPS Z9, Z8, Z8
	VADDPS Z11, Z10, Z10
	VADDPS Z10, Z8, Z8
	VEXTRACTF32X8 $1, Z8, Y9
	VADDPS Y9, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VADDPS X9, X8, X8
	VHADDPS X8, X8, X8
	VHADDPS X8, X8, X8
	VMOVSS X8, (R15)
	VADDPS Z13, Z12, Z12
	VADDPS Z15, Z14, Z14
	VADDPS Z14, Z12, Z12
	VEXTRACTF32X8 $1, Z12, Y13
	VADDPS Y13, Y12, Y12
	VEXTRACTF128 $1, Y12, X13
	VADDPS X13, X12, X12
	VHADDPS X12, X12, X12
	VHADDPS X12, X12, X12
	VMOVSS X12, (R15)(R12*1)
	ADDQ $4, DX
	ADDQ R8, R11
	DECQ R9
	JMP gb4row

gb4done:
	VZEROUPPER
	RET

// func gemv4F16AVX512(n int, x *float32, w *uint16, ldw, rows, q int, y *float32)
// gemvF16AVX512 over four streams of rows, as gemv4BF16AVX512.
TEXT ·gemv4F16AVX512(SB), NOSPLIT, $0-56
	MOVQ x+8(FP), R10
	MOVQ w+16(FP), R11
	MOVQ ldw+24(FP), R8
	MOVQ rows+32(FP), R9
	MOVQ q+40(FP), R12
	MOVQ y+48(FP), DX
	SHLQ $1, R8
	MOVQ R12, R13
	IMULQ R8, R13 // bytes between streams
	SHLQ $2, R12  // output bytes between streams

gh4row:
	CMPQ R9, $0
	JEQ gh4done
	MOVQ n+0(FP), CX
	MOVQ R10, SI
	MOVQ R11, DI
	LEAQ (DI)(R13*1), AX
	LEAQ (AX)(R13*1), BX
	LEAQ (BX)(R13*1), R14
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15

gh464:
	CMPQ CX, $64
	JLT gh416
	VMOVUPS (SI), Z16
	VMOVUPS 64(SI), Z17
	VMOVUPS 128(SI), Z18
	VMOVUPS 192(SI), Z19
	VCVTPH2PS (DI), Z20
	VCVTPH2PS 32(DI), Z21
	VCVTPH2PS 64(DI), Z22
	VCVTPH2PS 96(DI), Z23
	VFMADD231PS Z16, Z20, Z0
	VFMADD231PS Z17, Z21, Z1
	VFMADD231PS Z18, Z22, Z2
	VFMADD231PS Z19, Z23, Z3
	VCVTPH2PS (AX), Z20
	VCVTPH2PS 32(AX), Z21
	VCVTPH2PS 64(AX), Z22
	VCVTPH2PS 96(AX), Z23
	VFMADD231PS Z16, Z20, Z4
	VFMADD231PS Z17, Z21, Z5
	VFMADD231PS Z18, Z22, Z6
	VFMADD231PS Z19, Z23, Z7
	VCVTPH2PS (BX), Z20
	VCVTPH2PS 32(BX), Z21
	VCVTPH2PS 64(BX), Z22
	VCVTPH2PS 96(BX), Z23
	VFMADD231PS Z16, Z20, Z8
	VFMADD231PS Z17, Z21, Z9
	VFMADD231PS Z18, Z22, Z10
	VFMADD231PS Z19, Z23, Z11
	VCVTPH2PS (R14), Z20
	VCVTPH2PS 32(R14), Z21
	VCVTPH2PS 64(R14), Z22
	VCVTPH2PS 96(R14), Z23
	VFMADD231PS Z16, Z20, Z12
	VFMADD231PS Z17, Z21, Z13
	VFMADD231PS Z18, Z22, Z14
	VFMADD231PS Z19, Z23, Z15
	ADDQ $256, SI
	ADDQ $128, DI
	ADDQ $128, AX
	ADDQ $128, BX
	ADDQ $128, R14
	SUBQ $64, CX
	JMP gh464

gh416:
	CMPQ CX, $16
	JLT gh4sum
	VMOVUPS (SI), Z16
	VCVTPH2PS (DI), Z20
	VFMADD231PS Z16, Z20, Z0
	VCVTPH2PS (AX), Z20
	VFMADD231PS Z16, Z20, Z4
	VCVTPH2PS (BX), Z20
	VFMADD231PS Z16, Z20, Z8
	VCVTPH2PS (R14), Z20
	VFMADD231PS Z16, Z20, Z12
	ADDQ $64, SI
	ADDQ $32, DI
	ADDQ $32, AX
	ADDQ $32, BX
	ADDQ $32, R14
	SUBQ $16, CX
	JMP gh416

gh4sum:
	LEAQ (DX)(R12*2), R15
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	VEXTRACTF32X8 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VMOVSS X0, (DX)
	VADDPS Z5, Z4, Z4
	VADDPS Z7, Z6, Z6
	VADDPS Z6, Z4, Z4
	VEXTRACTF32X8 $1, Z4, Y5
	VADDPS Y5, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VADDPS X5, X4, X4
	VHADDPS X4, X4, X4
	VHADDPS X4, X4, X4
	VMOVSS X4, (DX)(R12*1)
	VADDPS Z9, Z8, Z8
	VADDPS Z11, Z10, Z10
	VADDPS Z10, Z8, Z8
	VEXTRACTF32X8 $1, Z8, Y9
	VADDPS Y9, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VADDPS X9, X8, X8
	VHADDPS X8, X8, X8
	VHADDPS X8, X8, X8
	VMOVSS X8, (R15)
	VADDPS Z13, Z12, Z12
	VADDPS Z15, Z14, Z14
	VADDPS Z14, Z12, Z12
	VEXTRACTF32X8 $1, Z12, Y13
	VADDPS Y13, Y12, Y12
	VEXTRACTF128 $1, Y12, X13
	VADDPS X13, X12, X12
	VHADDPS X12, X12, X12
	VHADDPS X12, X12, X12
	VMOVSS X12, (R15)(R12*1)
	ADDQ $4, DX
	ADDQ R8, R11
	DECQ R9
	JMP gh4row

gh4done:
	VZEROUPPER
	RET
