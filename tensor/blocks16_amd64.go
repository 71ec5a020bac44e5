package tensor

import (
	"os"

	"golang.org/x/sys/cpu"
)

// func x16Q4VNNI(nb, t int, x *int8, xs *x16Scale, w *byte, y *float32, ldy int)
//
//go:noescape
func x16Q4VNNI(nb, t int, x *int8, xs *x16Scale, w *byte, y *float32, ldy int)

// func x16Q8VNNI(nb, t int, x *int8, xs *x16Scale, w *byte, y *float32, ldy int)
//
//go:noescape
func x16Q8VNNI(nb, t int, x *int8, xs *x16Scale, w *byte, y *float32, ldy int)

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
		kern := x16Q8VNNI
		if q4 {
			bb, kern = Q4_0BlockBytes, x16Q4VNNI
		}
		// The kernel reads and writes up to these.
		_, _, _, _ = x[nb*t*QBlock-1], xs[nb*t-1], w[nb*groupRows*bb-1], y[(t-1)*ldy+groupRows-1]
		if t != 1 && t != 2 && t != 4 && t != 8 {
			panic("tensor: x16 kernel called with a tile of other than 1, 2, 4 or 8 rows")
		}
		kern(nb, t, &x[0], &xs[0], &w[0], &y[0], ldy)
	}
	quantizeRow = func(q []int8, xs []x16Scale, x []float32, n int, offset int32) {
		nb := len(x) / QBlock
		if nb == 0 {
			return
		}
		_, _ = q[((nb-1)*n+1)*QBlock-1], xs[(nb-1)*n] // the kernel writes up to these
		quantizeQ8AVX512(nb, &x[0], &q[0], &xs[0], n, offset)
	}
}
