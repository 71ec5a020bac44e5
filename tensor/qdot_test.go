package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"zhllama/internal/half"
	"zhllama/internal/testenv"
)

// randF16 draws n finite half floats of every exponent, subnormals
// included.
func randF16(rng *rand.Rand, n int) []uint16 {
	h := make([]uint16, n)
	for i := range h {
		for {
			h[i] = uint16(rng.Uint32())
			if h[i]&0x7c00 != 0x7c00 {
				break
			}
		}
	}
	return h
}

// randBlocks draws nb raw ggml blocks: any code byte, and a scale of
// either sign over a wide range (zero included).
func randBlocks(rng *rand.Rand, nb, bb int) []byte {
	b := make([]byte, nb*bb)
	for k := 0; k < nb; k++ {
		blk := b[k*bb : (k+1)*bb]
		d := float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(20)-14)))
		if rng.IntN(16) == 0 {
			d = 0
		}
		binary.LittleEndian.PutUint16(blk, half.ToF16(d))
		for j := 2; j < bb; j++ {
			blk[j] = byte(rng.Uint32())
		}
	}
	return b
}

// dotRef is Σ a[i]·w[i] in float64 and Σ|a[i]·w[i]|, the scale of the
// rounding error of any float32 summation order.
func dotRef(a, w []float32) (s, abs float64) {
	for i := range a {
		p := float64(a[i]) * float64(w[i])
		s += p
		abs += math.Abs(p)
	}
	return s, abs
}

// checkDot fails unless got is within ulps float32 roundings of the
// exact dot product, relative to Σ|a·w|.
func checkDot(t *testing.T, name string, n int, got float32, a, w []float32, ulps float64) {
	t.Helper()
	want, abs := dotRef(a, w)
	if err := math.Abs(float64(got) - want); err > ulps*0x1p-24*abs {
		t.Errorf("%s n=%d: %g, want %g (error %.3g·Σ|a·w|, bound %g ulps)", name, n, got, want, err/abs, ulps)
	}
}

// TestHalfBlockDots checks dotF16, dotQ8_0 and dotQ4_0, as dispatched
// (assembly or Go), against Widen, the Go dequantizer that defines the
// formats. The bound n+8 float32 roundings covers any summation order,
// the Go fallbacks' sequential sums included.
func TestHalfBlockDots(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 100, 288, 4096} {
		a := randn(rng, n)
		f := &F16{Rows: 1, Cols: n, Data: randF16(rng, n)}
		w := make([]float32, n)
		f.Widen(w, 0, 0)
		checkDot(t, "dotF16", n, dotF16(a, f.Data), a, w, float64(n+8))
	}
	for _, nb := range []int{0, 1, 2, 3, 9, 128} {
		n := nb * QBlock
		a := randn(rng, n)
		for _, q4 := range []bool{false, true} {
			bb, name, dotB := Q8_0BlockBytes, "dotQ8_0", dotQ8_0
			if q4 {
				bb, name, dotB = Q4_0BlockBytes, "dotQ4_0", dotQ4_0
			}
			m := &Blocks{Rows: 1, Cols: n, Data: randBlocks(rng, nb, bb), Q4: q4}
			w := make([]float32, n)
			m.Widen(w, 0, 0)
			checkDot(t, name, n, dotB(a, m.Data), a, w, float64(n+8))
		}
	}
}

