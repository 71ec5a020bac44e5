package tensor

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkLinearMatrixDecode times one decoding step's GEMV (t = 1)
// on a 768 × 2048 weight in each compact format.
func BenchmarkLinearMatrixDecode(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	in, out := 768, 2048
	w := randn(rng, in*out)
	x, y := randn(rng, in), make([]float32, out)
	for _, c := range []struct {
		name string
		m    Matrix
	}{
		{"bf16", NewBF16(w, out, in)},
		{"f16", &F16{Rows: out, Cols: in, Data: randF16(rng, in*out)}},
		{"q8_0", NewBlocks(w, out, in, false)},
		{"q4_0", NewBlocks(w, out, in, true)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(c.m.Bytes())
			for b.Loop() {
				LinearMatrix(y, x, c.m, 1, in, out)
			}
		})
	}
}
