package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"zhllama/internal/testenv"
)

func TestDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 100, 288, 4096} {
		a, b := randn(rng, n), randn(rng, n)
		bf := NewBF16(b, 1, n)
		wide := make([]float32, n)
		bf.Widen(wide, 0, 0)
		want, wantBF := dot64(a, b), dot64(a, wide)
		tol := 1e-5 * (1 + math.Sqrt(float64(n)))
		if got := float64(dot(a, b)); math.Abs(got-want) > tol*math.Max(1, math.Abs(want)) {
			t.Errorf("dot n=%d: %g, want %g", n, got, want)
		}
		rows := randn(rng, 4*(n+3))
		var got4 [4]float32
		dot4(a, rows, n+3, &got4)
		for r := range got4 {
			w := dot64(a, rows[r*(n+3):r*(n+3)+n])
			if math.Abs(float64(got4[r])-w) > tol*math.Max(1, math.Abs(w)) {
				t.Errorf("dot4 n=%d row %d: %g, want %g", n, r, got4[r], w)
			}
		}
		// dot8 sums each row as dot4 does, bit for bit: a row's result
		// does not depend on how many rows are decoded with it.
		rows8 := randn(rng, 8*(n+3))
		var got8 [8]float32
		var lo, hi [4]float32
		dot8(a, rows8, n+3, &got8)
		dot4(a, rows8, n+3, &lo)
		dot4(a, rows8[4*(n+3):], n+3, &hi)
		if [8]float32(append(lo[:], hi[:]...)) != got8 {
			t.Errorf("dot8 n=%d: %v, dot4 %v %v", n, got8, lo, hi)
		}
		w3, y3 := randn(rng, 3*n), make([]float32, 3)
		gemv1(y3, a, w3)
		for r, v := range y3 {
			checkDot(t, fmt.Sprintf("gemv1 row %d", r), n, v, a, w3[r*n:(r+1)*n], float64(n/16+8))
		}
		// Many rows (read as four streams where the kernel can) give each
		// row what it gets alone, bit for bit.
		w37, y37 := randn(rng, 37*n), make([]float32, 37)
		gemv1(y37, a, w37)
		for r, v := range y37 {
			var one [1]float32
			gemv1(one[:], a, w37[r*n:(r+1)*n])
			if math.Float32bits(v) != math.Float32bits(one[0]) {
				t.Fatalf("gemv1 n=%d row %d of 37: %g, alone %g", n, r, v, one[0])
			}
		}
		h37 := randF16(rng, 37*n)
		for name, gemv := range map[string]func(y, x []float32, w []uint16){"bf16": gemvBF16, "f16": gemvF16} {
			gemv(y37, a, h37)
			for r, v := range y37 {
				var one [1]float32
				gemv(one[:], a, h37[r*n:(r+1)*n])
				if math.Float32bits(v) != math.Float32bits(one[0]) {
					t.Fatalf("gemv %s n=%d row %d of 37: %g, alone %g", name, n, r, v, one[0])
				}
			}
		}
		// The widening kernels equal the Go loops bit for bit.
		h, wantW := randF16(rng, n), make([]float32, n)
		for name, f := range map[string][2]func([]float32, []uint16){"bf16": {widenBF16, widenBF16Go}, "f16": {widenF16, widenF16Go}} {
			gotW := make([]float32, n)
			f[0](gotW, h)
			f[1](wantW, h)
			for i := range gotW {
				if math.Float32bits(gotW[i]) != math.Float32bits(wantW[i]) {
					t.Fatalf("widen %s n=%d value %d: %v, want %v", name, n, i, gotW[i], wantW[i])
				}
			}
		}
		wb := NewBF16(randn(rng, 3*n), 3, n)
		wh := &F16{Rows: 3, Cols: n, Data: randF16(rng, 3*n)}
		yb, yh := make([]float32, 3), make([]float32, 3)
		gemvBF16(yb, a, wb.Data)
		gemvF16(yh, a, wh.Data)
		for r := range 3 {
			w := make([]float32, n)
			wb.Widen(w, r, 0)
			checkDot(t, fmt.Sprintf("gemvBF16 row %d", r), n, yb[r], a, w, float64(n/16+8))
			wh.Widen(w, r, 0)
			checkDot(t, fmt.Sprintf("gemvF16 row %d", r), n, yh[r], a, w, float64(n/16+8))
		}
		y, yw := randn(rng, n), make([]float32, n)
		for i := range y {
			yw[i] = y[i] + 0.5*a[i]
		}
		axpy(0.5, a, y)
		testenv.AssertClose(t, "axpy", y, yw, 1e-6, 1)
		if got := float64(dotBF16(a, bf.Data)); math.Abs(got-wantBF) > tol*math.Max(1, math.Abs(wantBF)) {
			t.Errorf("dotBF16 n=%d: %g, want %g", n, got, wantBF)
		}
	}
}

