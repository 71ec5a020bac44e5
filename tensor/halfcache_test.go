package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"zhllama/internal/half"
	"zhllama/internal/testenv"
)

// The float16 cache's kernels, as dispatched and in Go, against float64
// sums over the widened values: eight-key dots and weighted sums of any
// head size (tails below 8 and 32 included).
func TestHalfCacheKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	type kernels struct {
		dot8 func([]float32, []uint16, int, *[8]float32)
		wsum func([]float32, []uint16, int, []float32)
	}
	for name, k := range map[string]kernels{"dispatched": {dot8F16, wsumF16}, "Go": {dot8F16Go, wsumF16Go}} {
		for _, hd := range []int{5, 8, 20, 48, 64, 72} {
			const ld = 3 * 80 // a row stride beyond the head
			x := randF16(rng, 13*ld)
			xw := make([]float32, len(x))
			widenF16Go(xw, x)
			q := randn(rng, hd)
			var out [8]float32
			k.dot8(q, x, ld, &out)
			for r := range out {
				checkDot(t, fmt.Sprintf("%s dot8F16 hd=%d row %d", name, hd, r), hd, out[r], q, xw[r*ld:r*ld+hd], float64(hd+8))
			}
			for _, n := range []int{1, 2, 3, 8, 13} {
				p := randn(rng, n)
				got := make([]float32, hd)
				k.wsum(p, x, ld, got)
				for c := range got {
					col := make([]float32, n)
					for j := range n {
						col[j] = xw[j*ld+c]
					}
					checkDot(t, fmt.Sprintf("%s wsumF16 hd=%d n=%d column %d", name, hd, n, c), n, got[c], p, col, float64(n+8))
				}
			}
		}
	}
}

// NarrowF16, as dispatched, rounds as half.ToF16 does, bit for bit: halves
// to even, overflow to infinity, subnormals, signed zeros.
func TestNarrowF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	edge := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 65504, 65519, 65520, -65520, 1e9, float32(math.Inf(1)),
		0x1p-14, 0x1p-24, 0x1p-25, 0x1.8p-24, 0x1p-26, 1 + 0x1p-11, 1 + 0x3p-11, -(1 + 0x1p-11), 0x1.ffep-15}
	for _, n := range []int{3, 8, 21, 64} {
		src := randn(rng, n)
		for i := range src {
			src[i] *= float32(math.Exp2(float64(rng.IntN(40) - 25)))
		}
		copy(src, edge)
		dst := make([]uint16, n)
		NarrowF16(dst, src)
		for i, v := range src {
			if want := half.ToF16(v); dst[i] != want {
				t.Errorf("n=%d: %g (%#08x) narrowed to %#04x, want %#04x", n, v, math.Float32bits(v), dst[i], want)
			}
		}
	}
}

// Attention over a float16 cache is attention over a float32 cache of the
// same rounded values, for decoding steps and prompts (from the first
// position or not, past promptBlock), in both layouts; a prompt's, bit for
// bit.
func TestCachedAttentionHalf(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	heads, kvHeads, hd := 4, 2, 24
	// One worker takes all the heads in one task; three split them.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct{ start, n, procs int }{{0, 1, 1}, {13, 1, 3}, {6, 3, 3}, {4, promptRows + 3, 3},
		{0, promptRows + 9, 1}, {0, promptRows + 9, 3}, {2, promptBlock + 5, 3}} {
		runtime.GOMAXPROCS(c.procs)
		total := c.start + c.n
		q := randn(rng, c.n*heads*hd)
		// Values of attention's scale: random bits (up to 65504) would
		// make softmax turn on the last bits of the scores.
		k16, v16 := make([]uint16, total*kvHeads*hd), make([]uint16, total*kvHeads*hd)
		NarrowF16(k16, randn(rng, len(k16)))
		NarrowF16(v16, randn(rng, len(v16)))
		k, v := make([]float32, len(k16)), make([]float32, len(v16))
		widenF16Go(k, k16)
		widenF16Go(v, v16)
		// Each query alone, a decoding step (float32), for the reference.
		want := make([]float32, len(q))
		attendOneByOne(want, q, k, v, c.start, c.n, heads, kvHeads, hd)
		got := make([]float32, len(q))
		CachedAttentionSeqs([]CachedSeq{{Out: got, Q: q, Keys16: k16, Vals16: v16, Start: c.start, N: c.n}}, heads, kvHeads, hd)
		testenv.AssertClose(t, fmt.Sprintf("interleaved, start %d, %d queries", c.start, c.n), got, want, 1e-5, 1)
		// Head by head, each head's run longer than its positions.
		room := total + 5
		hk, hv := make([]uint16, kvHeads*room*hd), make([]uint16, kvHeads*room*hd)
		for j := range total {
			for h := range kvHeads {
				copy(hk[h*room*hd+j*hd:][:hd], k16[(j*kvHeads+h)*hd:])
				copy(hv[h*room*hd+j*hd:][:hd], v16[(j*kvHeads+h)*hd:])
			}
		}
		clear(got)
		CachedAttentionSeqs([]CachedSeq{{Out: got, Q: q, Keys16: hk, Vals16: hv, Start: c.start, N: c.n, Stride: room * hd}}, heads, kvHeads, hd)
		testenv.AssertClose(t, fmt.Sprintf("head by head, start %d, %d queries", c.start, c.n), got, want, 1e-5, 1)
		if c.n >= promptRows {
			wide := make([]float32, len(q))
			CachedAttentionSeqs([]CachedSeq{{Out: wide, Q: q, Keys: k, Vals: v, Start: c.start, N: c.n}}, heads, kvHeads, hd)
			assertSameBits(t, fmt.Sprintf("prompt, start %d, %d queries", c.start, c.n), got, wide)
		}
	}
}
