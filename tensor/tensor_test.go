package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"zhllama/internal/testenv"
)

func randn(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

func dot64(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// checkGrad compares analytic gradients of a scalar loss with central
// differences at a sample of the entries of x.
func checkGrad(t *testing.T, name string, x, analytic []float32, loss func() float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(9, uint64(len(x))))
	at := make([]int, min(len(x), 24))
	for n := range at {
		at[n] = rng.IntN(len(x))
	}
	for n, num := range testenv.NumericGrad(loss, x, at, 1e-2) {
		i := at[n]
		if d := math.Abs(num - float64(analytic[i])); d > 2e-2*math.Max(1, math.Abs(num)) {
			t.Errorf("%s[%d]: analytic %g, numeric %g", name, i, analytic[i], num)
		}
	}
}

func TestGemmTranspositions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m, n, k := 7, 9, 5
	a, b := randn(rng, m*k), randn(rng, k*n)
	at, bt := make([]float32, k*m), make([]float32, n*k)
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			at[p*m+i] = a[i*k+p]
		}
	}
	for p := 0; p < k; p++ {
		for j := 0; j < n; j++ {
			bt[j*k+p] = b[p*n+j]
		}
	}
	want := make([]float32, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += float64(a[i*k+p]) * float64(b[p*n+j])
			}
			want[i*n+j] = float32(2*s + 0.5)
		}
	}
	for _, c := range []struct {
		ta, tb bool
		a, b   []float32
		lda    int
		ldb    int
	}{{false, false, a, b, k, n}, {true, false, at, b, m, n}, {false, true, a, bt, k, k}, {true, true, at, bt, m, k}} {
		got := make([]float32, m*n)
		for i := range got {
			got[i] = 1
		}
		Gemm(c.ta, c.tb, m, n, k, 2, c.a, c.lda, c.b, c.ldb, 0.5, got, n)
		for i := range got {
			if math.Abs(float64(got[i]-want[i])) > 1e-4 {
				t.Fatalf("transA %v transB %v: C[%d] = %g, want %g", c.ta, c.tb, i, got[i], want[i])
			}
		}
	}
}

func TestLinearGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tt, in, out := 5, 6, 4
	x, w, r := randn(rng, tt*in), randn(rng, out*in), randn(rng, tt*out)
	y := make([]float32, tt*out)
	loss := func() float64 { Linear(y, x, w, tt, in, out); return dot64(y, r) }
	dx, dw := make([]float32, tt*in), make([]float32, out*in)
	LinearBackward(dx, dw, r, x, w, tt, in, out)
	checkGrad(t, "dx", x, dx, loss)
	checkGrad(t, "dw", w, dw, loss)
}

func TestRMSNormGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	rows, d := 4, 8
	x, w, r := randn(rng, rows*d), randn(rng, d), randn(rng, rows*d)
	y, rstd := make([]float32, rows*d), make([]float32, rows)
	loss := func() float64 { RMSNorm(y, rstd, x, w, rows, d, 1e-5); return dot64(y, r) }
	loss()
	dx, dw := make([]float32, rows*d), make([]float32, d)
	RMSNormBackward(dx, dw, r, x, w, rstd, rows, d)
	checkGrad(t, "dx", x, dx, loss)
	checkGrad(t, "dw", w, dw, loss)
}

func TestRope(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	tt, heads, hd := 5, 2, 8
	pos := []int{0, 1, 2, 3, 7}
	for _, sc := range []struct {
		kind   string
		factor float64
		seq    int
	}{{"", 1, 8}, {"linear", 2, 8}, {"dynamic", 2, 16}} {
		cos, sin := RopeTables(8, hd, 10000, sc.kind, sc.factor, 8, sc.seq)
		x := randn(rng, tt*heads*hd)
		orig := append([]float32(nil), x...)
		Rope(x, pos, heads, hd, cos, sin)
		if pos[0] == 0 && x[0] != orig[0] {
			t.Errorf("%s: position 0 must not rotate", sc.kind)
		}
		RopeBackward(x, pos, heads, hd, cos, sin)
		for i := range x {
			if math.Abs(float64(x[i]-orig[i])) > 1e-5 {
				t.Fatalf("%s: backward is not the inverse rotation at %d", sc.kind, i)
			}
		}
		r := randn(rng, len(x))
		y := make([]float32, len(x))
		loss := func() float64 { copy(y, x); Rope(y, pos, heads, hd, cos, sin); return dot64(y, r) }
		g := append([]float32(nil), r...)
		RopeBackward(g, pos, heads, hd, cos, sin)
		checkGrad(t, sc.kind+" dx", x, g, loss)
	}
	// The rotate-half convention: for position 1, head_dim 2, angle 1 radian.
	cos, sin := RopeTables(2, 2, 10000, "", 1, 2, 2)
	v := []float32{1, 0}
	Rope(v, []int{1}, 1, 2, cos, sin)
	if math.Abs(float64(v[0])-math.Cos(1)) > 1e-6 || math.Abs(float64(v[1])-math.Sin(1)) > 1e-6 {
		t.Errorf("rotation of (1, 0) by 1 rad = %v", v)
	}
}

func TestSwiGLUGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	n := 20
	g, u, r := randn(rng, n), randn(rng, n), randn(rng, n)
	h := make([]float32, n)
	loss := func() float64 { SwiGLU(h, g, u); return dot64(h, r) }
	dg, du := make([]float32, n), make([]float32, n)
	SwiGLUBackward(dg, du, r, g, u)
	checkGrad(t, "dg", g, dg, loss)
	checkGrad(t, "du", u, du, loss)
}

func TestEmbedding(t *testing.T) {
	table := []float32{0, 1, 10, 11, 20, 21}
	out := make([]float32, 6)
	ids := []int32{2, 0, 2}
	Embedding(out, table, ids, 2)
	if out[0] != 20 || out[2] != 0 || out[5] != 21 {
		t.Errorf("embedding %v", out)
	}
	d := make([]float32, 6)
	EmbeddingBackward(d, []float32{1, 1, 2, 2, 3, 3}, ids, 2)
	if d[4] != 4 || d[0] != 2 || d[2] != 0 {
		t.Errorf("embedding backward %v", d)
	}
}

func TestCrossEntropy(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	rows, v := 4, 7
	logits := randn(rng, rows*v)
	targets := []int32{3, IgnoreIndex, 0, 6}
	var want float64
	for r, tg := range targets {
		if tg == IgnoreIndex {
			continue
		}
		var s float64
		for i := 0; i < v; i++ {
			s += math.Exp(float64(logits[r*v+i]))
		}
		want += math.Log(s) - float64(logits[r*v+int(tg)])
	}
	want /= 3
	work := append([]float32(nil), logits...)
	loss, n := CrossEntropy(work, targets, rows, v, 0)
	if n != 3 || math.Abs(loss-want) > 1e-5 {
		t.Fatalf("loss %g over %d, want %g over 3", loss, n, want)
	}
	buf := make([]float32, len(logits))
	lossOf := func() float64 { copy(buf, logits); l, _ := CrossEntropy(buf, targets, rows, v, 0); return l }
	checkGrad(t, "dlogits", logits, work, lossOf)
	for i := v; i < 2*v; i++ {
		if work[i] != 0 {
			t.Fatal("an ignored row has a gradient")
		}
	}
}

// TestAttentionGradients checks the gradients against finite differences
// for two sequences side by side, grouped heads and padding.
func TestAttentionGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	nb, tt, heads, kvHeads, hd := 2, 11, 4, 2, 6
	q, k, v := randn(rng, nb*tt*heads*hd), randn(rng, nb*tt*kvHeads*hd), randn(rng, nb*tt*kvHeads*hd)
	valid := make([]bool, nb*tt)
	for i := range valid {
		valid[i] = i < tt+8 // the second sequence's last three are padding
	}
	for _, valid := range [][]bool{nil, valid} {
		r := randn(rng, nb*tt*heads*hd)
		if valid != nil {
			for i := (tt + 8) * heads * hd; i < len(r); i++ {
				r[i] = 0 // padded queries do not count
			}
		}
		out, probs := make([]float32, nb*tt*heads*hd), make([]float32, nb*heads*tt*tt)
		loss := func() float64 {
			Attention(out, probs, q, k, v, valid, nb, tt, heads, kvHeads, hd)
			return dot64(out, r)
		}
		loss()
		dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
		AttentionBackward(dq, dk, dv, r, probs, q, k, v, nb, tt, heads, kvHeads, hd)
		checkGrad(t, "dq", q, dq, loss)
		checkGrad(t, "dk", k, dk, loss)
		checkGrad(t, "dv", v, dv, loss)
		// Causality: each sequence's first query attends to itself only.
		for h := 0; h < nb*heads; h++ {
			if probs[h*tt*tt] != 1 {
				t.Errorf("sequence %d head %d: first position's weight on itself is %g", h/heads, h%heads, probs[h*tt*tt])
			}
		}
	}
}