// TestWsum checks the weighted sum of strided rows against float64, for
// column counts on and off the kernel's 32-column blocks.
func TestWsum(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{1, 2, 3, 17, 300} {
		for _, cols := range []int{1, 8, 31, 32, 48, 64, 80, 128} {
			ld := cols + 5
			p, v := randn(rng, n), randn(rng, (n-1)*ld+cols)
			got := randn(rng, cols) // overwritten
			wsum(p, v, ld, got)
			for c := range got {
				var want float64
				for j := range p {
					want += float64(p[j]) * float64(v[j*ld+c])
				}
				if math.Abs(float64(got[c])-want) > 1e-5*(1+math.Sqrt(float64(n))) {
					t.Fatalf("n=%d cols=%d column %d: %g, want %g", n, cols, c, got[c], want)
				}
			}
		}
	}
}

// TestLinearMatrix checks the compact-weight paths (GEMV for few rows, the
// widening GEMM for many, and the input gradient) against float32 kernels
// on the same widened values.
func TestLinearMatrix(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	in, out := 300, 70
	w := NewBF16(randn(rng, out*in), out, in)
	wide := make([]float32, out*in)
	for r := 0; r < out; r++ {
		w.Widen(wide[r*in:(r+1)*in], r, 0)
	}
	for _, rows := range []int{1, 3, 5, 8, 9, 40} {
		x := randn(rng, rows*in)
		got, want := make([]float32, rows*out), make([]float32, rows*out)
		LinearMatrix(got, x, w, rows, in, out)
		Gemm(false, true, rows, out, in, 1, x, in, wide, in, 0, want, out)
		testenv.AssertClose(t, "LinearMatrix", got, want, 1e-4, 1)
		Linear(got, x, wide, rows, in, out)
		testenv.AssertClose(t, "Linear", got, want, 1e-4, 1)
		dy := randn(rng, rows*out)
		gdx, wdx := randn(rng, rows*in), make([]float32, rows*in)
		copy(wdx, gdx)
		LinearMatrixBackward(gdx, dy, w, rows, in, out)
		LinearBackward(wdx, nil, dy, x, wide, rows, in, out)
		testenv.AssertClose(t, "LinearMatrixBackward", gdx, wdx, 1e-4, 1)
	}
}

// TestTranspose8 checks the 8×8 transposition GEMM packing uses.
func TestTranspose8(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	src := randn(rng, 8*11)
	got, want := make([]float32, 8*13), make([]float32, 8*13)
	transpose8(src, 11, got, 13)
	transpose8Go(src, 11, want, 13)
	testenv.AssertClose(t, "transpose8", got, want, 0, 1)
	for p := range 8 {
		for j := range 8 {
			if got[p*13+j] != src[j*11+p] {
				t.Fatalf("transpose8: dst[%d][%d] = %v, want src[%d][%d] = %v", p, j, got[p*13+j], j, p, src[j*11+p])
			}
		}
	}
}
