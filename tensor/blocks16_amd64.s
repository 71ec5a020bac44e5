#include "textflag.h"

// The sixteen-row block kernels (blocks16.go). Registers: Z0–Z7 the
// outputs of up to eight input rows, Z8–Z15 a block's weight codes as
// unsigned bytes in the order of the input codes they meet (Z8 codes
// 0–3 … Z15 codes 28–31), Z16 the nibble mask, Z17 the block's sixteen
// weight scales; SI the input codes, R13 the input scales, DI the weights.

// X16ROW adds input row i's products with the block to OUT: the integer
// sum starts from the row's offset (xs+4), takes eight VPDPBUSD of all
// sixteen weight rows by four broadcast input codes each, and is scaled
// by d_w·d_x.
#define X16ROW(xo, so, OUT) \
	VPBROADCASTD so+4(R13), Z18; \
	VPDPBUSD.BCST xo+0(SI), Z8, Z18; \
	VPDPBUSD.BCST xo+4(SI), Z9, Z18; \
	VPDPBUSD.BCST xo+8(SI), Z10, Z18; \
	VPDPBUSD.BCST xo+12(SI), Z11, Z18; \
	VPDPBUSD.BCST xo+16(SI), Z12, Z18; \
	VPDPBUSD.BCST xo+20(SI), Z13, Z18; \
	VPDPBUSD.BCST xo+24(SI), Z14, Z18; \
	VPDPBUSD.BCST xo+28(SI), Z15, Z18; \
	VCVTDQ2PS Z18, Z18; \
	VMULPS.BCST so+0(R13), Z17, Z19; \
	VFMADD231PS Z19, Z18, OUT

// X16Q4AT loads the Q4_0 group block at B: scales, then four vectors
// whose low nibbles are codes 0–15 and high nibbles codes 16–31.
#define X16Q4AT(B) \
	VCVTPH2PS (B), Z17; \
	VMOVDQU32 32(B), Z8; \
	VMOVDQU32 96(B), Z9; \
	VMOVDQU32 160(B), Z10; \
	VMOVDQU32 224(B), Z11; \
	VPSRLW $4, Z8, Z12; \
	VPSRLW $4, Z9, Z13; \
	VPSRLW $4, Z10, Z14; \
	VPSRLW $4, Z11, Z15; \
	VPANDD Z16, Z8, Z8; \
	VPANDD Z16, Z9, Z9; \
	VPANDD Z16, Z10, Z10; \
	VPANDD Z16, Z11, Z11; \
	VPANDD Z16, Z12, Z12; \
	VPANDD Z16, Z13, Z13; \
	VPANDD Z16, Z14, Z14; \
	VPANDD Z16, Z15, Z15

// X16Q8AT loads the Q8_0 group block at B: scales, then eight vectors of
// codes.
#define X16Q8AT(B) \
	VCVTPH2PS (B), Z17; \
	VMOVDQU32 32(B), Z8; \
	VMOVDQU32 96(B), Z9; \
	VMOVDQU32 160(B), Z10; \
	VMOVDQU32 224(B), Z11; \
	VMOVDQU32 288(B), Z12; \
	VMOVDQU32 352(B), Z13; \
	VMOVDQU32 416(B), Z14; \
	VMOVDQU32 480(B), Z15

#define X16Q4 X16Q4AT(DI)
#define X16Q8 X16Q8AT(DI)

// X16START loads the arguments and clears the outputs.
#define X16START \
	MOVQ nb+0(FP), CX; \
	MOVQ t+8(FP), BX; \
	MOVQ x+16(FP), SI; \
	MOVQ xs+24(FP), R13; \
	MOVQ w+32(FP), DI; \
	MOVQ y+40(FP), DX; \
	MOVQ ldy+48(FP), R8; \
	SHLQ $2, R8; \
	MOVL $0x0f0f0f0f, AX; \
	VPBROADCASTD AX, Z16; \
	VPXORD Z0, Z0, Z0; \
	VPXORD Z1, Z1, Z1; \
	VPXORD Z2, Z2, Z2; \
	VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; \
	VPXORD Z5, Z5, Z5; \
	VPXORD Z6, Z6, Z6; \
	VPXORD Z7, Z7, Z7

// X16ROWS1 … X16ROWS8 take the block to 1, 2, 4 or 8 input rows.
#define X16ROWS1 \
	X16ROW(0, 0, Z0)

#define X16ROWS2 \
	X16ROW(0, 0, Z0); \
	X16ROW(32, 8, Z1)

#define X16ROWS4 \
	X16ROW(0, 0, Z0); \
	X16ROW(32, 8, Z1); \
	X16ROW(64, 16, Z2); \
	X16ROW(96, 24, Z3)

