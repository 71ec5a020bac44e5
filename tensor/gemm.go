package tensor

// Gemm computes C = alpha * op(A) * op(B) + beta * C, where op transposes
// when asked; op(A) is M×K, op(B) is K×N and C is M×N with leading
// dimension ldc. This is the portable Go version; rows of C are split
// among the workers.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	Parallel(m, func(lo, hi int) {
		row := make([]float32, n)
		for i := lo; i < hi; i++ {
			clear(row)
			for p := 0; p < k; p++ {
				var av float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if av == 0 {
					continue
				}
				if transB {
					for j := 0; j < n; j++ {
						row[j] += av * b[j*ldb+p]
					}
				} else {
					br := b[p*ldb : p*ldb+n]
					for j, bv := range br {
						row[j] += av * bv
					}
				}
			}
			cr := c[i*ldc : i*ldc+n]
			if beta == 0 {
				for j := range cr {
					cr[j] = alpha * row[j]
				}
			} else {
				for j := range cr {
					cr[j] = alpha*row[j] + beta*cr[j]
				}
			}
		}
	})
}

// Linear computes y[T×out] = x[T×in] · Wᵀ for W[out×in], as nn.Linear does.
func Linear(y, x, w []float32, t, in, out int) {
	Gemm(false, true, t, out, in, 1, x, in, w, in, 0, y, out)
}

// LinearBackward adds to dx (if not nil) dy·W and to dw dyᵀ·x.
func LinearBackward(dx, dw, dy, x, w []float32, t, in, out int) {
	if dx != nil {
		Gemm(false, false, t, in, out, 1, dy, out, w, in, 1, dx, in)
	}
	if dw != nil {
		Gemm(true, false, out, in, t, 1, dy, out, x, in, 1, dw, in)
	}
}
