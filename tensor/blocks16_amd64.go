package tensor

import (
	"os"

	"golang.org/x/sys/cpu"
)

// func x16VNNI(nb, t int, x *int8, xs *x16Scale, w *byte, y *float32, ldy int, q4 bool)
//
//go:noescape
func x16VNNI(nb, t int, x *int8, xs *x16Scale, w *byte, y *float32, ldy int, q4 bool)

// func x16VNNI4(nb int, x *int8, xs *x16Scale, w *byte, gb int, y *float32, q4 bool)
//
//go:noescape
func x16VNNI4(nb int, x *int8, xs *x16Scale, w *byte, gb int, y *float32, q4 bool)

// func quantizeQ8AVX512(nb int, x *float32, q *int8, xs *x16Scale, stride int, offset int32)
//
//go:noescape
func quantizeQ8AVX512(nb int, x *float32, q *int8, xs *x16Scale, stride int, offset int32)

func init() {
	// The kernels need AVX-512 F, BW and VNNI (VCVTPH2PS on 512 bits is F).
	if noAsm() || os.Getenv("ZHLLAMA_NOAVX512") == "1" || !cpu.X86.HasAVX512F || !cpu.X86.HasAVX512BW || !cpu.X86.HasAVX512VNNI {
		return
	}
	x16Kernel = func(q4 bool, nb, t int, x []int8, xs []x16Scale, w []byte, y []float32, ldy int) {
		bb := Q8_0BlockBytes
		if q4 {
			bb = Q4_0BlockBytes
		}
		// The kernel reads and writes up to these.
		_, _, _, _ = x[nb*t*QBlock-1], xs[nb*t-1], w[nb*groupRows*bb-1], y[(t-1)*ldy+groupRows-1]
		if t != 1 && t != 2 && t != 4 && t != 8 {
			panic("tensor: x16 kernel called with a tile of other than 1, 2, 4 or 8 rows")
		}
		x16VNNI(nb, t, &x[0], &xs[0], &w[0], &y[0], ldy, q4)
	}
	x16Kernel4 = func(q4 bool, nb int, x []int8, xs []x16Scale, w []byte, y []float32) {
		gb := nb * groupRows * Q8_0BlockBytes
		if q4 {
			gb = nb * groupRows * Q4_0BlockBytes
		}
		_, _, _, _ = x[nb*QBlock-1], xs[nb-1], w[4*gb-1], y[4*groupRows-1]
		x16VNNI4(nb, &x[0], &xs[0], &w[0], gb, &y[0], q4)
	}
	quantizeRow = func(q []int8, xs []x16Scale, x []float32, n int, offset int32) {
		nb := len(x) / QBlock
		if nb == 0 {
			return
		}
		_, _ = q[((nb-1)*n+1)*QBlock-1], xs[(nb-1)*n] // the kernel writes up to these
		quantizeQ8AVX512(nb, &x[0], &q[0], &xs[0], n, offset)
	}
	initAMX()
}