// TestGemmCausal checks that the GEMMs of causal attention, which leave
// out products past the diagonal, equal the full GEMM wherever they are
// defined: A zero past (aLower) or before (aUpper) the diagonal, and C
// needed up to it (skipAbove); partial tiles, K past one block, either
// transposition of A, beta 0 and 1, each kernel.
func TestGemmCausal(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	forEachKernel(func(name string) {
		for _, s := range [][2]int{{150, 48}, {400, 40}} {
			m, n := s[0], s[1] // A square m×m, B m×n (or m×m for skipAbove)
			for _, causal := range []causality{skipAbove, aLower, aUpper} {
				for _, ta := range []bool{false, true} {
					for _, beta := range []float32{0, 1} {
						k, nn := m, n
						if causal == skipAbove {
							k, nn = n, m // scores: C m×m from A m×hd, B hd×m
						}
						a := randn(rng, m*k)
						if causal != skipAbove {
							for i := range m {
								for p := range k {
									if (causal == aLower && p > i) || (causal == aUpper && p < i) {
										if ta {
											a[p*m+i] = 0
										} else {
											a[i*k+p] = 0
										}
									}
								}
							}
						}
						lda := k
						if ta {
							lda = m
						}
						b, c0 := randn(rng, k*nn), randn(rng, m*nn)
						want := append([]float32(nil), c0...)
						Gemm(ta, false, m, nn, k, 0.5, a, lda, b, nn, beta, want, nn)
						got := append([]float32(nil), c0...)
						gemmCausal(causal, ta, false, m, nn, k, 0.5, a, lda, b, nn, beta, got, nn)
						for i := range m {
							for j := range nn {
								if causal == skipAbove && j > i {
									continue
								}
								if got[i*nn+j] != want[i*nn+j] {
									t.Fatalf("%s, %d×%d, causal %d, ta %v, beta %v: C[%d,%d] = %g, full GEMM %g", name, m, n, causal, ta, beta, i, j, got[i*nn+j], want[i*nn+j])
								}
							}
						}
					}
				}
			}
		}
	})
}

// forEachKernel runs f with each micro-kernel in use in turn, the portable
// one and those this CPU has, and puts back the one in use.
func forEachKernel(f func(name string)) {
	saved := kernelInfo{"", mr, nr, microKernel, directKernel}
	defer func() { microKernel, directKernel, mr, nr = saved.fn, saved.direct, saved.mr, saved.nr }()
	for _, kern := range append([]kernelInfo{{"go 4x16", 4, 16, kernelGo, nil}}, asmKernels...) {
		microKernel, directKernel, mr, nr = kern.fn, kern.direct, kern.mr, kern.nr
		f(kern.name)
	}
}

func naiveGemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			out[i*n+j] = s
		}
	}
	return out
}

// Full and edge tiles, several K blocks, every transposition, with the
// assembly kernel (where the CPU has one) and the portable one.
func TestGemmShapesAndKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	kernels := append([]kernelInfo{{"go 4x16", 4, 16, kernelGo, nil}, {"go 8x32", 8, 32, kernelGo, nil}}, asmKernels...)
	saved := kernelInfo{"", mr, nr, microKernel, directKernel}
	defer func() { microKernel, directKernel, mr, nr = saved.fn, saved.direct, saved.mr, saved.nr }()
	for _, kern := range kernels {
		name := kern.name
		microKernel, directKernel, mr, nr = kern.fn, kern.direct, kern.mr, kern.nr
		// 300×1100×330: a B too wide for L2 (blocked tile order, a short
		// last block); 100×1100×300: one too wide, stored transposed, packed
		// panel by panel; 37×45×8200: K cut into spans summed at the end.
		for _, s := range [][3]int{{1, 1, 1}, {4, 16, 8}, {37, 50, 300}, {64, 33, 513}, {3, 100, 17}, {300, 1100, 330}, {100, 1100, 300}, {37, 45, 8200}} {
			m, n, k := s[0], s[1], s[2]
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					a, b := randn(rng, m*k), randn(rng, k*n)
					lda, ldb := k, n
					if ta {
						lda = m
					}
					if tb {
						ldb = k
					}
					want := naiveGemm(ta, tb, m, n, k, a, lda, b, ldb)
					c := randn(rng, m*n)
					c0 := append([]float32(nil), c...)
					Gemm(ta, tb, m, n, k, 0.5, a, lda, b, ldb, 2, c, n)
					for i := range c {
						w := 0.5*want[i] + 2*float64(c0[i])
						if math.Abs(float64(c[i])-w) > 1e-4*math.Max(1, math.Abs(w))*math.Sqrt(float64(k)) {
							t.Fatalf("%s kernel, %v ta %v tb %v: C[%d] = %g, want %g", name, s, ta, tb, i, c[i], w)
						}
					}
				}
			}
		}
	}
}