#define X16ROWS8 \
	X16ROW(0, 0, Z0); \
	X16ROW(32, 8, Z1); \
	X16ROW(64, 16, Z2); \
	X16ROW(96, 24, Z3); \
	X16ROW(128, 32, Z4); \
	X16ROW(160, 40, Z5); \
	X16ROW(192, 48, Z6); \
	X16ROW(224, 56, Z7)

// X16LOOP runs over the nb blocks, LOAD taking a group block of bb bytes
// to ROWS input rows (xstep bytes of codes, sstep of scales a block),
// then jumps to done.
#define X16LOOP(label, LOAD, ROWS, bb, xstep, sstep, done) \
label: \
	LOAD; \
	ROWS; \
	ADDQ $bb, DI; \
	ADDQ $xstep, SI; \
	ADDQ $sstep, R13; \
	DECQ CX; \
	JNZ label; \
	JMP done

// func x16VNNI(nb, t int, x *int8, xs *x16Scale, w *byte, y *float32, ldy int, q4 bool)
// t is 1, 2, 4 or 8; nb > 0.
TEXT ·x16VNNI(SB), NOSPLIT, $0-57
	X16START
	CMPB q4+56(FP), $0
	JEQ q8
	CMPQ BX, $8
	JEQ q4t8
	CMPQ BX, $4
	JEQ q4t4
	CMPQ BX, $2
	JEQ q4t2
	X16LOOP(q4t1, X16Q4, X16ROWS1, 288, 32, 8, store1)
	X16LOOP(q4t2, X16Q4, X16ROWS2, 288, 64, 16, store2)
	X16LOOP(q4t4, X16Q4, X16ROWS4, 288, 128, 32, store4)
	X16LOOP(q4t8, X16Q4, X16ROWS8, 288, 256, 64, store8)

q8:
	CMPQ BX, $8
	JEQ q8t8
	CMPQ BX, $4
	JEQ q8t4
	CMPQ BX, $2
	JEQ q8t2
	X16LOOP(q8t1, X16Q8, X16ROWS1, 544, 32, 8, store1)
	X16LOOP(q8t2, X16Q8, X16ROWS2, 544, 64, 16, store2)
	X16LOOP(q8t4, X16Q8, X16ROWS4, 544, 128, 32, store4)
	X16LOOP(q8t8, X16Q8, X16ROWS8, 544, 256, 64, store8)

store8:
	LEAQ (DX)(R8*4), AX
	VMOVUPS Z4, (AX)
	VMOVUPS Z5, (AX)(R8*1)
	VMOVUPS Z6, (AX)(R8*2)
	ADDQ R8, AX
	VMOVUPS Z7, (AX)(R8*2)
store4:
	LEAQ (DX)(R8*2), AX
	VMOVUPS Z2, (AX)
	VMOVUPS Z3, (AX)(R8*1)
store2:
	VMOVUPS Z1, (DX)(R8*1)
store1:
	VMOVUPS Z0, (DX)
	VZEROUPPER
	RET

// AHEADQ4 prefetches a Q4_0 group's block two blocks past B, a prefetch
// per 128 bytes (the adjacent-line prefetcher brings the pair): with four
// streams of 288-byte blocks a worker's decoding read DRAM a tenth short
// of the bandwidth (7B Q4_0 projections: 13.7 → 15.2 GB/s on one thread,
// 26.8 → 29.2 on two). Q8_0's streams, with twice the bytes per block,
// read within 5% of it without (and 4% slower with): AHEADNONE.
#define AHEADQ4(B) \
	PREFETCHT0 576(B); \
	PREFETCHT0 704(B); \
	PREFETCHT0 832(B)

#define AHEADNONE(B)

// X16FOUR runs one input row over four groups of nb blocks each (DI,
// R10, R11, R12 a group apart), LOAD taking a group block of bb bytes;
// the outputs are Z0–Z3.
#define X16FOUR(label, LOAD, bb, AHEAD) \
label: \
	AHEAD(DI); \
	AHEAD(R10); \
	AHEAD(R11); \
	AHEAD(R12); \
	LOAD(DI); \
	X16ROW(0, 0, Z0); \
	LOAD(R10); \
	X16ROW(0, 0, Z1); \
	LOAD(R11); \
	X16ROW(0, 0, Z2); \
	LOAD(R12); \
	X16ROW(0, 0, Z3); \
	ADDQ $bb, DI; \
	ADDQ $bb, R10; \
	ADDQ $bb, R11; \
	ADDQ $bb, R12; \
	ADDQ $32, SI; \
	ADDQ $8, R13; \
	DECQ CX; \
	JNZ label

