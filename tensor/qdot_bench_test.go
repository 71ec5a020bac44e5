package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkLinearMatrixDecode times LinearMatrix on a 768 × 2048 weight
// in each compact format, for one decoding step (t = 1) and a prompt of
// 64 rows; the blocks both in rows and, where the CPU runs its kernel, in
// the sixteen-row layout.
func BenchmarkLinearMatrixDecode(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	in, out := 768, 2048
	w := randn(rng, in*out)
	type matrix struct {
		name string
		m    Matrix
	}
	ms := []matrix{
		{"bf16", NewBF16(w, out, in)},
		{"f16", &F16{Rows: out, Cols: in, Data: randF16(rng, in*out)}},
	}
	for _, q4 := range []bool{false, true} {
		name := "q8_0"
		if q4 {
			name = "q4_0"
		}
		m := NewBlocks(w, out, in, q4)
		if m.x16 {
			rows := &Blocks{Rows: out, Cols: in, Data: make([]byte, len(m.Data)), Q4: q4}
			for r := range out {
				for k := range in / QBlock {
					m.block16(rows.Data[(r*in/QBlock+k)*m.blockBytes():][:m.blockBytes()], r, k)
				}
			}
			ms = append(ms, matrix{name + "_rows", rows})
		}
		ms = append(ms, matrix{name, m})
	}
	for _, t := range []int{1, 64} {
		x, y := randn(rng, t*in), make([]float32, t*out)
		for _, c := range ms {
			b.Run(fmt.Sprintf("%s/t=%d", c.name, t), func(b *testing.B) {
				b.SetBytes(c.m.Bytes())
				for b.Loop() {
					LinearMatrix(y, x, c.m, t, in, out)
				}
			})
		}
	}
}
