package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func kernel4x16AVX2(k int, a, b, c *float32, ldc int, alpha float32)

func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && !noAsm() {
		microKernel = func(k int, a, b, c []float32, ldc int, alpha float32) {
			kernel4x16AVX2(k, &a[0], &b[0], &c[0], ldc, alpha)
		}
		KernelName = "avx2+fma 4x16"
	}
}
