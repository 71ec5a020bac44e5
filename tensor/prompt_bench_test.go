package tensor

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkPromptLayer times the projections of one stories15M layer
// (Q/K/V and gate/up sharing their input, as the model calls them) for
// a 256-token prompt in Q8_0: the quantized prompt path end to end,
// hand-offs to the workers included.
func BenchmarkPromptLayer(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const t, h, f = 256, 288, 768
	mk := func(out, in int) Matrix { return NewBlocks(randn(rng, out*in), out, in, false) }
	qkv := []Matrix{mk(h, h), mk(h, h), mk(h, h)}
	o := mk(h, h)
	gu := []Matrix{mk(f, h), mk(f, h)}
	down := mk(h, f)
	x, xf := randn(rng, t*h), randn(rng, t*f)
	ys := [][]float32{make([]float32, t*h), make([]float32, t*h), make([]float32, t*h)}
	yf := [][]float32{make([]float32, t*f), make([]float32, t*f)}
	for b.Loop() {
		LinearMatrices(ys, x, qkv, t, h, []int{h, h, h})
		LinearMatrix(ys[0], x, o, t, h, h)
		LinearMatrices(yf, x, gu, t, h, []int{f, f})
		LinearMatrix(ys[0], xf, down, t, f, h)
	}
	b.ReportMetric(float64(b.N)*t/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkPromptAttention times one stories15M layer's attention over a
// 256-token prompt from the first position (6 heads of 48), the cache
// head by head in float32 and in float16.
func BenchmarkPromptAttention(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, heads, hd = 256, 6, 48
	q, out := randn(rng, n*heads*hd), make([]float32, n*heads*hd)
	k, v := randn(rng, n*heads*hd), randn(rng, n*heads*hd)
	k16, v16 := make([]uint16, len(k)), make([]uint16, len(v))
	NarrowF16(k16, k)
	NarrowF16(v16, v)
	for _, c := range []struct {
		name string
		s    CachedSeq
	}{
		{"f32", CachedSeq{Out: out, Q: q, Keys: k, Vals: v, N: n, Stride: n * hd}},
		{"f16", CachedSeq{Out: out, Q: q, Keys16: k16, Vals16: v16, N: n, Stride: n * hd}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				CachedAttentionSeqs([]CachedSeq{c.s}, heads, heads, hd)
			}
		})
	}
}
