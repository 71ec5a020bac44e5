package tensor

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// ulps is the distance in units in the last place between two finite
// float32 of the same sign (or zero).
func ulps(a, b float32) int64 {
	d := int64(math.Float32bits(a)&^(1<<31)) - int64(math.Float32bits(b)&^(1<<31))
	if d < 0 {
		d = -d
	}
	return d
}

func exp32Ref(x float32) float32 { return float32(math.Exp(float64(x))) }

// expEdges are inputs at and around the edges of the algorithm.
func expEdges() []float32 {
	inf := float32(math.Inf(1))
	xs := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 1e-30, -1e-30, 1e-45, -1e-45,
		expLo, math.Nextafter32(expLo, -inf), math.Nextafter32(expLo, 0), -87.3, -87.33655, -88, -100, -103, -104, -1000,
		expHi, math.Nextafter32(expHi, inf), math.Nextafter32(expHi, 0), 88, 88.7, 88.72284, 89, 1000,
		-inf, inf, math.MaxFloat32, -math.MaxFloat32, float32(math.NaN()), -float32(math.NaN())}
	for k := -127; k <= 128; k++ { // where n changes, r = ±ln2/2
		c := (float32(k) + 0.5) * math.Ln2
		xs = append(xs, c, math.Nextafter32(c, inf), math.Nextafter32(c, -inf), float32(k)*math.Ln2)
	}
	return xs
}

// expErr checks one exp result against float64 math.Exp: NaN for NaN, 0
// below expLo, +Inf above expHi, within maxUlp elsewhere. It returns the
// error in ulps, and whether the result is acceptable.
func expErr(x, got float32, maxUlp int64) (int64, bool) {
	switch {
	case x != x:
		return 0, got != got
	case x < expLo:
		return 0, got == 0
	case x > expHi:
		return 0, math.IsInf(float64(got), 1)
	}
	want := exp32Ref(x)
	if math.IsInf(float64(want), 0) || math.IsInf(float64(got), 0) || want < 1.1754944e-38 {
		return 0, false // out of the normal range
	}
	u := ulps(got, want)
	return u, u <= maxUlp
}

func checkExp(t *testing.T, name string, x, got float32) {
	t.Helper()
	if _, ok := expErr(x, got, 1); !ok {
		t.Errorf("%s: exp(%v) = %v, reference %v", name, x, got, exp32Ref(x))
	}
}

// TestExp32Accuracy sweeps float32 inputs through every implementation
// (Go and each kernel this CPU runs, through expSub with m = 0, so both
// the vector body and the tail) and checks them against float64 math.Exp
// and against each other, bit for bit. By default every 509th float32 in
// [−104, 89] is tried; ZHLLAMA_EXP_ALL=1 tries them all (the 1 ulp in
// exp.go was measured so, for go, avx2 and avx512).
func TestExp32Accuracy(t *testing.T) {
	stride := uint32(509)
	if os.Getenv("ZHLLAMA_EXP_ALL") == "1" {
		stride = 1
	}
	const block = 1<<16 + 7 // a tail in each block
	xs := expEdges()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1<<14; i++ {
		xs = append(xs, float32(r.Float64()*200-100))
	}
	lim := func(v float32) uint32 { return math.Float32bits(v) &^ (1 << 31) }
	worst := make([]int64, len(vexpImpls))
	outs := make([][]float32, len(vexpImpls))
	next, count := uint32(0), 0
	for len(xs) > 0 || next <= lim(104) {
		for len(xs) < block && next <= lim(104) {
			if next <= lim(89) {
				xs = append(xs, math.Float32frombits(next))
			}
			xs = append(xs, math.Float32frombits(next|1<<31))
			next += stride
		}
		n := min(block, len(xs))
		for k, impl := range vexpImpls {
			outs[k] = append(outs[k][:0], make([]float32, n)...)
			expSubImpl(impl, outs[k], xs[:n], 0)
		}
		for i, x := range xs[:n] {
			if e := exp32(x); x == x && math.Float32bits(e) != math.Float32bits(outs[0][i]) {
				t.Fatalf("exp32(%v) = %v, expSubGo %v", x, e, outs[0][i])
			}
			for k, impl := range vexpImpls {
				got := outs[k][i]
				u, ok := expErr(x, got, 1)
				if !ok {
					t.Errorf("%s: exp(%v) = %v, reference %v", implNames[impl], x, got, exp32Ref(x))
				}
				worst[k] = max(worst[k], u)
				if x == x && math.Float32bits(got) != math.Float32bits(outs[0][i]) {
					t.Fatalf("%s: exp(%v) = %v, go gives %v", implNames[impl], x, got, outs[0][i])
				}
			}
		}
		count += n
		xs = xs[n:]
	}
	for k, impl := range vexpImpls {
		t.Logf("%s: %d inputs, max error %d ulp", implNames[impl], count, worst[k])
	}
}