// TestGemmDirectA checks that a kernel reading A in place, and kernels
// storing into C for beta = 0 rather than adding to a cleared C, give the
// packed, cleared path's results bit for bit: for both transpositions, a
// row stride past the matrix's width, partial tiles, K past one packed
// block, a wide B packed a group of panels at a time (100×1100×300), and
// zero columns of B with a negative alpha (a -0 product, which becomes +0
// when added to a cleared C).
func TestGemmDirectA(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	saved := kernelInfo{"", mr, nr, microKernel, directKernel}
	defer func() {
		microKernel, directKernel, mr, nr = saved.fn, saved.direct, saved.mr, saved.nr
		clearC = false
	}()
	kernels := append([]kernelInfo{{"go 4x16", 4, 16, kernelGo, nil}, {"go 8x32", 8, 32, kernelGo, nil}}, asmKernels...)
	for _, kern := range kernels {
		microKernel, mr, nr = kern.fn, kern.mr, kern.nr
		type variant struct {
			direct bool
			clear  bool
		}
		variants := []variant{{false, true}, {false, false}}
		if kern.direct != nil {
			variants = append(variants, variant{true, true}, variant{true, false})
		}
		for _, s := range [][3]int{{8, 32, 1}, {16, 64, 300}, {37, 50, 300}, {64, 33, 513}, {3, 100, 17}, {300, 1100, 260}, {40, 96, 1000}, {100, 1100, 300}} {
			m, n, k := s[0], s[1], s[2]
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					for _, beta := range []float32{0, 1, 2} {
						lda, ldb := k+5, n
						if ta {
							lda = m + 3
						}
						if tb {
							ldb = k
						}
						rows := m
						if ta {
							rows = k
						}
						a, b := randn(rng, rows*lda), randn(rng, k*n)
						for p := range k {
							for _, j := range []int{0, n - 1} {
								if tb {
									b[j*ldb+p] = 0
								} else {
									b[p*ldb+j] = 0
								}
							}
						}
						c0 := randn(rng, m*n)
						var want []float32
						for _, v := range variants {
							directKernel, clearC = nil, v.clear
							if v.direct {
								directKernel = kern.direct
							}
							got := append([]float32(nil), c0...)
							Gemm(ta, tb, m, n, k, -0.75, a, lda, b, ldb, beta, got, n)
							if want == nil {
								want = got
								continue
							}
							for i := range got {
								if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
									t.Fatalf("%s %+v, %v ta %v tb %v beta %v: C[%d] = %g, packed and cleared %g", kern.name, v, s, ta, tb, beta, i, got[i], want[i])
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestGemmTransAGrouped checks that an A stored transposed with rows a page
// or more apart, which gemm packs a group of panels at a time, gives the
// results of the same values stored with rows close together (read in
// place or packed panel by panel) bit for bit: partial panels, K past one
// block, a B too wide for L2, beta 0, 1 and 2, every kernel.
func TestGemmTransAGrouped(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	forEachKernel(func(name string) {
		for _, s := range [][3]int{{8, 32, 1}, {300, 50, 300}, {37, 96, 513}, {1100, 40, 64}, {300, 1100, 260}} {
			m, n, k := s[0], s[1], s[2]
			for _, tb := range []bool{false, true} {
				ldb := n
				if tb {
					ldb = k
				}
				b := randn(rng, k*n)
				ld := 1030 + m // past a page
				near, far := make([]float32, k*(m+3)), make([]float32, k*ld)
				for p := range k {
					for i := range m {
						v := float32(rng.NormFloat64())
						near[p*(m+3)+i], far[p*ld+i] = v, v
					}
				}
				for _, beta := range []float32{0, 1, 2} {
					c0 := randn(rng, m*n)
					want, got := append([]float32(nil), c0...), append([]float32(nil), c0...)
					Gemm(true, tb, m, n, k, -0.75, near, m+3, b, ldb, beta, want, n)
					Gemm(true, tb, m, n, k, -0.75, far, ld, b, ldb, beta, got, n)
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s kernel, %v tb %v beta %v: C[%d] = %g with rows %d apart, %g with %d", name, s, tb, beta, i, got[i], ld, want[i], m+3)
						}
					}
				}
			}
		}
	})
}

// TestGemmThreads checks that Gemm's results do not depend on how many
// workers share it: one (B packed once, in order), two and three (each
// worker packing its own copy of a narrow B and claiming rows of tiles),
// bit for bit, for narrow, wide and lazily packed B, an A stored
// transposed far apart, a K long enough to be cut into spans, partial
// tiles, several K blocks, beta 0 and 1.
func TestGemmThreads(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	rng := rand.New(rand.NewPCG(27, 28))
	for _, s := range []struct {
		m, n, k, lda int
		ta, tb       bool
	}{
		{300, 100, 300, 300, false, true}, {300, 100, 300, 300, false, false}, {300, 100, 600, 300, true, false},
		{101, 77, 33, 33, false, true}, {64, 1100, 300, 300, false, true}, {300, 1100, 260, 260, false, false},
		{200, 50, 40, 1030, true, false}, {37, 45, 8200, 8200, false, false}, {37, 45, 8200, 40, true, true},
	} {
		rows := s.m
		if s.ta {
			rows = s.k
		}
		a, b := randn(rng, rows*s.lda), randn(rng, s.k*s.n)
		ldb := s.n
		if s.tb {
			ldb = s.k
		}
		for _, beta := range []float32{0, 1} {
			c0 := randn(rng, s.m*s.n)
			var want []float32
			for _, procs := range []int{1, 2, 3} {
				runtime.GOMAXPROCS(procs)
				got := append([]float32(nil), c0...)
				Gemm(s.ta, s.tb, s.m, s.n, s.k, 0.5, a, s.lda, b, ldb, beta, got, s.n)
				if want == nil {
					want = got
					continue
				}
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%+v beta %v: C[%d] = %g with %d workers, %g with one", s, beta, i, got[i], procs, want[i])
					}
				}
			}
		}
	}
}

func BenchmarkGemm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	n := 256
	x, w, y := randn(rng, n*n), randn(rng, n*n), make([]float32, n*n)
	b.SetBytes(int64(2 * n * n * n)) // reported MB/s reads as MFLOP/s
	for b.Loop() {
		Gemm(false, true, n, n, n, 1, x, n, w, n, 0, y, n)
	}
}

func BenchmarkGemm1024(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	n := 1024
	x, w, y := randn(rng, n*n), randn(rng, n*n), make([]float32, n*n)
	b.SetBytes(int64(2 * n * n * n))
	for b.Loop() {
		Gemm(false, true, n, n, n, 1, x, n, w, n, 0, y, n)
	}
}

// TestGemmLazyB checks that a wide float B, stored transposed or not,
// packed a group of panels at a time as the tiles reach it (A at most one
// block of panels), gives the results of packing it whole first (A taller
// than a block) bit for bit, on the rows the two share: partial tiles at
// both edges, a short last block, beta 0 and 1.
func TestGemmLazyB(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	forEachKernel(func(name string) {
		n, k := 1100, 600 // packed B 1.1 MB a block: wide; three blocks
		small, tall := mcPanels*mr-3, (mcPanels+5)*mr
		a, b := randn(rng, tall*k), randn(rng, n*k)
		c0 := randn(rng, tall*n)
		for _, trans := range []bool{true, false} {
			ldb := k
			if !trans {
				ldb = n
			}
			for _, beta := range []float32{0, 1} {
				lazy := append([]float32(nil), c0[:small*n]...)
				Gemm(false, trans, small, n, k, 0.5, a, k, b, ldb, beta, lazy, n)
				eager := append([]float32(nil), c0...)
				Gemm(false, trans, tall, n, k, 0.5, a, k, b, ldb, beta, eager, n)
				for i := range lazy {
					if math.Float32bits(lazy[i]) != math.Float32bits(eager[i]) {
						t.Fatalf("%s trans %v beta %v: C[%d] = %g packed lazily, %g packed whole", name, trans, beta, i, lazy[i], eager[i])
					}
				}
			}
		}
	})
}

// TestGemmCompactLazy checks that a compact B, widened and packed a group
// of panels at a time (A at most one block of panels), gives the results
// of the float GEMM on its widened values bit for bit, stored transposed
// (x·Wᵀ, k past one of its deep blocks) and not (dy·W, groups of panels):
// partial tiles at both edges, beta 0 and 1.
func TestGemmCompactLazy(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	forEachKernel(func(name string) {
		for _, s := range []struct {
			trans   bool
			m, n, k int
		}{{true, 13, 70, kcLazy + 1500}, {true, mcPanels*mr - 3, 40, 700}, {false, 13, 1100, 700}, {false, 13, 1088, 300}, {false, 5, 40, 300}} {
			rows, cols := s.n, s.k // W: op(B) = Wᵀ
			if !s.trans {
				rows, cols = s.k, s.n
			}
			w := QuantizeNF4(randn(rng, rows*cols), rows, cols)
			wide := make([]float32, rows*cols)
			for r := range rows {
				w.Widen(wide[r*cols:(r+1)*cols], r, 0)
			}
			a, c0 := randn(rng, s.m*s.k), randn(rng, s.m*s.n)
			for _, beta := range []float32{0, 1} {
				got := append([]float32(nil), c0...)
				gemm(false, dense, false, s.m, s.n, s.k, 0.5, a, s.k, operand{m: w, trans: s.trans}, beta, got, s.n)
				want := append([]float32(nil), c0...)
				Gemm(false, s.trans, s.m, s.n, s.k, 0.5, a, s.k, wide, cols, beta, want, s.n)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s trans %v %dx%dx%d beta %v: C[%d] = %g compact, %g widened", name, s.trans, s.m, s.n, s.k, beta, i, got[i], want[i])
					}
				}
			}
		}
	})
}

