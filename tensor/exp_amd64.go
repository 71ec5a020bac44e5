package tensor

import (
	"math"
	"os"

	"golang.org/x/sys/cpu"
)

// The kernels take whole vectors only (see exp.go); n is their count of
// elements: a multiple of 16 for expSub*, of 16 (AVX-512) or 8 (AVX2) for
// the others.

//go:noescape
func expSubAVX512(n int, dst, src *float32, m float32, acc *[16]float64)

//go:noescape
func expSubAVX2(n int, dst, src *float32, m float32, acc *[16]float64)

//go:noescape
func swigluAVX512(n int, h, gate, u *float32)

//go:noescape
func swigluAVX2(n int, h, gate, u *float32)

//go:noescape
func swigluBackAVX512(n int, dg, du, dh, gate, u *float32)

//go:noescape
func swigluBackAVX2(n int, dg, du, dh, gate, u *float32)

//go:noescape
func rowMaxAVX512(n int, x *float32) float32

//go:noescape
func rowMaxAVX2(n int, x *float32) float32

//go:noescape
func scaleAVX512(n int, x *float32, a float32)

//go:noescape
func scaleAVX2(n int, x *float32, a float32)

func init() {
	if cpu.X86.HasAVX2 {
		vexpImpls = append(vexpImpls, implAVX2)
	}
	if cpu.X86.HasAVX512F {
		vexpImpls = append(vexpImpls, implAVX512)
	}
	switch {
	case noAsm():
	case cpu.X86.HasAVX512F && os.Getenv("ZHLLAMA_NOAVX512") != "1":
		vexpImpl = implAVX512
	case cpu.X86.HasAVX2:
		vexpImpl = implAVX2
	}
}

// expSubAsm runs the kernel of impl over dst and returns how many
// elements it did: all of them, a short tail through a block of 16 padded
// with −∞ (whose exponentials add 0 to their lanes' sums), as the
// attention rows of every length have one.
func expSubAsm(impl int, dst, src []float32, m float32, acc *[16]float64) int {
	if impl != implAVX512 && impl != implAVX2 {
		return 0
	}
	n := len(dst) &^ 15
	if n > 0 {
		expSubKernel(impl, n, &dst[0], &src[0], m, acc)
	}
	if r := len(dst) - n; r > 0 {
		var in, out [16]float32
		copy(in[:], src[n:])
		for i := r; i < 16; i++ {
			in[i] = float32(math.Inf(-1))
		}
		expSubKernel(impl, 16, &out[0], &in[0], m, acc)
		copy(dst[n:], out[:r])
	}
	return len(dst)
}

// expSubKernel calls impl's kernel directly: through a function value its
// arguments would escape, and the scratch above with them.
func expSubKernel(impl, n int, dst, src *float32, m float32, acc *[16]float64) {
	if impl == implAVX512 {
		expSubAVX512(n, dst, src, m, acc)
	} else {
		expSubAVX2(n, dst, src, m, acc)
	}
}

func swigluAsm(impl int, h, g, u []float32) int {
	var n int
	switch impl {
	case implAVX512:
		if n = len(h) &^ 15; n > 0 {
			swigluAVX512(n, &h[0], &g[0], &u[0])
		}
	case implAVX2:
		if n = len(h) &^ 7; n > 0 {
			swigluAVX2(n, &h[0], &g[0], &u[0])
		}
	}
	return n
}

func swigluBackAsm(impl int, dg, du, dh, g, u []float32) int {
	var n int
	switch impl {
	case implAVX512:
		if n = len(dg) &^ 15; n > 0 {
			swigluBackAVX512(n, &dg[0], &du[0], &dh[0], &g[0], &u[0])
		}
	case implAVX2:
		if n = len(dg) &^ 7; n > 0 {
			swigluBackAVX2(n, &dg[0], &du[0], &dh[0], &g[0], &u[0])
		}
	}
	return n
}

// lanes is the vector width of impl, for the element-wise kernels.
func lanes(impl int) int {
	switch impl {
	case implAVX512:
		return 16
	case implAVX2:
		return 8
	}
	return 0
}

func rowMaxAsm(impl int, x []float32) (float32, int) {
	w := lanes(impl)
	if w == 0 || len(x) < w {
		return float32(math.Inf(-1)), 0
	}
	n := len(x) / w * w
	if impl == implAVX512 {
		return rowMaxAVX512(n, &x[0]), n
	}
	return rowMaxAVX2(n, &x[0]), n
}

func scalAsm(impl int, x []float32, a float32) int {
	w := lanes(impl)
	if w == 0 || len(x) < w {
		return 0
	}
	n := len(x) / w * w
	if impl == implAVX512 {
		scaleAVX512(n, &x[0], a)
	} else {
		scaleAVX2(n, &x[0], a)
	}
	return n
}
