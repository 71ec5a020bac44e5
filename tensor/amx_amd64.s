#include "textflag.h"

// The AMX kernel of amx_amd64.go. Go's assembler has no AMX mnemonics,
// so the tile instructions are spelled out as bytes; the registers they
// name are fixed: input codes from (SI)(R8*1), weight codes from
// 64(DI)(R9*1) and 64(R10)(R9*1), sums stored to (R11)(R9*1).

// AMXBLOCK multiplies one block: TILEZERO TMM0–TMM3; TILELOADD TMM4 ←
// (SI)(R8*1), TMM5 ← 512(SI)(R8*1) (input rows 0–15 and 16–31); TILELOADD
// TMM6 ← 64(DI)(R9*1), TMM7 ← 64(R10)(R9*1) (the two groups' codes);
// TDPBSSD TMM0 += TMM4·TMM6, TMM1 += TMM4·TMM7, TMM2 += TMM5·TMM6, TMM3 +=
// TMM5·TMM7; TILESTORED TMM0 … TMM3 → (R11)(R9*1) + 0, 1024, 2048, 3072.
#define AMXBLOCK \
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xc0; \
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xc8; \
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xd0; \
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xd8; \
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0x24; BYTE $0x06; \
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0xac; BYTE $0x06; BYTE $0x00; BYTE $0x02; BYTE $0x00; BYTE $0x00; \
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0x74; BYTE $0x0f; BYTE $0x40; \
	BYTE $0xc4; BYTE $0x82; BYTE $0x7b; BYTE $0x4b; BYTE $0x7c; BYTE $0x0a; BYTE $0x40; \
	BYTE $0xc4; BYTE $0xe2; BYTE $0x4b; BYTE $0x5e; BYTE $0xc4; \
	BYTE $0xc4; BYTE $0xe2; BYTE $0x43; BYTE $0x5e; BYTE $0xcc; \
	BYTE $0xc4; BYTE $0xe2; BYTE $0x4b; BYTE $0x5e; BYTE $0xd5; \
	BYTE $0xc4; BYTE $0xe2; BYTE $0x43; BYTE $0x5e; BYTE $0xdd; \
	BYTE $0xc4; BYTE $0x82; BYTE $0x7a; BYTE $0x4b; BYTE $0x04; BYTE $0x0b; \
	BYTE $0xc4; BYTE $0x82; BYTE $0x7a; BYTE $0x4b; BYTE $0x8c; BYTE $0x0b; BYTE $0x00; BYTE $0x04; BYTE $0x00; BYTE $0x00; \
	BYTE $0xc4; BYTE $0x82; BYTE $0x7a; BYTE $0x4b; BYTE $0x94; BYTE $0x0b; BYTE $0x00; BYTE $0x08; BYTE $0x00; BYTE $0x00; \
	BYTE $0xc4; BYTE $0x82; BYTE $0x7a; BYTE $0x4b; BYTE $0x9c; BYTE $0x0b; BYTE $0x00; BYTE $0x0c; BYTE $0x00; BYTE $0x00

// AMXROW adds row m of a block's four stored 16 × 16 sums (at BUF) to
// the 32 × 32 outputs at DX (128 bytes a row): output row m from the
// first two, row 16+m from the last two, each sum scaled as the
// sixteen-row kernels scale it: float32(sum) times d_w·d_x (Z30, Z31 the
// two groups' weight scales; the input rows' scales at 8m(R13) and
// 128+8m(R13)), fused into the output.
#define AMXROW(m, BUF) \
	VMULPS.BCST 8*m(R13), Z30, Z24; \
	VMULPS.BCST 8*m(R13), Z31, Z25; \
	VMULPS.BCST 128+8*m(R13), Z30, Z26; \
	VMULPS.BCST 128+8*m(R13), Z31, Z27; \
	VCVTDQ2PS 64*m(BUF), Z20; \
	VCVTDQ2PS 1024+64*m(BUF), Z21; \
	VCVTDQ2PS 2048+64*m(BUF), Z22; \
	VCVTDQ2PS 3072+64*m(BUF), Z23; \
	VMOVUPS 128*m(DX), Z16; \
	VMOVUPS 64+128*m(DX), Z17; \
	VMOVUPS 2048+128*m(DX), Z18; \
	VMOVUPS 2112+128*m(DX), Z19; \
	VFMADD231PS Z24, Z20, Z16; \
	VFMADD231PS Z25, Z21, Z17; \
	VFMADD231PS Z26, Z22, Z18; \
	VFMADD231PS Z27, Z23, Z19; \
	VMOVUPS Z16, 128*m(DX); \
	VMOVUPS Z17, 64+128*m(DX); \
	VMOVUPS Z18, 2048+128*m(DX); \
	VMOVUPS Z19, 2112+128*m(DX)

