package tensor

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"zhllama/internal/half"
	"zhllama/internal/testenv"
)

// The quantizers' rounding, worked by hand as ggml's reference quantizers
// compute it: Q8_0 rounds halves away from zero; Q4_0 truncates x/d+8.5
// and clips at 15.
func TestQuantizersRoundAsGGML(t *testing.T) {
	x := make([]float32, QBlock)
	x[0], x[1], x[2], x[3] = 127, 2.5, -2.5, 0.49
	got := AppendQ8_0(nil, x)
	want := binary.LittleEndian.AppendUint16(nil, half.ToF16(1))
	want = append(want, 127, 3, 0xfd, 0) // 2.5 → 3, −2.5 → −3
	want = append(want, make([]byte, QBlock-4)...)
	if !bytes.Equal(got, want) {
		t.Errorf("Q8_0: % x\nwant % x", got, want)
	}
	// Largest magnitude −8 (so d = 1, the code of x is trunc(x+8.5)): 7.9
	// clips to 15, 0.5 gives code 9, −0.5 code 8 (trunc 8.0), element 16
	// is in the high nibble of byte 0.
	x = make([]float32, QBlock)
	x[0], x[1], x[2], x[3], x[16] = -8, 7.9, 0.5, -0.5, 3
	got = AppendQ4_0(nil, x)
	want = binary.LittleEndian.AppendUint16(nil, half.ToF16(1))
	want = append(want, 0|11<<4, 15|8<<4, 9|8<<4, 8|8<<4)
	for range QBlock/2 - 4 {
		want = append(want, 8|8<<4)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Q4_0: % x\nwant % x", got, want)
	}
	// An all-zero block has scale 0 and codes 0 (Q8_0) or 8 (Q4_0).
	zero := make([]float32, QBlock)
	if b := AppendQ8_0(nil, zero); !bytes.Equal(b, make([]byte, Q8_0BlockBytes)) {
		t.Errorf("Q8_0 of zeros: % x", b)
	}
}

// asDecoded is the input LinearMatrix multiplies Q8_0/Q4_0 weights with
// for t rows of x: x itself where the rows go to the GEMM, and where they
// decode (t ≤ gemvRows) x rounded to Q8_0 blocks, as the format decodes.
func asDecoded(x []float32, t int) []float32 {
	if t > gemvRows {
		return x
	}
	q := make([]float32, len(x))
	DecodeQ8_0(q, AppendQ8_0(nil, x))
	return q
}

// Blocks widen any span of a row as the whole row decodes, and
// LinearMatrix over them matches the float32 kernels on the same values.
func TestBlocksMatrix(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	rows, cols := 5, 96
	w := randn(rng, rows*cols)
	for _, q4 := range []bool{false, true} {
		m := NewBlocks(w, rows, cols, q4)
		full := make([]float32, rows*cols)
		for r := range rows {
			if q4 {
				DecodeQ4_0(full[r*cols:(r+1)*cols], m.Data[r*cols/QBlock*Q4_0BlockBytes:])
			} else {
				DecodeQ8_0(full[r*cols:(r+1)*cols], m.Data[r*cols/QBlock*Q8_0BlockBytes:])
			}
		}
		testenv.AssertClose(t, "decoded", full, w, 0.5, 1) // within a Q4_0 step of max|w|/8
		for _, span := range [][2]int{{0, 96}, {5, 40}, {32, 32}, {31, 2}, {64, 1}} {
			dst := make([]float32, span[1])
			m.Widen(dst, 3, span[0])
			testenv.AssertClose(t, "Widen", dst, full[3*cols+span[0]:3*cols+span[0]+span[1]], 0, 1)
		}
		for _, n := range []int{2, 20} {
			x := randn(rng, n*cols)
			got, want := make([]float32, n*rows), make([]float32, n*rows)
			LinearMatrix(got, x, m, n, cols, rows)
			Gemm(false, true, n, rows, cols, 1, asDecoded(x, n), cols, full, cols, 0, want, rows)
			testenv.AssertClose(t, "LinearMatrix", got, want, 1e-4, 1)
		}
	}
	f := &F16{Rows: 1, Cols: 3, Data: []uint16{half.ToF16(1.5), half.ToF16(-2), half.ToF16(0.25)}}
	dst := make([]float32, 2)
	f.Widen(dst, 0, 1)
	testenv.AssertClose(t, "F16", dst, []float32{-2, 0.25}, 0, 1)
}
