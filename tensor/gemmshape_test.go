package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkGemmShapes times the stories15M step's GEMMs: a trunk
// projection forward and its weight's gradient, and the LM head on one
// chunk of 256 rows (see llama.headRows): forward, and backward for the
// input and the weight.
func BenchmarkGemmShapes(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, s := range []struct {
		m, n, k int
		ta, tb  bool
	}{{2048, 768, 288, false, true}, {768, 288, 2048, true, false}, {256, 32000, 288, false, true}, {256, 288, 32000, false, false}, {32000, 288, 256, true, false}} {
		x, w, y := randn(rng, s.m*s.k), randn(rng, s.k*s.n), make([]float32, s.m*s.n)
		lda, ldb := s.k, s.n
		if s.ta {
			lda = s.m
		}
		if s.tb {
			ldb = s.k
		}
		name := fmt.Sprintf("%dx%dx%d", s.m, s.n, s.k)
		if s.ta {
			name += "_transA"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(2 * s.m * s.n * s.k)) // reported MB/s reads as MFLOP/s
			for b.Loop() {
				Gemm(s.ta, s.tb, s.m, s.n, s.k, 1, x, lda, w, ldb, 0, y, s.n)
			}
		})
	}
}