// AMXSCALE adds the block before DI's stored sums (at BUF; its weight
// scales at -576(DI) and -576(R10), its input scales at R13) to the
// outputs.
#define AMXSCALE(BUF) \
	VMOVUPS -576(DI), Z30; \
	VMOVUPS -576(R10), Z31; \
	AMXROW(0, BUF); \
	AMXROW(1, BUF); \
	AMXROW(2, BUF); \
	AMXROW(3, BUF); \
	AMXROW(4, BUF); \
	AMXROW(5, BUF); \
	AMXROW(6, BUF); \
	AMXROW(7, BUF); \
	AMXROW(8, BUF); \
	AMXROW(9, BUF); \
	AMXROW(10, BUF); \
	AMXROW(11, BUF); \
	AMXROW(12, BUF); \
	AMXROW(13, BUF); \
	AMXROW(14, BUF); \
	AMXROW(15, BUF)

// func amxQ8(nb, nt int, x *int8, xs *x16Scale, ws *byte, wstride int, y *float32, ldy int, buf *byte, cfg *byte)
// amxQ8 sets y[i·ldy + l] (i < 32·nt, l < 32) to the dot products of nt
// tiles of 32 input rows (each tile's codes [nb][32][32] and scales
// [nb][32], the tiles one after another) with two groups of sixteen
// weight rows in the signed layout (ws and ws+wstride, 576 bytes a
// block). buf (12 KB, 64-byte aligned) holds two blocks' integer sums
// and the 32 × 32 outputs: the sums of block b are scaled while the tile
// unit works on block b+1 (a load of what a tile store has just written
// waits for the store to reach the cache; R11 is the half the tiles
// store to, AX the half being scaled), and the outputs stay in 4 KB of
// their own until a tile is done (y's rows are often a multiple of 4 KB
// apart, and 32 of them would fight over one set of the L1 cache).
TEXT ·amxQ8(SB), NOSPLIT, $0-80
	MOVQ cfg+72(FP), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0x00 // LDTILECFG (AX)
	MOVQ nt+8(FP), BX
	MOVQ x+16(FP), SI
	MOVQ xs+24(FP), R13
	MOVQ y+48(FP), R12
	MOVQ buf+64(FP), DX
	ADDQ $8192, DX
	MOVQ $32, R8
	MOVQ $64, R9
	VPXORD Z0, Z0, Z0

amxtile:
	VMOVUPS Z0, 0(DX)
	VMOVUPS Z0, 64(DX)
	VMOVUPS Z0, 128(DX)
	VMOVUPS Z0, 192(DX)
	VMOVUPS Z0, 256(DX)
	VMOVUPS Z0, 320(DX)
	VMOVUPS Z0, 384(DX)
	VMOVUPS Z0, 448(DX)
	VMOVUPS Z0, 512(DX)
	VMOVUPS Z0, 576(DX)
	VMOVUPS Z0, 640(DX)
	VMOVUPS Z0, 704(DX)
	VMOVUPS Z0, 768(DX)
	VMOVUPS Z0, 832(DX)
	VMOVUPS Z0, 896(DX)
	VMOVUPS Z0, 960(DX)
	VMOVUPS Z0, 1024(DX)
	VMOVUPS Z0, 1088(DX)
	VMOVUPS Z0, 1152(DX)
	VMOVUPS Z0, 1216(DX)
	VMOVUPS Z0, 1280(DX)
	VMOVUPS Z0, 1344(DX)
	VMOVUPS Z0, 1408(DX)
	VMOVUPS Z0, 1472(DX)
	VMOVUPS Z0, 1536(DX)
	VMOVUPS Z0, 1600(DX)
	VMOVUPS Z0, 1664(DX)
	VMOVUPS Z0, 1728(DX)
	VMOVUPS Z0, 1792(DX)
	VMOVUPS Z0, 1856(DX)
	VMOVUPS Z0, 1920(DX)
	VMOVUPS Z0, 1984(DX)
	VMOVUPS Z0, 2048(DX)
	VMOVUPS Z0, 2112(DX)
	VMOVUPS Z0, 2176(DX)
	VMOVUPS Z0, 2240(DX)
	VMOVUPS Z0, 2304(DX)
	VMOVUPS Z0, 2368(DX)
	VMOVUPS Z0, 2432(DX)
	VMOVUPS Z0, 2496(DX)
	VMOVUPS Z0, 2560(DX)
	VMOVUPS Z0, 2624(DX)
	VMOVUPS Z0, 2688(DX)
	VMOVUPS Z0, 2752(DX)
	VMOVUPS Z0, 2816(DX)
	VMOVUPS Z0, 2880(DX)
	VMOVUPS Z0, 2944(DX)
	VMOVUPS Z0, 3008(DX)
	VMOVUPS Z0, 3072(DX)
	VMOVUPS Z0, 3136(DX)
	VMOVUPS Z0, 3200(DX)
	VMOVUPS Z0, 3264(DX)
	VMOVUPS Z0, 3328(DX)
	VMOVUPS Z0, 3392(DX)
	VMOVUPS Z0, 3456(DX)
	VMOVUPS Z0, 3520(DX)
	VMOVUPS Z0, 3584(DX)
	VMOVUPS Z0, 3648(DX)
	VMOVUPS Z0, 3712(DX)
	VMOVUPS Z0, 3776(DX)
	VMOVUPS Z0, 3840(DX)
	VMOVUPS Z0, 3904(DX)
	VMOVUPS Z0, 3968(DX)
	VMOVUPS Z0, 4032(DX)
	MOVQ buf+64(FP), R11
	LEAQ 4096(R11), AX
	MOVQ ws+32(FP), DI
	MOVQ wstride+40(FP), R10
	ADDQ DI, R10
	MOVQ nb+0(FP), CX
	AMXBLOCK
	ADDQ $1024, SI
	ADDQ $576, DI
	ADDQ $576, R10
	XCHGQ AX, R11
	DECQ CX
	JZ amxdrain