// TestBufClass checks the scratch pools' size classes: each holds its
// requests, wastes at most a quarter, grows with n, and a buffer's
// capacity maps back to its own class.
func TestBufClass(t *testing.T) {
	prev := -1
	for _, n := range append(rangeInts(0, 1<<16), 1<<30+1, 1<<40) {
		c, size := bufClass(n)
		if size < n || c < prev || (n > 4 && size > n+n/4) || c >= len(bufPools) {
			t.Fatalf("n %d: class %d of size %d", n, c, size)
		}
		if c2, s2 := bufClass(size); c2 != c || s2 != size {
			t.Fatalf("n %d: class %d of size %d, but size %d is class %d of size %d", n, c, size, size, c2, s2)
		}
		prev = c
	}
}

func rangeInts(lo, hi int) []int {
	out := make([]int, 0, hi-lo)
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}

// Parallel visits every index once, with the same chunks, from one caller,
// from concurrent callers and from inside a chunk (nested), whether the
// pool's workers are awake or asleep.
func TestParallelPool(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	check := func(n int) {
		for _, par := range []func(int, func(int, int)){Parallel, ParallelFine} {
			seen := make([]atomic.Int32, n)
			par(n, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					seen[i].Add(1)
				}
			})
			for i := range seen {
				if c := seen[i].Load(); c != 1 {
					t.Errorf("n=%d: index %d visited %d times", n, i, c)
					return
				}
			}
		}
	}
	for _, n := range []int{0, 1, 2, 3, 5, 64, 1000} {
		check(n)
	}
	time.Sleep(2 * spinFor) // the workers fall asleep
	check(100)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				check(37)
			}
		}()
	}
	wg.Wait()
	var total atomic.Int64
	Parallel(8, func(lo, hi int) {
		for range hi - lo {
			Parallel(10, func(lo, hi int) { total.Add(int64(hi - lo)) })
		}
	})
	if total.Load() != 80 {
		t.Errorf("nested: %d of 80 indices", total.Load())
	}
}

