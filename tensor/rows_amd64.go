package tensor

import (
	"os"

	"golang.org/x/sys/cpu"
)

// func sumSquaresAVX512(n int, x *float32) float64
//
//go:noescape
func sumSquaresAVX512(n int, x *float32) float64

// func normRowAVX512(n int, y, x, w *float32, s float32)
//
//go:noescape
func normRowAVX512(n int, y, x, w *float32, s float32)

// func addAVX512(n int, y, x *float32)
//
//go:noescape
func addAVX512(n int, y, x *float32)

// func ropeAVX512(rows, half int, v, c, s *float32, dir float32)
//
//go:noescape
func ropeAVX512(rows, half int, v, c, s *float32, dir float32)

// init puts the AVX-512 row kernels (RMSNorm's sum of squares and
// scaling, RoPE, the residual add, GEMM's dealing of B's rows) in place of the Go loops where the CPU
// has AVX-512 F.
// func dealRowAVX512(panels int, row, dst *float32, stride int)
//
//go:noescape
func dealRowAVX512(panels int, row, dst *float32, stride int)

func init() {
	if noAsm() || os.Getenv("ZHLLAMA_NOAVX512") == "1" || !cpu.X86.HasAVX512F {
		return
	}
	sumSquares = func(x []float32) float64 {
		n := len(x) &^ 15
		var ss float64
		if n > 0 {
			ss = sumSquaresAVX512(n, &x[0])
		}
		for _, v := range x[n:] {
			ss += float64(v) * float64(v)
		}
		return ss
	}
	normRow = func(y, x, w []float32, s float32) {
		n := len(x) &^ 15
		y, w = y[:len(x)], w[:len(x)]
		if n > 0 {
			normRowAVX512(n, &y[0], &x[0], &w[0], s)
		}
		normRowGo(y[n:], x[n:], w[n:], s)
	}
	addRow = func(y, x []float32) {
		x = x[:len(y)]
		n := len(y) &^ 15
		if n > 0 {
			addAVX512(n, &y[0], &x[0])
		}
		addRowGo(y[n:], x[n:])
	}
	dealRow32 = func(row, dst []float32, stride int) {
		panels := len(row) / 32
		if panels == 0 {
			return
		}
		_ = dst[(panels-1)*stride+31] // the kernel writes up to this
		dealRowAVX512(panels, &row[0], &dst[0], stride)
	}
	ropeHeads = func(v []float32, heads, half int, c, s []float32, dir float32) {
		if heads == 0 {
			return
		}
		_, _, _ = v[heads*2*half-1], c[half-1], s[half-1] // the kernel reads and writes up to these
		ropeAVX512(heads, half, &v[0], &c[0], &s[0], dir)
	}
}
