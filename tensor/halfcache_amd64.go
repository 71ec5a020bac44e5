package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func dot8F16AVX2(n int, w *float32, x *uint16, ldx int, out *float32)

//go:noescape
func wsum32F16AVX2(n int, p *float32, v *uint16, ldv int, out *float32)

//go:noescape
func wsum8F16AVX2(n int, p *float32, v *uint16, ldv int, out *float32)

//go:noescape
func narrowF16AVX2(n int, dst *uint16, src *float32)

func init() {
	if noAsm() || !cpu.X86.HasAVX2 || !cpu.X86.HasFMA || !cpuidF16C() {
		return
	}
	dot8F16 = func(w []float32, x []uint16, ldx int, out *[8]float32) {
		n := len(w) &^ 7
		if n == 0 {
			dot8F16Go(w, x, ldx, out)
			return
		}
		_ = x[7*ldx+len(w)-1] // the kernel reads up to here
		dot8F16AVX2(n, &w[0], &x[0], ldx, &out[0])
		if n == len(w) {
			return
		}
		for r := range out {
			out[r] += dotF16Go(w[n:], x[r*ldx+n:r*ldx+len(w)])
		}
	}
	wsumF16 = wsumKernels(wsum32F16AVX2, wsum8F16AVX2, wsumF16Go)
	narrowF16 = func(dst []uint16, src []float32) {
		n := len(src) &^ 7
		if n > 0 {
			_ = dst[n-1]
			narrowF16AVX2(n, &dst[0], &src[0])
		}
		narrowF16Go(dst[n:], src[n:])
	}
}
