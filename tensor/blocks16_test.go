package tensor

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"zhllama/internal/testenv"
)

// sixteenRows is BlocksFor's layout whatever the CPU: raw blocks of rows
// rows wrapped natively and interleaved.
func sixteenRows(data []byte, rows, cols int, q4 bool) (native, x16 *Blocks) {
	native = &Blocks{Rows: rows, Cols: cols, Data: data, Q4: q4}
	x16 = &Blocks{Rows: rows, Cols: cols, Data: make([]byte, len(data)), Q4: q4, x16: true}
	interleave16(x16.Data, data, rows, cols/QBlock, native.blockBytes())
	return native, x16
}

// The sixteen-row layout holds the same blocks: every row widens as it
// does natively, bit for bit, and gathers back to the same bytes.
func TestSixteenRowLayout(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, q4 := range []bool{false, true} {
		const rows, nb = 32, 5
		native, x16 := sixteenRows(randBlocks(rng, rows*nb, (&Blocks{Q4: q4}).blockBytes()), rows, nb*QBlock, q4)
		bb := native.blockBytes()
		blk := make([]byte, bb)
		for r := range rows {
			for b := range nb {
				x16.block16(blk, r, b)
				if want := native.Data[(r*nb+b)*bb:][:bb]; !bytes.Equal(blk, want) {
					t.Fatalf("q4=%v row %d block %d gathers % x, want % x", q4, r, b, blk, want)
				}
			}
			for _, span := range [][2]int{{0, nb * QBlock}, {5, 40}, {32, 32}, {31, 2}, {64, 1}} {
				got, want := make([]float32, span[1]), make([]float32, span[1])
				x16.Widen(got, r, span[0])
				native.Widen(want, r, span[0])
				testenv.AssertClose(t, "Widen", got, want, 0, 1)
			}
		}
	}
}

// TestX16Kernels checks the sixteen-row kernels, as dispatched and in Go,
// against float64 sums over the decoded weights and the decoded input
// codes: raw weight blocks of any code (Q8_0's −128 too) and scale, input
// rows with a wide block and a zero block, tiles of 1, 2, 4 and 8 rows.
// Each block's integer sum is exact; the error is the float32 scaling
// and summing of nb block terms.
func TestX16Kernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	kernels := map[string]func(bool, int, int, []int8, []x16Scale, []byte, []float32, int){"Go": x16Go}
	if x16Kernel != nil {
		kernels["dispatched"] = x16Kernel
	}
	for _, nb := range []int{1, 2, 3, 9, 24} {
		in := nb * QBlock
		for _, q4 := range []bool{false, true} {
			offset := int32(-128)
			if q4 {
				offset = -8
			}
			native, x16 := sixteenRows(randBlocks(rng, groupRows*nb, (&Blocks{Q4: q4}).blockBytes()), groupRows, in, q4)
			w := make([]float32, groupRows*in)
			for r := range groupRows {
				native.Widen(w[r*in:(r+1)*in], r, 0)
			}
			for _, n := range []int{1, 2, 4, 8} {
				x := randn(rng, n*in)
				for j := range QBlock {
					x[j] *= 1e4 // a wide block
				}
				if nb > 2 {
					clear(x[(n-1)*in+QBlock : (n-1)*in+2*QBlock]) // a zero block, in the last row
				}
				q, xs := make([]int8, n*in), make([]x16Scale, n*nb)
				quantizeTile(q, xs, x, n, in, offset)
				xw := make([]float32, n*in) // the input as its codes say
				for i := range n {
					for b := range nb {
						for j := range QBlock {
							xw[i*in+b*QBlock+j] = xs[b*n+i].d * float32(q[(b*n+i)*QBlock+j])
						}
					}
				}
				const ldy = 21
				for name, kern := range kernels {
					y := make([]float32, (n-1)*ldy+groupRows)
					kern(q4, nb, n, q, xs, x16.Data, y, ldy)
					for i := range n {
						for l := range groupRows {
							checkDot(t, fmt.Sprintf("%s q4=%v t=%d row %d lane %d", name, q4, n, i, l), in, y[i*ldy+l], xw[i*in:(i+1)*in], w[l*in:(l+1)*in], float64(nb+8))
						}
					}
				}
			}
		}
	}
}