// RMSNorm matches its definition in float64, rows of every length mod 4
// (the four running sums and the tail).
func TestRMSNormValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	for _, d := range []int{1, 3, 4, 7, 288} {
		const rows = 5
		x, w := randn(rng, rows*d), randn(rng, d)
		y, rstd := make([]float32, rows*d), make([]float32, rows)
		RMSNorm(y, rstd, x, w, rows, d, 1e-5)
		for r := range rows {
			var ss float64
			for _, v := range x[r*d : (r+1)*d] {
				ss += float64(v) * float64(v)
			}
			s := 1 / math.Sqrt(ss/float64(d)+1e-5)
			if math.Abs(float64(rstd[r])-s) > 1e-6*s {
				t.Fatalf("d=%d row %d: rstd %v, want %v", d, r, rstd[r], s)
			}
			for i := range d {
				want := float64(x[r*d+i]) * s * float64(w[i])
				if math.Abs(float64(y[r*d+i])-want) > 1e-6*math.Abs(want)+1e-30 {
					t.Fatalf("d=%d row %d value %d: %v, want %v", d, r, i, y[r*d+i], want)
				}
			}
		}
	}
}

func BenchmarkRMSNorm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const rows, d = 256, 288
	x, w := randn(rng, rows*d), randn(rng, d)
	y, rstd := make([]float32, rows*d), make([]float32, rows)
	for b.Loop() {
		RMSNorm(y, rstd, x, w, rows, d, 1e-5)
	}
}

