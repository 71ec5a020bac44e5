package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkQLoRAShapes times a 7B layer's projections through NF4
// weights for a 64-token step: forward (x·Wᵀ) and the input gradient
// (dy·W), as QLoRA runs them; then the same two through the float32 LM
// head.
func BenchmarkQLoRAShapes(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	const t = 64
	for _, s := range [][2]int{{4096, 4096}, {4096, 11008}, {11008, 4096}} {
		in, out := s[0], s[1]
		w := QuantizeNF4(randn(rng, out*in), out, in)
		x, y := randn(rng, t*in), make([]float32, t*out)
		b.Run(fmt.Sprintf("fwd%dx%d", in, out), func(b *testing.B) {
			b.SetBytes(int64(2 * t * in * out))
			for b.Loop() {
				LinearMatrix(y, x, w, t, in, out)
			}
		})
		b.Run(fmt.Sprintf("bwd%dx%d", in, out), func(b *testing.B) {
			b.SetBytes(int64(2 * t * in * out))
			for b.Loop() {
				LinearMatrixBackward(x, y, w, t, in, out)
			}
		})
	}
	in, out := 4096, 32000
	w, x, y := randn(rng, out*in), randn(rng, t*in), make([]float32, t*out)
	b.Run("fwdhead", func(b *testing.B) {
		b.SetBytes(int64(2 * t * in * out))
		for b.Loop() {
			Linear(y, x, w, t, in, out)
		}
	})
	b.Run("bwdhead", func(b *testing.B) {
		b.SetBytes(int64(2 * t * in * out))
		for b.Loop() {
			Gemm(false, false, t, in, out, 1, y, out, w, in, 1, x, in)
		}
	})
}