// The four-group kernel gives each group's outputs bit for bit as the
// one-group kernel does.
func TestX16FourGroups(t *testing.T) {
	if x16Kernel4 == nil {
		t.Skip("no sixteen-row kernel on this CPU (AVX-512 VNNI) or with ZHLLAMA_NOASM/NOAVX512")
	}
	rng := rand.New(rand.NewPCG(29, 30))
	for _, nb := range []int{1, 5, 24} {
		for _, q4 := range []bool{false, true} {
			in := nb * QBlock
			_, m := sixteenRows(randBlocks(rng, 4*groupRows*nb, (&Blocks{Q4: q4}).blockBytes()), 4*groupRows, in, q4)
			q, xs := make([]int8, in), make([]x16Scale, nb)
			quantizeTile(q, xs, randn(rng, in), 1, in, -8)
			got, want := make([]float32, 4*groupRows), make([]float32, 4*groupRows)
			x16Kernel4(q4, nb, q, xs, m.Data, got)
			gb := len(m.Data) / 4
			for g := range 4 {
				x16Kernel(q4, nb, 1, q, xs, m.Data[g*gb:(g+1)*gb], want[g*groupRows:], groupRows)
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("nb=%d q4=%v: output %d is %g, one group at a time %g", nb, q4, i, got[i], want[i])
				}
			}
		}
	}
}

// The input codes and offsets quantizeTile lays out are quantizeQ8's.
func TestQuantizeTile(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	const n, nb = 3, 4
	in := nb * QBlock
	x := randn(rng, n*in)
	q, xs := make([]int8, n*in), make([]x16Scale, n*nb)
	quantizeTile(q, xs, x, n, in, -8)
	for i := range n {
		qs, ds := make([]int8, in), make([]float32, nb)
		quantizeQ8(qs, ds, x[i*in:(i+1)*in])
		for b := range nb {
			c := q[(b*n+i)*QBlock:][:QBlock]
			if !bytes.Equal(i8bytes(c), i8bytes(qs[b*QBlock:(b+1)*QBlock])) || xs[b*n+i].d != ds[b] || xs[b*n+i].bias != -8*codeSum(c) {
				t.Fatalf("row %d block %d: codes %v scale %g offset %d; quantizeQ8 %v %g", i, b, c, xs[b*n+i].d, xs[b*n+i].bias, qs[b*QBlock:(b+1)*QBlock], ds[b])
			}
		}
	}
}

func i8bytes(c []int8) []byte {
	b := make([]byte, len(c))
	for i, v := range c {
		b[i] = byte(v)
	}
	return b
}

// LinearMatrix over sixteen-row blocks matches Linear on the widened
// weights with the input rounded to Q8_0, for any number of input rows
// (tiles of 8, 4, 2 and 1, and spans past x16Span).
func TestLinearMatrixSixteenRows(t *testing.T) {
	if x16Kernel == nil {
		t.Skip("no sixteen-row kernel on this CPU (AVX-512 VNNI) or with ZHLLAMA_NOASM/NOAVX512")
	}
	rng := rand.New(rand.NewPCG(27, 28))
	const out, in = 112, 96 // seven groups: four at once, then three singly
	for _, q4 := range []bool{false, true} {
		m := NewBlocks(randn(rng, out*in), out, in, q4)
		if !m.x16 {
			t.Fatal("NewBlocks did not take the sixteen-row layout where the kernel runs")
		}
		wide := make([]float32, out*in)
		for r := range out {
			m.Widen(wide[r*in:(r+1)*in], r, 0)
		}
		for _, rows := range []int{1, 3, 8, 15, 70} {
			x := randn(rng, rows*in)
			xq := make([]float32, len(x))
			DecodeQ8_0(xq, AppendQ8_0(nil, x))
			got, want := make([]float32, rows*out), make([]float32, rows*out)
			LinearMatrix(got, x, m, rows, in, out)
			Linear(want, xq, wide, rows, in, out)
			testenv.AssertClose(t, fmt.Sprintf("LinearMatrix q4=%v t=%d", q4, rows), got, want, 1e-4, 1)
		}
	}
}