// The dispatched sumSquares agrees with the float64 sum to its rounding,
// and normRow gives the Go loop's bits, at every length around the
// kernels' 16.
func TestNormKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	for n := range 70 {
		x, w := randn(rng, n), randn(rng, n)
		var want float64
		for _, v := range x {
			want += float64(v) * float64(v)
		}
		if got := sumSquares(x); math.Abs(got-want) > 1e-14*want {
			t.Fatalf("sumSquares n=%d: %v, want %v", n, got, want)
		}
		got, ref := make([]float32, n), make([]float32, n)
		normRow(got, x, w, 0.37)
		normRowGo(ref, x, w, 0.37)
		assertSameBits(t, fmt.Sprintf("normRow n=%d", n), got, ref)
	}
}

// The dispatched ropeHeads and addRow give the Go loops' bits, for
// halves and lengths around the kernels' 16 (the masked tail).
func TestRopeAddKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(45, 46))
	for half := 1; half <= 40; half++ {
		const heads = 3
		v, c, s := randn(rng, heads*2*half), randn(rng, half), randn(rng, half)
		for _, dir := range []float32{1, -1} {
			got, want := append([]float32(nil), v...), append([]float32(nil), v...)
			ropeHeads(got, heads, half, c, s, dir)
			ropeHeadsGo(want, heads, half, c, s, dir)
			assertSameBits(t, fmt.Sprintf("ropeHeads half=%d dir=%v", half, dir), got, want)
		}
	}
	for n := range 70 {
		y, x := randn(rng, n), randn(rng, n+3)
		got, want := append([]float32(nil), y...), append([]float32(nil), y...)
		addRow(got, x)
		addRowGo(want, x)
		assertSameBits(t, fmt.Sprintf("addRow n=%d", n), got, want)
	}
}

// Packing a float B row by row gives the same panels with the AVX-512
// dealing of whole panels as with the copy loop, edge panel included.
func TestPackBDealRow(t *testing.T) {
	if dealRow32 == nil || nr != 32 {
		t.Skip("no AVX-512 row dealing on this CPU or with ZHLLAMA_NOASM/NOAVX512")
	}
	rng := rand.New(rand.NewPCG(47, 48))
	for _, n := range []int{1, 31, 32, 33, 70, 288} {
		const kk, p0, ld = 37, 3, 300
		b := operand{f: randn(rng, (p0+kk)*ld), ld: ld}
		np := (n + nr - 1) / nr
		got, want := randn(rng, np*nr*kk), make([]float32, np*nr*kk)
		packB(true, got, b, n, p0, kk)
		deal := dealRow32
		dealRow32 = nil
		packB(true, want, b, n, p0, kk)
		dealRow32 = deal
		assertSameBits(t, fmt.Sprintf("panels of n=%d", n), got, want)
	}
}

// assertSameBits fails t unless got holds want's float32 values bit for
// bit.
func assertSameBits(t testing.TB, name string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: [%d] = %v, want %v", name, i, got[i], want[i])
		}
	}
}
