#include "textflag.h"

// Vector exp and SwiGLU kernels; the algorithm, and why there is no FMA,
// are in exp.go: each step here is the same float32 operation as there.

// expc holds each constant 8 times (32 bytes) for AVX2 memory operands;
// AVX-512 broadcasts the first copy. The offsets are named below.
DATA expc<>+0(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expc<>+8(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expc<>+16(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expc<>+24(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expc<>+32(SB)/8, $0x3f3180003f318000
DATA expc<>+40(SB)/8, $0x3f3180003f318000
DATA expc<>+48(SB)/8, $0x3f3180003f318000
DATA expc<>+56(SB)/8, $0x3f3180003f318000
DATA expc<>+64(SB)/8, $0xb95e8083b95e8083
DATA expc<>+72(SB)/8, $0xb95e8083b95e8083
DATA expc<>+80(SB)/8, $0xb95e8083b95e8083
DATA expc<>+88(SB)/8, $0xb95e8083b95e8083
DATA expc<>+96(SB)/8, $0x3ab688833ab68883
DATA expc<>+104(SB)/8, $0x3ab688833ab68883
DATA expc<>+112(SB)/8, $0x3ab688833ab68883
DATA expc<>+120(SB)/8, $0x3ab688833ab68883
DATA expc<>+128(SB)/8, $0x3c0905b63c0905b6
DATA expc<>+136(SB)/8, $0x3c0905b63c0905b6
DATA expc<>+144(SB)/8, $0x3c0905b63c0905b6
DATA expc<>+152(SB)/8, $0x3c0905b63c0905b6
DATA expc<>+160(SB)/8, $0x3d2aaa8d3d2aaa8d
DATA expc<>+168(SB)/8, $0x3d2aaa8d3d2aaa8d
DATA expc<>+176(SB)/8, $0x3d2aaa8d3d2aaa8d
DATA expc<>+184(SB)/8, $0x3d2aaa8d3d2aaa8d
DATA expc<>+192(SB)/8, $0x3e2aaa6e3e2aaa6e
DATA expc<>+200(SB)/8, $0x3e2aaa6e3e2aaa6e
DATA expc<>+208(SB)/8, $0x3e2aaa6e3e2aaa6e
DATA expc<>+216(SB)/8, $0x3e2aaa6e3e2aaa6e
DATA expc<>+224(SB)/8, $0x3f0000003f000000
DATA expc<>+232(SB)/8, $0x3f0000003f000000
DATA expc<>+240(SB)/8, $0x3f0000003f000000
DATA expc<>+248(SB)/8, $0x3f0000003f000000
DATA expc<>+256(SB)/8, $0x3f8000003f800000
DATA expc<>+264(SB)/8, $0x3f8000003f800000
DATA expc<>+272(SB)/8, $0x3f8000003f800000
DATA expc<>+280(SB)/8, $0x3f8000003f800000
DATA expc<>+288(SB)/8, $0xc2aeac4fc2aeac4f
DATA expc<>+296(SB)/8, $0xc2aeac4fc2aeac4f
DATA expc<>+304(SB)/8, $0xc2aeac4fc2aeac4f
DATA expc<>+312(SB)/8, $0xc2aeac4fc2aeac4f
DATA expc<>+320(SB)/8, $0x42b1721742b17217
DATA expc<>+328(SB)/8, $0x42b1721742b17217
DATA expc<>+336(SB)/8, $0x42b1721742b17217
DATA expc<>+344(SB)/8, $0x42b1721742b17217
DATA expc<>+352(SB)/8, $0x7f8000007f800000
DATA expc<>+360(SB)/8, $0x7f8000007f800000
DATA expc<>+368(SB)/8, $0x7f8000007f800000
DATA expc<>+376(SB)/8, $0x7f8000007f800000
DATA expc<>+384(SB)/8, $0x8000000080000000
DATA expc<>+392(SB)/8, $0x8000000080000000
DATA expc<>+400(SB)/8, $0x8000000080000000
DATA expc<>+408(SB)/8, $0x8000000080000000
DATA expc<>+416(SB)/8, $0xff800000ff800000
DATA expc<>+424(SB)/8, $0xff800000ff800000
DATA expc<>+432(SB)/8, $0xff800000ff800000
DATA expc<>+440(SB)/8, $0xff800000ff800000
GLOBL expc<>(SB), RODATA|NOPTR, $448

#define LOG2E expc<>+0(SB)
#define LN2HI expc<>+32(SB)
#define LN2LO expc<>+64(SB)
#define C6 expc<>+96(SB)
#define C5 expc<>+128(SB)
#define C4 expc<>+160(SB)
#define C3 expc<>+192(SB)
#define C2 expc<>+224(SB)
#define ONE expc<>+256(SB)
#define LO expc<>+288(SB)
#define HI expc<>+320(SB)
#define INF expc<>+352(SB)
#define SIGN expc<>+384(SB)
#define NEGINF expc<>+416(SB)

// EXP256 sets Y4 = exp(Y0), using Y1, Y2, Y3, Y5, and Y10, Y11, Y12 =
// log2e, ln2Hi, ln2Lo. Inputs out of range are computed on anyway (the
// values are garbage, never a trap) and replaced at the end; NaN passes
// through the arithmetic (its converted n is 0x80000000, which <<23 is 0).
#define EXP256 \
	VMULPS Y10, Y0, Y1; \
	VCVTPS2DQ Y1, Y2; \
	VCVTDQ2PS Y2, Y1; \
	VMULPS Y11, Y1, Y3; \
	VSUBPS Y3, Y0, Y3; \
	VMULPS Y12, Y1, Y1; \
	VSUBPS Y1, Y3, Y3; \
	VMULPS C6, Y3, Y4; \
	VADDPS C5, Y4, Y4; \
	VMULPS Y3, Y4, Y4; \
	VADDPS C4, Y4, Y4; \
	VMULPS Y3, Y4, Y4; \
	VADDPS C3, Y4, Y4; \
	VMULPS Y3, Y4, Y4; \
	VADDPS C2, Y4, Y4; \
	VMULPS Y3, Y3, Y5; \
	VMULPS Y5, Y4, Y4; \
	VADDPS Y3, Y4, Y4; \
	VADDPS ONE, Y4, Y4; \
	VPSLLD $23, Y2, Y2; \
	VPADDD Y2, Y4, Y4; \
	VCMPPS $5, LO, Y0, Y5; \
	VANDPS Y5, Y4, Y4; \
	VCMPPS $14, HI, Y0, Y5; \
	VBLENDVPS Y5, INF, Y4, Y4

#define CONST256 \
	VMOVUPS LOG2E, Y10; \
	VMOVUPS LN2HI, Y11; \
	VMOVUPS LN2LO, Y12; \
	VMOVUPS ONE, Y13

// EXP512 sets Z4 = exp(Z0) as EXP256 does, using Z1, Z2, Z3, Z5, K1, K2
// and the constants CONST512 loads.
#define EXP512 \
	VMULPS Z17, Z0, Z1; \
	VCVTPS2DQ Z1, Z2; \
	VCVTDQ2PS Z2, Z1; \
	VMULPS Z18, Z1, Z3; \
	VSUBPS Z3, Z0, Z3; \
	VMULPS Z19, Z1, Z1; \
	VSUBPS Z1, Z3, Z3; \
	VMULPS Z20, Z3, Z4; \
	VADDPS Z21, Z4, Z4; \
	VMULPS Z3, Z4, Z4; \
	VADDPS Z22, Z4, Z4; \
	VMULPS Z3, Z4, Z4; \
	VADDPS Z23, Z4, Z4; \
	VMULPS Z3, Z4, Z4; \
	VADDPS Z24, Z4, Z4; \
	VMULPS Z3, Z3, Z5; \
	VMULPS Z5, Z4, Z4; \
	VADDPS Z3, Z4, Z4; \
	VADDPS Z25, Z4, Z4; \
	VPSLLD $23, Z2, Z2; \
	VPADDD Z2, Z4, Z4; \
	VCMPPS $5, Z26, Z0, K1; \
	VCMPPS $14, Z27, Z0, K2; \
	VMOVAPS.Z Z4, K1, Z4; \
	VMOVAPS Z28, K2, Z4

#define CONST512 \
	VBROADCASTSS LOG2E, Z17; \
	VBROADCASTSS LN2HI, Z18; \
	VBROADCASTSS LN2LO, Z19; \
	VBROADCASTSS C6, Z20; \
	VBROADCASTSS C5, Z21; \
	VBROADCASTSS C4, Z22; \
	VBROADCASTSS C3, Z23; \
	VBROADCASTSS C2, Z24; \
	VBROADCASTSS ONE, Z25; \
	VBROADCASTSS LO, Z26; \
	VBROADCASTSS HI, Z27; \
	VBROADCASTSS INF, Z28; \
	VBROADCASTSS SIGN, Z29

// func expSubAVX2(n int, dst, src *float32, m float32, acc *[16]float64)
// dst[i] = exp(src[i]−m), adding dst[i] to lane i mod 16 of acc: Y6..Y9
// hold lanes 0–3, 4–7, 8–11, 12–15.
TEXT ·expSubAVX2(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI
	VBROADCASTSS m+24(FP), Y15
	MOVQ acc+32(FP), DX
	CONST256
	VMOVUPD 0(DX), Y6
	VMOVUPD 32(DX), Y7
	VMOVUPD 64(DX), Y8
	VMOVUPD 96(DX), Y9
	SHRQ $4, CX
	JZ done2

loop2:
	VMOVUPS 0(SI), Y0
	VSUBPS Y15, Y0, Y0
	EXP256
	VMOVUPS Y4, 0(DI)
	VCVTPS2PD X4, Y5
	VADDPD Y5, Y6, Y6
	VEXTRACTF128 $1, Y4, X4
	VCVTPS2PD X4, Y5
	VADDPD Y5, Y7, Y7
	VMOVUPS 32(SI), Y0
	VSUBPS Y15, Y0, Y0
	EXP256
	VMOVUPS Y4, 32(DI)
	VCVTPS2PD X4, Y5
	VADDPD Y5, Y8, Y8
	VEXTRACTF128 $1, Y4, X4
	VCVTPS2PD X4, Y5
	VADDPD Y5, Y9, Y9
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ loop2

done2:
	VMOVUPD Y6, 0(DX)
	VMOVUPD Y7, 32(DX)
	VMOVUPD Y8, 64(DX)
	VMOVUPD Y9, 96(DX)
	VZEROUPPER
	RET

// func expSubAVX512(n int, dst, src *float32, m float32, acc *[16]float64)
// As expSubAVX2, with Z30, Z31 holding lanes 0–7, 8–15.
TEXT ·expSubAVX512(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI
	VBROADCASTSS m+24(FP), Z16
	MOVQ acc+32(FP), DX
	CONST512
	VMOVUPD 0(DX), Z30
	VMOVUPD 64(DX), Z31
	SHRQ $4, CX
	JZ done512

loop512:
	VMOVUPS 0(SI), Z0
	VSUBPS Z16, Z0, Z0
	EXP512
	VMOVUPS Z4, 0(DI)
	VCVTPS2PD Y4, Z5
	VADDPD Z5, Z30, Z30
	VEXTRACTF64X4 $1, Z4, Y4
	VCVTPS2PD Y4, Z5
	VADDPD Z5, Z31, Z31
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ loop512

done512:
	VMOVUPD Z30, 0(DX)
	VMOVUPD Z31, 64(DX)
	VZEROUPPER
	RET

// func swigluAVX2(n int, h, gate, u *float32)
// h = g/(1+exp(−g))·u, 8 at a time.
TEXT ·swigluAVX2(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ h+8(FP), DI
	MOVQ gate+16(FP), SI
	MOVQ u+24(FP), DX
	CONST256
	SHRQ $3, CX
	JZ sdone2

sloop2:
	VMOVUPS 0(SI), Y6
	VXORPS SIGN, Y6, Y0
	EXP256
	VADDPS Y13, Y4, Y4
	VDIVPS Y4, Y6, Y4
	VMULPS 0(DX), Y4, Y4
	VMOVUPS Y4, 0(DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNZ sloop2

sdone2:
	VZEROUPPER
	RET

// func swigluAVX512(n int, h, gate, u *float32)
TEXT ·swigluAVX512(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ h+8(FP), DI
	MOVQ gate+16(FP), SI
	MOVQ u+24(FP), DX
	CONST512
	SHRQ $4, CX
	JZ sdone512

sloop512:
	VMOVUPS 0(SI), Z6
	VPXORD Z29, Z6, Z0
	EXP512
	VADDPS Z25, Z4, Z4
	VDIVPS Z4, Z6, Z4
	VMULPS 0(DX), Z4, Z4
	VMOVUPS Z4, 0(DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ sloop512

sdone512:
	VZEROUPPER
	RET

// func swigluBackAVX2(n int, dg, du, dh, gate, u *float32)
// s = 1/(1+exp(−g)), du = dh·g·s, dg = dh·u·s·(1 + g·(1−s)), 8 at a time.
TEXT ·swigluBackAVX2(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ dg+8(FP), R8
	MOVQ du+16(FP), R9
	MOVQ dh+24(FP), R10
	MOVQ gate+32(FP), SI
	MOVQ u+40(FP), DX
	CONST256
	SHRQ $3, CX
	JZ bdone2

bloop2:
	VMOVUPS 0(SI), Y6
	VXORPS SIGN, Y6, Y0
	EXP256
	VADDPS Y13, Y4, Y4
	VDIVPS Y4, Y13, Y4
	VMOVUPS 0(R10), Y7
	VMULPS Y6, Y7, Y5
	VMULPS Y4, Y5, Y5
	VMOVUPS Y5, 0(R9)
	VMULPS 0(DX), Y7, Y7
	VMULPS Y4, Y7, Y7
	VSUBPS Y4, Y13, Y5
	VMULPS Y5, Y6, Y5
	VADDPS Y13, Y5, Y5
	VMULPS Y5, Y7, Y7
	VMOVUPS Y7, 0(R8)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, R8
	ADDQ $32, R9
	ADDQ $32, R10
	DECQ CX
	JNZ bloop2

bdone2:
	VZEROUPPER
	RET

// func swigluBackAVX512(n int, dg, du, dh, gate, u *float32)
TEXT ·swigluBackAVX512(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ dg+8(FP), R8
	MOVQ du+16(FP), R9
	MOVQ dh+24(FP), R10
	MOVQ gate+32(FP), SI
	MOVQ u+40(FP), DX
	CONST512
	SHRQ $4, CX
	JZ bdone512

bloop512:
	VMOVUPS 0(SI), Z6
	VPXORD Z29, Z6, Z0
	EXP512
	VADDPS Z25, Z4, Z4
	VDIVPS Z4, Z25, Z4
	VMOVUPS 0(R10), Z7
	VMULPS Z6, Z7, Z5
	VMULPS Z4, Z5, Z5
	VMOVUPS Z5, 0(R9)
	VMULPS 0(DX), Z7, Z7
	VMULPS Z4, Z7, Z7
	VSUBPS Z4, Z25, Z5
	VMULPS Z5, Z6, Z5
	VADDPS Z25, Z5, Z5
	VMULPS Z5, Z7, Z7
	VMOVUPS Z7, 0(R8)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R8
	ADDQ $64, R9
	ADDQ $64, R10
	DECQ CX
	JNZ bloop512

bdone512:
	VZEROUPPER
	RET

// func rowMaxAVX2(n int, x *float32) float32
// The largest of x[:n], n a multiple of 8, with two accumulators.
TEXT ·rowMaxAVX2(SB), NOSPLIT, $0-20
	MOVQ n+0(FP), CX
	MOVQ x+8(FP), SI
	VMOVUPS NEGINF, Y0
	VMOVUPS Y0, Y1
	SHRQ $3, CX
	TESTQ $1, CX
	JZ mpairs2
	VMAXPS 0(SI), Y0, Y0
	ADDQ $32, SI

mpairs2:
	SHRQ $1, CX
	JZ mdone2

mloop2:
	VMAXPS 0(SI), Y0, Y0
	VMAXPS 32(SI), Y1, Y1
	ADDQ $64, SI
	DECQ CX
	JNZ mloop2

mdone2:
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VMOVSS X0, ret+16(FP)
	VZEROUPPER
	RET

// func rowMaxAVX512(n int, x *float32) float32
// As rowMaxAVX2, n a multiple of 16.
TEXT ·rowMaxAVX512(SB), NOSPLIT, $0-20
	MOVQ n+0(FP), CX
	MOVQ x+8(FP), SI
	VBROADCASTSS NEGINF, Z0
	VMOVAPS Z0, Z1
	SHRQ $4, CX
	TESTQ $1, CX
	JZ mpairs512
	VMAXPS 0(SI), Z0, Z0
	ADDQ $64, SI

mpairs512:
	SHRQ $1, CX
	JZ mdone512

mloop512:
	VMAXPS 0(SI), Z0, Z0
	VMAXPS 64(SI), Z1, Z1
	ADDQ $128, SI
	DECQ CX
	JNZ mloop512

mdone512:
	VMAXPS Z1, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VMOVSS X0, ret+16(FP)
	VZEROUPPER
	RET

// func scaleAVX2(n int, x *float32, a float32)
// x[:n] *= a, n a multiple of 8.
TEXT ·scaleAVX2(SB), NOSPLIT, $0-20
	MOVQ n+0(FP), CX
	MOVQ x+8(FP), SI
	VBROADCASTSS a+16(FP), Y1
	SHRQ $3, CX
	JZ cdone2

cloop2:
	VMULPS 0(SI), Y1, Y0
	VMOVUPS Y0, 0(SI)
	ADDQ $32, SI
	DECQ CX
	JNZ cloop2

cdone2:
	VZEROUPPER
	RET

// func scaleAVX512(n int, x *float32, a float32)
// x[:n] *= a, n a multiple of 16.
TEXT ·scaleAVX512(SB), NOSPLIT, $0-20
	MOVQ n+0(FP), CX
	MOVQ x+8(FP), SI
	VBROADCASTSS a+16(FP), Z1
	SHRQ $4, CX
	JZ cdone512

cloop512:
	VMULPS 0(SI), Z1, Z0
	VMOVUPS Z0, 0(SI)
	ADDQ $64, SI
	DECQ CX
	JNZ cloop512

cdone512:
	VZEROUPPER
	RET