func TestX16Tiles(t *testing.T) {
	for _, c := range []struct {
		t    int
		want string
	}{{1, "[[0 1]]"}, {3, "[[0 2] [2 1]]"}, {8, "[[0 8]]"}, {15, "[[0 8] [8 4] [12 2] [14 1]]"}, {17, "[[0 8] [8 8] [16 1]]"}} {
		if got := fmt.Sprint(x16Tiles(c.t)); got != c.want {
			t.Errorf("x16Tiles(%d) = %s, want %s", c.t, got, c.want)
		}
	}
}

// quantizeRow, as dispatched, rounds as the Go code that defines it, bit
// for bit: halves away from zero, a zero block, scales past float16's
// range and below its normal range, any sign.
func TestQuantizeRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(29, 30))
	const nb, n = 9, 3
	x := randn(rng, nb*QBlock)
	halves := []float32{127, 2.5, -2.5, 0.5, -0.5, 126.5, -126.5, 0.49999997, -1.5, 3.5}
	copy(x, halves) // d = 1: the products are the values
	clear(x[QBlock : 2*QBlock])
	for j, s := range []float32{1e9, 1e-30, 3e-6, 65504 * 127, -7} {
		for k := range QBlock {
			x[(2+j)*QBlock+k] *= s
		}
	}
	for _, off := range []int32{-8, -128} {
		q, xs := make([]int8, nb*n*QBlock), make([]x16Scale, nb*n)
		wq, wxs := make([]int8, nb*n*QBlock), make([]x16Scale, nb*n)
		quantizeRow(q[QBlock:], xs[1:], x, n, off)
		quantizeRowGo(wq[QBlock:], wxs[1:], x, n, off)
		if !bytes.Equal(i8bytes(q), i8bytes(wq)) {
			t.Fatalf("offset %d: codes\n%v\nwant\n%v", off, q, wq)
		}
		for b := range xs {
			if xs[b] != wxs[b] {
				t.Fatalf("offset %d: block %d scale %v, want %v", off, b, xs[b], wxs[b])
			}
		}
	}
}

// The AMX kernel gives the sixteen-row kernel's results bit for bit:
// tiles of 32 input rows against two groups, every code and scale (a
// wide block, a zero block), K from one block to past a span.
func TestAMXKernel(t *testing.T) {
	if amxKernel == nil {
		t.Skip("no AMX on this CPU or OS (AMX-TILE, AMX-INT8, Linux's tile permission) or with ZHLLAMA_NOAMX/NOASM/NOAVX512")
	}
	rng := rand.New(rand.NewPCG(31, 32))
	const nt = 3
	for _, nb := range []int{1, 2, 3, 9, 24, 131} {
		in := nb * QBlock
		for _, q4 := range []bool{false, true} {
			offset := int32(-128)
			if q4 {
				offset = -8
			}
			bb := (&Blocks{Q4: q4}).blockBytes()
			_, m := sixteenRows(randBlocks(rng, 2*groupRows*nb, bb), 2*groupRows, in, q4)
			gb := nb * groupRows * bb
			x := randn(rng, nt*amxRows*in)
			for j := range QBlock {
				x[3*in+j] *= 1e4 // a wide block
			}
			if nb > 2 {
				clear(x[30*in+QBlock : 30*in+2*QBlock]) // a zero block
			}
			q, xs := make([]int8, len(x)), make([]x16Scale, nt*amxRows*nb)
			for r := 0; r < nt*amxRows; r += amxRows {
				quantizeTile(q[r*in:], xs[r*nb:], x[r*in:], amxRows, in, offset)
			}
			ws := make([]byte, 2*nb*amxBlockBytes)
			amxSign(q4, nb, m.Data[:gb], ws[:nb*amxBlockBytes])
			amxSign(q4, nb, m.Data[gb:], ws[nb*amxBlockBytes:])
			const ldy = 45
			got := make([]float32, (nt*amxRows-1)*ldy+2*groupRows)
			for i := range got {
				got[i] = float32(i) // the kernel sets its outputs, whatever was there
			}
			amxKernel(nb, nt, q, xs, ws, got, ldy, new(amxScratch))
			want := make([]float32, len(got))
			for r := 0; r < nt*amxRows; r += x16Tile {
				q8, xs8 := make([]int8, x16Tile*in), make([]x16Scale, x16Tile*nb)
				quantizeTile(q8, xs8, x[r*in:], x16Tile, in, offset)
				for g := range 2 {
					x16Kernel(q4, nb, x16Tile, q8, xs8, m.Data[g*gb:(g+1)*gb], want[r*ldy+g*groupRows:], ldy)
				}
			}
			for i := range nt * amxRows {
				for l := range 2 * groupRows {
					if g, w := got[i*ldy+l], want[i*ldy+l]; math.Float32bits(g) != math.Float32bits(w) {
						t.Fatalf("nb=%d q4=%v row %d column %d: %v, want %v", nb, q4, i, l, g, w)
					}
				}
			}
		}
	}
}