amxblock:
	AMXBLOCK
	AMXSCALE(AX)
	ADDQ $1024, SI
	ADDQ $576, DI
	ADDQ $576, R10
	ADDQ $256, R13
	XCHGQ AX, R11
	DECQ CX
	JNZ amxblock
amxdrain:
	AMXSCALE(AX)
	ADDQ $256, R13

	// The tile's outputs to y.
	MOVQ ldy+56(FP), CX
	SHLQ $2, CX
	MOVQ DX, AX
	MOVQ $32, DI
amxout:
	VMOVUPS (AX), Z1
	VMOVUPS 64(AX), Z2
	VMOVUPS Z1, (R12)
	VMOVUPS Z2, 64(R12)
	ADDQ $128, AX
	ADDQ CX, R12
	DECQ DI
	JNZ amxout
	DECQ BX
	JNZ amxtile
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0xc0 // TILERELEASE
	VZEROUPPER
	RET

// func amxSigned(nb int, w *byte, ws *byte, q4 bool)
// amxSigned writes nb blocks of one sixteen-row group w in the signed
// layout the AMX kernel reads: per block the sixteen weight scales as
// float32 (64 bytes), then eight 64-byte rows of signed codes, row k
// holding codes 4k…4k+3 of each weight row (a B tile of TDPBSSD). Q8_0
// codes lose their offset of 128; Q4_0's nibbles are split (low nibbles
// codes 0–15, high 16–31) and lose 8.
TEXT ·amxSigned(SB), NOSPLIT, $0-25
	MOVQ nb+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ ws+16(FP), DI
	MOVL $0x0f0f0f0f, AX
	VPBROADCASTD AX, Z16
	MOVL $0x08080808, AX
	VPBROADCASTD AX, Z17
	MOVL $0x80808080, AX
	VPBROADCASTD AX, Z18
	CMPB q4+24(FP), $0
	JNE signq4
signq8:
	VCVTPH2PS (SI), Z0
	VMOVUPS Z0, (DI)
	VPXORD 32(SI), Z18, Z1
	VPXORD 96(SI), Z18, Z2
	VPXORD 160(SI), Z18, Z3
	VPXORD 224(SI), Z18, Z4
	VPXORD 288(SI), Z18, Z5
	VPXORD 352(SI), Z18, Z6
	VPXORD 416(SI), Z18, Z7
	VPXORD 480(SI), Z18, Z8
	VMOVDQU32 Z1, 64(DI)
	VMOVDQU32 Z2, 128(DI)
	VMOVDQU32 Z3, 192(DI)
	VMOVDQU32 Z4, 256(DI)
	VMOVDQU32 Z5, 320(DI)
	VMOVDQU32 Z6, 384(DI)
	VMOVDQU32 Z7, 448(DI)
	VMOVDQU32 Z8, 512(DI)
	ADDQ $544, SI
	ADDQ $576, DI
	DECQ CX
	JNZ signq8
	VZEROUPPER
	RET

// SIGNQ4(j): vector j's low nibbles are row j, its high nibbles row 4+j.
#define SIGNQ4(j) \
	VMOVDQU32 32+64*j(SI), Z1; \
	VPSRLW $4, Z1, Z2; \
	VPANDD Z16, Z1, Z1; \
	VPANDD Z16, Z2, Z2; \
	VPSUBB Z17, Z1, Z1; \
	VPSUBB Z17, Z2, Z2; \
	VMOVDQU32 Z1, 64+64*j(DI); \
	VMOVDQU32 Z2, 320+64*j(DI)

signq4:
	VCVTPH2PS (SI), Z0
	VMOVUPS Z0, (DI)
	SIGNQ4(0)
	SIGNQ4(1)
	SIGNQ4(2)
	SIGNQ4(3)
	ADDQ $288, SI
	ADDQ $576, DI
	DECQ CX
	JNZ signq4
	VZEROUPPER
	RET