// TestExpSub checks the values and sums of expSub against float64 for
// each implementation, that they agree bit for bit whatever the length
// and the split of a slice, and that dst may be src.
func TestExpSub(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 5, 15, 16, 17, 31, 32, 33, 100, 257, 32000} {
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(r.NormFloat64() * 4)
		}
		if n > 40 {
			src[7], src[20], src[33] = float32(math.Inf(-1)), -200, 30
		}
		m := float32(3)
		var want float64
		for _, x := range src {
			want += math.Exp(float64(x - m))
		}
		var first []float32
		var firstSum float64
		for _, impl := range vexpImpls {
			name := implNames[impl]
			dst := make([]float32, n)
			sum := expSubImpl(impl, dst, src, m)
			if math.Abs(sum-want) > 1e-6*want {
				t.Errorf("%s n=%d: sum %v, want %v", name, n, sum, want)
			}
			for i, x := range src {
				checkExp(t, name, x-m, dst[i])
			}
			if first == nil {
				first, firstSum = dst, sum
			} else {
				for i := range dst {
					if math.Float32bits(dst[i]) != math.Float32bits(first[i]) {
						t.Fatalf("%s n=%d: dst[%d] = %v, %s gives %v", name, n, i, dst[i], implNames[vexpImpls[0]], first[i])
					}
				}
				if sum != firstSum {
					t.Errorf("%s n=%d: sum %v, %s gives %v", name, n, sum, implNames[vexpImpls[0]], firstSum)
				}
			}
			inPlace := append([]float32(nil), src...)
			if s := expSubImpl(impl, inPlace, inPlace, m); s != sum {
				t.Errorf("%s n=%d: in place sum %v, want %v", name, n, s, sum)
			}
			for i := range inPlace {
				if math.Float32bits(inPlace[i]) != math.Float32bits(dst[i]) {
					t.Fatalf("%s n=%d: in place dst[%d] = %v, want %v", name, n, i, inPlace[i], dst[i])
				}
			}
		}
	}
}

// swigluInputs are gates with edge values and their up projections.
func swigluInputs(n int) (g, u, dh []float32) {
	r := rand.New(rand.NewPCG(5, 6))
	g, u, dh = make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range g {
		g[i], u[i], dh[i] = float32(r.NormFloat64()*3), float32(r.NormFloat64()), float32(r.NormFloat64())
	}
	edges := []float32{0, 1e-40, -1e-40, 20, -20, 88, -88, 89, -89, 100, -100, 1000, -1000}
	copy(g[n/3:], edges)
	return g, u, dh
}

// TestSwiGLUKernels checks swiglu and swigluBack of every implementation
// against float64 and against each other, bit for bit.
func TestSwiGLUKernels(t *testing.T) {
	for _, n := range []int{1, 7, 8, 9, 16, 17, 40, 1000} {
		g, u, dh := swigluInputs(max(n, 40))
		g, u, dh = g[:n], u[:n], dh[:n]
		var h0, dg0, du0 []float32
		for _, impl := range vexpImpls {
			name := implNames[impl]
			h, dg, du := make([]float32, n), make([]float32, n), make([]float32, n)
			swigluImpl(impl, h, g, u)
			swigluBackImpl(impl, dg, du, dh, g, u)
			for i := range h {
				x := float64(g[i])
				s := 1 / (1 + math.Exp(-x))
				wh := x * s * float64(u[i])
				wdu := float64(dh[i]) * x * s
				wdg := float64(dh[i]) * float64(u[i]) * s * (1 + x*(1-s))
				for _, c := range []struct {
					what      string
					got, want float64
				}{{"h", float64(h[i]), wh}, {"du", float64(du[i]), wdu}, {"dg", float64(dg[i]), wdg}} {
					if math.Abs(c.got-c.want) > 1e-6*(1+math.Abs(c.want)) {
						t.Errorf("%s n=%d: %s at g=%v u=%v dh=%v: %v, want %v", name, n, c.what, g[i], u[i], dh[i], c.got, c.want)
					}
				}
			}
			if h0 == nil {
				h0, dg0, du0 = h, dg, du
				continue
			}
			for i := range h {
				if math.Float32bits(h[i]) != math.Float32bits(h0[i]) || math.Float32bits(dg[i]) != math.Float32bits(dg0[i]) || math.Float32bits(du[i]) != math.Float32bits(du0[i]) {
					t.Fatalf("%s n=%d i=%d g=%v: (%v %v %v), %s gives (%v %v %v)", name, n, i, g[i], h[i], dg[i], du[i], implNames[vexpImpls[0]], h0[i], dg0[i], du0[i])
				}
			}
		}
	}
}

// TestExpSpecials checks that NaN and infinite gates behave as the float64
// formulas do in every implementation.
func TestExpSpecials(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	g := []float32{nan, inf, -inf, nan, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, nan}
	u := make([]float32, len(g))
	for i := range u {
		u[i] = 1
	}
	for _, impl := range vexpImpls {
		h := make([]float32, len(g))
		swigluImpl(impl, h, g, u)
		if h[0] == h[0] || h[16] == h[16] || h[1] != inf || h[2] == h[2] || h[4] != 0 {
			t.Errorf("%s: swiglu(NaN, +Inf, −Inf (NaN, as −Inf/Inf), ..., 0) = %v", implNames[impl], h)
		}
	}
}

// TestRowMaxScal checks rowMax and scal of every implementation against
// plain loops, for lengths around the vector widths.
func TestRowMaxScal(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for n := 0; n <= 70; n++ {
		for _, at := range []int{0, n / 2, n - 1} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.NormFloat64()) - 10
			}
			want := float32(math.Inf(-1))
			if n > 0 {
				x[at] = float32(r.Float64()) // the largest, wherever it lies
				want = x[at]
			}
			for _, impl := range vexpImpls {
				if got := rowMaxImpl(impl, x); got != want {
					t.Errorf("%s n=%d: rowMax %v, want %v", implNames[impl], n, got, want)
				}
				y := append([]float32(nil), x...)
				a := float32(0.3)
				scalImpl(impl, y, a)
				for i := range y {
					if y[i] != x[i]*a {
						t.Fatalf("%s n=%d: scal gives %v at %d, want %v", implNames[impl], n, y[i], i, x[i]*a)
					}
				}
			}
		}
	}
}