// LinearMatrix gives the same bits with and without the AMX kernel, for
// rows that are whole tiles of 32 and rows that leave some to the
// sixteen-row kernel, with a span of rows past amxSpanBytes.
func TestLinearMatrixAMX(t *testing.T) {
	if amxKernel == nil {
		t.Skip("no AMX on this CPU or OS (AMX-TILE, AMX-INT8, Linux's tile permission) or with ZHLLAMA_NOAMX/NOASM/NOAVX512")
	}
	rng := rand.New(rand.NewPCG(33, 34))
	const out = 96
	for _, in := range []int{64, 8192} {
		for _, q4 := range []bool{false, true} {
			m := NewBlocks(randn(rng, out*in), out, in, q4)
			for _, rows := range []int{32, 45, 96, 100} {
				x := randn(rng, rows*in)
				got, want := make([]float32, rows*out), make([]float32, rows*out)
				LinearMatrix(got, x, m, rows, in, out)
				kern := amxKernel
				amxKernel = nil
				LinearMatrix(want, x, m, rows, in, out)
				amxKernel = kern
				assertSameBits(t, fmt.Sprintf("in=%d q4=%v rows=%d", in, q4, rows), got, want)
			}
		}
	}
}

// LinearMatrices gives each weight LinearMatrix's result bit for bit, and
// the sixteen-row kernel's where AMX takes the tiles: sixteen-row blocks
// sharing the input's quantization (decoding's runs of four groups across
// the matrices, AMX tiles or not as the matrices' groups allow, the pairs
// of groups of all of them handed out together, spans of rows past
// amxSpanBytes), and mixed formats taken one at a time.
func TestLinearMatrices(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	for _, set := range []struct {
		in   int
		outs []int
		q4   []bool
	}{
		{96, []int{64, 32, 32}, []bool{false, false, false}},
		{96, []int{112, 48}, []bool{true, true}},          // odd numbers of groups
		{96, []int{64, 32}, []bool{false, true}},          // two formats
		{96, []int{80, 32, 96}, []bool{true, true, true}}, // runs of four groups crossing matrices
		{8192, []int{64, 32}, []bool{false, false}},       // two spans of AMX tiles
	} {
		in := set.in
		ws := make([]Matrix, len(set.outs))
		for i, out := range set.outs {
			ws[i] = NewBlocks(randn(rng, out*in), out, in, set.q4[i])
		}
		for _, rows := range []int{1, 5, 32, 70, 100} {
			x := randn(rng, rows*in)
			ys := make([][]float32, len(ws))
			for i, out := range set.outs {
				ys[i] = make([]float32, rows*out)
			}
			LinearMatrices(ys, x, ws, rows, in, set.outs)
			for i, out := range set.outs {
				want := make([]float32, rows*out)
				kern := amxKernel
				amxKernel = nil
				LinearMatrix(want, x, ws[i], rows, in, out)
				amxKernel = kern
				assertSameBits(t, fmt.Sprintf("in %d outs %v q4 %v rows %d: matrix %d", in, set.outs, set.q4, rows, i), ys[i], want)
			}
		}
	}
}
