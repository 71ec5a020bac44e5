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
	for _, t := range []int{1, 64, 256} {
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

// BenchmarkX16Kernels times the quantized kernels alone on one group pair
// of a 768-wide Q8_0 weight (24 blocks) with the data in cache: the
// sixteen-row VNNI kernel over 8 input rows and, where the CPU has it, the
// AMX kernel over 32; each worker (-cpu) runs its own calls. GMAC/s
// counts multiply-adds.
func BenchmarkX16Kernels(b *testing.B) {
	if x16Kernel == nil {
		b.Skip("no sixteen-row kernel on this CPU (AVX-512 VNNI) or with ZHLLAMA_NOASM/NOAVX512")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const nb = 24
	in, bb := nb*QBlock, Q8_0BlockBytes
	gb := nb * groupRows * bb
	_, m := sixteenRows(randBlocks(rng, 2*groupRows*nb, bb), 2*groupRows, in, false)
	x := randn(rng, amxRows*in)
	run := func(name string, macs int, call func(y []float32, sc *amxScratch)) {
		b.Run(name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				y, sc := make([]float32, amxRows*2*groupRows), new(amxScratch)
				for pb.Next() {
					call(y, sc)
				}
			})
			b.ReportMetric(float64(b.N)*float64(macs)/b.Elapsed().Seconds()/1e9, "GMAC/s")
		})
	}
	q8, xs8 := make([]int8, x16Tile*in), make([]x16Scale, x16Tile*nb)
	quantizeTile(q8, xs8, x, x16Tile, in, -128)
	run("vnni", x16Tile*groupRows*in, func(y []float32, _ *amxScratch) {
		x16Kernel(false, nb, x16Tile, q8, xs8, m.Data[:gb], y, groupRows)
	})
	if amxKernel == nil {
		return
	}
	q, xs := make([]int8, amxRows*in), make([]x16Scale, amxRows*nb)
	quantizeTile(q, xs, x, amxRows, in, -128)
	ws := make([]byte, 2*nb*amxBlockBytes)
	amxSign(false, nb, m.Data[:gb], ws[:nb*amxBlockBytes])
	amxSign(false, nb, m.Data[gb:], ws[nb*amxBlockBytes:])
	run("amx", amxRows*2*groupRows*in, func(y []float32, sc *amxScratch) {
		amxKernel(nb, 1, q, xs, ws, y, 2*groupRows, sc)
	})
}
