package tensor

import "math"

// Vectorised float32 exp for the softmaxes, the cross-entropy and SwiGLU.
//
// exp(x) = 2^n · e^r with n = round(x·log2 e) and r = x − n·ln2, the
// product n·ln2 split in two constants (Cody–Waite): ln2Hi has 9
// significant bits, so n·ln2Hi is exact for |n| ≤ 128 and x − n·ln2Hi is
// exact by Sterbenz's lemma. e^r on |r| ≤ ln2/2 is 1 + r + r²·q(r), q of
// degree 4 interpolating (e^r−1−r)/r² at Chebyshev nodes (relative error
// 1.1e-8 in exact arithmetic, well under half an ulp). 2^n is added to the
// exponent bits of e^r, which lies in [√½, √2]: x ≥ expLo keeps every
// result normal (results below 2^-126 are flushed to 0) and x ≤ expHi
// keeps it finite. Measured against float64 math.Exp rounded to float32
// over [expLo, expHi]: at most 1 ulp (TestExp32Accuracy).
//
// Every step is a single IEEE float32 operation, with no fused
// multiply-add, so that the Go code (with explicit conversions that forbid
// the compiler to fuse) and the AVX2 and AVX-512 kernels give the same
// bits for the same input. Sums are kept in 16 float64 lanes, element i in
// lane i mod 16, and reduced in one fixed order (reduce16), so a sum
// too is the same in every implementation. Element-wise results do not
// depend on where a slice is split (the Go tail gives the kernels' bits).

const (
	log2e = 1.44269504 // float32(log2 e)
	ln2Hi = 0.693359375
	ln2Lo = -2.12194442e-4 // float32(ln2 − ln2Hi)
	// expLo is the float32 just above −126·ln2: from there up n ≥ −126,
	// and r > 0 where n = −126, so 2^n·e^r is normal.
	expLo = -87.33654
	// expHi is the largest float32 whose exp rounds to a finite float32.
	expHi = 88.72283
	// q(r) coefficients, r⁰ to r⁴.
	expC2 = 0.5
	expC3 = 0.166665763
	expC4 = 0.0416665562
	expC5 = 0.00836317800
	expC6 = 0.00139261817
)

// exp32 is e^x in float32 by the algorithm above: NaN stays NaN, x < expLo
// gives 0 and x > expHi +Inf.
func exp32(x float32) float32 {
	if !(x >= expLo) {
		if x != x {
			return x
		}
		return 0
	}
	if x > expHi {
		return float32(math.Inf(1))
	}
	t := x * log2e
	nf := float32(math.RoundToEven(float64(t)))
	r := x - float32(nf*ln2Hi)
	r = r - float32(nf*ln2Lo)
	q := float32(expC6*r) + expC5
	q = float32(q*r) + expC4
	q = float32(q*r) + expC3
	q = float32(q*r) + expC2
	r2 := r * r
	y := float32(q*r2) + r
	y = y + 1
	return math.Float32frombits(math.Float32bits(y) + uint32(int32(nf))<<23)
}

// The implementations: the portable Go and, on amd64, assembly.
const (
	implGo = iota
	implAVX2
	implAVX512
)

var implNames = []string{"go", "avx2", "avx512"}

// vexpImpl is the implementation in use; vexpImpls lists those this CPU
// can run, for tests.
var (
	vexpImpl  = implGo
	vexpImpls = []int{implGo}
)

// reduce16 sums the 16 lanes in a fixed order: halves, then quarters...
func reduce16(a *[16]float64) float64 {
	var b [8]float64
	for i := range b {
		b[i] = a[i] + a[i+8]
	}
	for i := 0; i < 4; i++ {
		b[i] += b[i+4]
	}
	b[0] += b[2]
	b[1] += b[3]
	return b[0] + b[1]
}

// expSub sets dst[i] = exp(src[i] − m) (dst may be src) and returns Σ dst
// in float64: the core of a softmax row.
func expSub(dst, src []float32, m float32) float64 { return expSubImpl(vexpImpl, dst, src, m) }

func expSubImpl(impl int, dst, src []float32, m float32) float64 {
	src = src[:len(dst)]
	var acc [16]float64
	n := expSubAsm(impl, dst, src, m, &acc) // a multiple of 16
	expSubGo(dst[n:], src[n:], m, &acc)
	return reduce16(&acc)
}

func expSubGo(dst, src []float32, m float32, acc *[16]float64) {
	src = src[:len(dst)]
	for i, x := range src {
		e := exp32(x - m)
		dst[i] = e
		acc[i&15] += float64(e)
	}
}

// swiglu sets h = silu(g)·u = g/(1+exp(−g))·u.
func swiglu(h, g, u []float32) { swigluImpl(vexpImpl, h, g, u) }

func swigluImpl(impl int, h, g, u []float32) {
	g, u = g[:len(h)], u[:len(h)]
	n := swigluAsm(impl, h, g, u)
	swigluGo(h[n:], g[n:], u[n:])
}

func swigluGo(h, g, u []float32) {
	g, u = g[:len(h)], u[:len(h)]
	for i, x := range g {
		h[i] = x / (1 + exp32(-x)) * u[i]
	}
}

// swigluBack sets du and dg from dh for h = silu(g)·u, with s = σ(g):
// du = dh·g·s, dg = dh·u·s·(1 + g·(1−s)).
func swigluBack(dg, du, dh, g, u []float32) { swigluBackImpl(vexpImpl, dg, du, dh, g, u) }

func swigluBackImpl(impl int, dg, du, dh, g, u []float32) {
	du, dh, g, u = du[:len(dg)], dh[:len(dg)], g[:len(dg)], u[:len(dg)]
	n := swigluBackAsm(impl, dg, du, dh, g, u)
	swigluBackGo(dg[n:], du[n:], dh[n:], g[n:], u[n:])
}

func swigluBackGo(dg, du, dh, g, u []float32) {
	du, dh, g, u = du[:len(dg)], dh[:len(dg)], g[:len(dg)], u[:len(dg)]
	for i, x := range g {
		s := 1 / (1 + exp32(-x))
		du[i] = dh[i] * x * s
		dg[i] = dh[i] * u[i] * s * (1 + float32(x*(1-s)))
	}
}

// rowMax is the largest element of x, −Inf if x is empty. With a NaN in
// x the result is unspecified (a softmax over it is NaN anyway).
func rowMax(x []float32) float32 { return rowMaxImpl(vexpImpl, x) }

func rowMaxImpl(impl int, x []float32) float32 {
	m, n := rowMaxAsm(impl, x)
	for _, v := range x[n:] {
		if v > m {
			m = v
		}
	}
	return m
}

// scal multiplies x by a (BLAS sscal).
func scal(x []float32, a float32) { scalImpl(vexpImpl, x, a) }

func scalImpl(impl int, x []float32, a float32) {
	for i := scalAsm(impl, x, a); i < len(x); i++ {
		x[i] *= a
	}
}