// func x16VNNI4(nb int, x *int8, xs *x16Scale, w *byte, gb int, y *float32, q4 bool)
// x16VNNI4 is x16VNNI at t = 1 over the four groups at w, gb bytes apart,
// writing y[0:64]: the four weight streams read at once keep more of
// memory's bandwidth busy than one (decoding reads each weight once).
TEXT ·x16VNNI4(SB), NOSPLIT, $0-49
	MOVQ nb+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ xs+16(FP), R13
	MOVQ w+24(FP), DI
	MOVQ gb+32(FP), R9
	MOVQ y+40(FP), DX
	LEAQ (DI)(R9*1), R10
	LEAQ (R10)(R9*1), R11
	LEAQ (R11)(R9*1), R12
	MOVL $0x0f0f0f0f, AX
	VPBROADCASTD AX, Z16
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	CMPB q4+48(FP), $0
	JEQ four8
	X16FOUR(four4, X16Q4AT, 288, AHEADQ4)
	JMP fourstore
	X16FOUR(four8, X16Q8AT, 544, AHEADNONE)
fourstore:
	VMOVUPS Z0, (DX)
	VMOVUPS Z1, 64(DX)
	VMOVUPS Z2, 128(DX)
	VMOVUPS Z3, 192(DX)
	VZEROUPPER
	RET

// func quantizeQ8AVX512(nb int, x *float32, q *int8, xs *x16Scale, stride int, offset int32)
// quantizeQ8AVX512 is quantizeQ8Block over nb blocks of one input row x,
// in the kernels' layout: block b's codes at q + 32·stride·b, its scale
// and offset·Σcodes at xs + stride·b. Every step rounds as the Go code
// does: d = amax/127, id = 1/d, v·id in float32, halves away from zero
// (truncate, then step outwards where the part cut off is at least ½),
// d rounded to float16 nearest-even.
TEXT ·quantizeQ8AVX512(SB), NOSPLIT, $0-44
	MOVQ nb+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ q+16(FP), DI
	MOVQ xs+24(FP), R13
	MOVQ stride+32(FP), R8
	MOVL offset+40(FP), R9
	MOVQ R8, R10
	SHLQ $5, R8  // code bytes a block apart
	SHLQ $3, R10 // scale bytes a block apart
	MOVL $0x7fffffff, AX
	VPBROADCASTD AX, Z31
	MOVL $0x3f800000, AX // 1
	VPBROADCASTD AX, Z27
	MOVL $0x3f000000, AX // ½
	VPBROADCASTD AX, Z28
	MOVL $0x42fe0000, AX // 127
	VMOVD AX, X30

q8block:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VANDPS Z31, Z0, Z2
	VANDPS Z31, Z1, Z3
	VMAXPS Z3, Z2, Z2
	VEXTRACTF32X8 $1, Z2, Y3
	VMAXPS Y3, Y2, Y2
	VEXTRACTF128 $1, Y2, X3
	VMAXPS X3, X2, X2
	VPERMILPS $0x4e, X2, X3
	VMAXPS X3, X2, X2
	VPERMILPS $0xb1, X2, X3
	VMAXPS X3, X2, X2
	VDIVSS X30, X2, X4 // d
	VCVTPS2PH $0, X4, X6
	VCVTPH2PS X6, X6
	VMOVSS X6, (R13)
	VXORPS X5, X5, X5
	VUCOMISS X5, X4
	JEQ q8zero
	VDIVSS X4, X27, X5 // id = 1/d
q8zero:
	VBROADCASTSS X5, Z5
	VMULPS Z5, Z0, Z0
	VMULPS Z5, Z1, Z1
	VRNDSCALEPS $3, Z0, Z7
	VRNDSCALEPS $3, Z1, Z10
	VSUBPS Z7, Z0, Z8
	VSUBPS Z10, Z1, Z11
	VANDPS Z31, Z8, Z8
	VANDPS Z31, Z11, Z11
	VCMPPS $0x1d, Z28, Z8, K1
	VCMPPS $0x1d, Z28, Z11, K2
	VANDNPS Z0, Z31, Z9
	VANDNPS Z1, Z31, Z12
	VORPS Z27, Z9, Z9
	VORPS Z27, Z12, Z12
	VADDPS Z9, Z7, K1, Z7
	VADDPS Z12, Z10, K2, Z10
	VCVTTPS2DQ Z7, Z7
	VCVTTPS2DQ Z10, Z10
	VPMOVDB Z7, (DI)
	VPMOVDB Z10, 16(DI)
	VPADDD Z10, Z7, Z7
	VEXTRACTI32X8 $1, Z7, Y8
	VPADDD Y8, Y7, Y7
	VEXTRACTI128 $1, Y7, X8
	VPADDD X8, X7, X7
	VPSHUFD $0x4e, X7, X8
	VPADDD X8, X7, X7
	VPSHUFD $0xb1, X7, X8
	VPADDD X8, X7, X7
	VMOVD X7, AX
	IMULL R9, AX
	MOVL AX, 4(R13)
	ADDQ $128, SI
	ADDQ R8, DI
	ADDQ R10, R13
	DECQ CX
	JNZ q8block
	VZEROUPPER
	RET