// TestLinearMatrixHalfBlocks checks LinearMatrix on F16, Q8_0 and Q4_0
// weights, GEMV and GEMM paths, against Linear on the widened weights
// (and, for the blocks' GEMV, the input rounded to Q8_0).
func TestLinearMatrixHalfBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	out := 70
	for _, c := range []struct {
		name string
		in   int
		m    func(w []float32, in int) Matrix
	}{
		{"F16", 300, func(w []float32, in int) Matrix {
			m := &F16{Rows: out, Cols: in, Data: make([]uint16, len(w))}
			for i, v := range w {
				m.Data[i] = half.ToF16(v)
			}
			return m
		}},
		{"Q8_0", 288, func(w []float32, in int) Matrix { return NewBlocks(w, out, in, false) }},
		{"Q4_0", 288, func(w []float32, in int) Matrix { return NewBlocks(w, out, in, true) }},
	} {
		in := c.in
		m := c.m(randn(rng, out*in), in)
		wide := make([]float32, out*in)
		for r := 0; r < out; r++ {
			m.Widen(wide[r*in:(r+1)*in], r, 0)
		}
		for _, rows := range []int{1, 3, 8, 9} {
			x := randn(rng, rows*in)
			got, want := make([]float32, rows*out), make([]float32, rows*out)
			LinearMatrix(got, x, m, rows, in, out)
			if _, ok := m.(*Blocks); ok {
				Linear(want, asDecoded(x, rows), wide, rows, in, out)
			} else {
				Linear(want, x, wide, rows, in, out)
			}
			testenv.AssertClose(t, "LinearMatrix "+c.name, got, want, 1e-4, 1)
		}
	}
}

// TestGemvQ8 checks the quantized-input kernels, as dispatched and in Go,
// against float64 sums over the decoded weights and the decoded input:
// raw weight blocks with any code (Q8_0's −128 too) and scale, inputs
// with zero blocks and wide ranges. Each block's integer sum is exact, so
// the only error is the float32 scaling and summing of nb block terms.
func TestGemvQ8(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for _, nb := range []int{1, 2, 3, 4, 9, 24} {
		n := nb * QBlock
		x := randn(rng, n)
		for j := range x[:QBlock] {
			x[j] *= 1e4 // a wide block
		}
		if nb > 2 {
			clear(x[QBlock : 2*QBlock]) // a zero block
		}
		qs, ds := make([]int8, n), make([]float32, nb)
		quantizeQ8(qs, ds, x)
		xw := make([]float32, n)
		DecodeQ8_0(xw, AppendQ8_0(nil, x))
		for b, d := range ds {
			for j := range QBlock {
				if got := d * float32(qs[b*QBlock+j]); got != xw[b*QBlock+j] {
					t.Fatalf("quantizeQ8 nb=%d value %d: %g, AppendQ8_0 decodes %g", nb, b*QBlock+j, got, xw[b*QBlock+j])
				}
			}
		}
		for _, q4 := range []bool{false, true} {
			bb := Q8_0BlockBytes
			if q4 {
				bb = Q4_0BlockBytes
			}
			const rows = 5
			m := &Blocks{Rows: rows, Cols: n, Data: randBlocks(rng, rows*nb, bb), Q4: q4}
			for name, f := range map[string]func([]float32, []int8, []float32, []int32, []byte, bool){"dispatched": gemvQ8, "Go": gemvQ8Go} {
				y := make([]float32, rows)
				xq, bias := qs, []int32(nil)
				if q4 && q4Prep != nil && name == "dispatched" {
					xq, bias = q4Prep(qs) // as gemvBlocks does
				}
				f(y, xq, ds, bias, m.Data, q4)
				for r := range rows {
					w := make([]float32, n)
					m.Widen(w, r, 0)
					checkDot(t, fmt.Sprintf("gemvQ8 %s q4=%v row %d", name, q4, r), n, y[r], xw, w, float64(nb+8))
				}
			}
		}
	}
}

// TestDecodeBlocks checks the dispatched block decoders against the Go
// ones that define the formats, bit for bit, on raw blocks of any code and
// scale.
func TestDecodeBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, nb := range []int{1, 2, 7} {
		for _, q4 := range []bool{false, true} {
			bb, got, want := Q8_0BlockBytes, decodeQ8_0, DecodeQ8_0
			if q4 {
				bb, got, want = Q4_0BlockBytes, decodeQ4_0, DecodeQ4_0
			}
			b := randBlocks(rng, nb, bb)
			g, w := make([]float32, nb*QBlock), make([]float32, nb*QBlock)
			got(g, b)
			want(w, b)
			for i := range g {
				if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
					t.Fatalf("q4=%v nb=%d value %d: %v, want %v", q4, nb, i, g[i], w[i])
				}
			}
		}
	}
}
