package tensor

import "zhllama/internal/half"

// Matrix is a read-only weight matrix [rows × cols] held compactly
// (bfloat16, or quantized), widened to float32 as the kernels read it, so
// that frozen weights of a big model need not be float32 in memory.
type Matrix interface {
	Dims() (rows, cols int)
	// Widen writes row r, columns [c0, c0+len(dst)), into dst.
	Widen(dst []float32, r, c0 int)
	// Bytes is the memory the matrix holds.
	Bytes() int64
}

// BF16 is a Matrix of bfloat16 values, row-major.
type BF16 struct {
	Rows, Cols int
	Data       []uint16
}

// NewBF16 rounds w [rows × cols] to bfloat16.
func NewBF16(w []float32, rows, cols int) *BF16 {
	m := &BF16{rows, cols, make([]uint16, len(w))}
	for i, v := range w {
		m.Data[i] = half.ToBF16(v)
	}
	return m
}

func (m *BF16) Dims() (int, int) { return m.Rows, m.Cols }
func (m *BF16) Bytes() int64     { return 2 * int64(len(m.Data)) }

func (m *BF16) Widen(dst []float32, r, c0 int) {
	widenBF16(dst, m.Data[r*m.Cols+c0:r*m.Cols+c0+len(dst)])
}

// widenBF16 and widenF16 set dst[i] to src[i] widened to float32, for
// i < len(dst); assembly replaces them where the CPU has AVX2 (and F16C).
var (
	widenBF16 = widenBF16Go
	widenF16  = widenF16Go
)

func widenBF16Go(dst []float32, src []uint16) {
	for i, h := range src[:len(dst)] {
		dst[i] = half.FromBF16(h)
	}
}

func widenF16Go(dst []float32, src []uint16) {
	for i, h := range src[:len(dst)] {
		dst[i] = half.FromF16(h)
	}
}

// dot is Σ a[i]·b[i]; dotBF16 and dotF16 the same with b in bfloat16 or
// IEEE half precision; dotQ8_0 and dotQ4_0 the same with b whole ggml
// blocks (len(a) a multiple of 32); axpy adds alpha·x to y. Assembly
// replaces them where the CPU has AVX2 and FMA (and F16C for the halves).
var (
	dot     = dotGo
	dotBF16 = dotBF16Go
	dotF16  = dotF16Go
	dotQ8_0 = dotQ8_0Go
	dotQ4_0 = dotQ4_0Go
	axpy    = axpyGo
	dot4    = dot4Go
	dot8    = dot8Go
	wsum    = wsumGo
	gemv1   = gemv1Go
	gemvQ8  = gemvQ8Go
	// gemvBF16 and gemvF16 are gemv1 with bfloat16 or half weight rows.
	gemvBF16 = gemvBF16Go
	gemvF16  = gemvF16Go
	// transpose8 sets dst[p·ldd+j] to src[j·lds+p] for p, j < 8.
	transpose8 = transpose8Go
)

func gemvBF16Go(y, x []float32, w []uint16) {
	n := len(x)
	for r := range y {
		y[r] = dotBF16(x, w[r*n:(r+1)*n])
	}
}

func gemvF16Go(y, x []float32, w []uint16) {
	n := len(x)
	for r := range y {
		y[r] = dotF16(x, w[r*n:(r+1)*n])
	}
}

func transpose8Go(src []float32, lds int, dst []float32, ldd int) {
	for j := range 8 {
		for p := range 8 {
			dst[p*ldd+j] = src[j*lds+p]
		}
	}
}

// gemv1Go sets y[r] to dot(x, row r of w), rows len(x) long: one input
// row against consecutive weight rows.
func gemv1Go(y, x, w []float32) {
	n := len(x)
	for r := range y {
		y[r] = dot(x, w[r*n:(r+1)*n])
	}
}

// wsumGo sets out[c] to Σ_j p[j]·v[j·ldv+c], rows j < len(p): a weighted
// sum of rows ldv apart (attention's values).
func wsumGo(p, v []float32, ldv int, out []float32) {
	clear(out)
	for j, a := range p {
		for c, x := range v[j*ldv : j*ldv+len(out)] {
			out[c] += a * x
		}
	}
}

// dot4Go sets out[r] to the dot product of w with row r of x (stride ldx),
// for four rows.
func dot4Go(w, x []float32, ldx int, out *[4]float32) {
	for r := range out {
		out[r] = dotGo(w, x[r*ldx:r*ldx+len(w)])
	}
}

// dot8Go is dot4Go for eight rows.
func dot8Go(w, x []float32, ldx int, out *[8]float32) {
	for r := range out {
		out[r] = dotGo(w, x[r*ldx:r*ldx+len(w)])
	}
}

func axpyGo(alpha float32, x, y []float32) {
	for i, v := range x {
		y[i] += alpha * v
	}
}

func dotGo(a, b []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func dotBF16Go(a []float32, b []uint16) float32 {
	var s float32
	for i, h := range b {
		s += a[i] * half.FromBF16(h)
	}
	return s
}

// gemvRows is the most rows of x for which Linear computes dot products
// straight from the weight rows instead of packing them for the GEMM: in
// decoding the weights are read once per token, and packing would read
// them twice and write them once more.
const gemvRows = 8

// gemv computes y[t×out] = x[t×in] · Wᵀ one weight row at a time;
// rowDot(j, xr) is the dot product of W's row j with the input row xr.
func gemv(y, x []float32, t, in, out int, rowDot func(j int, x []float32) float32) {
	Parallel(out, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			for i := 0; i < t; i++ {
				y[i*out+j] = rowDot(j, x[i*in:(i+1)*in])
			}
		}
	})
}

// gemvF32 is gemv for float32 weights: eight or four input rows at a
// time share each load of a weight row.
func gemvF32(y, x, w []float32, t, in, out int) {
	if t == 1 {
		ParallelFine(out, func(lo, hi int) { gemv1(y[lo:hi], x[:in], w[lo*in:hi*in]) })
		return
	}
	Parallel(out, func(lo, hi int) {
		var acc [4]float32
		var acc8 [8]float32
		for j := lo; j < hi; j++ {
			wr := w[j*in : (j+1)*in]
			i := 0
			for ; i+8 <= t; i += 8 {
				dot8(wr, x[i*in:], in, &acc8)
				for r, v := range acc8 {
					y[(i+r)*out+j] = v
				}
			}
			for ; i+4 <= t; i += 4 {
				dot4(wr, x[i*in:], in, &acc)
				for r, v := range acc {
					y[(i+r)*out+j] = v
				}
			}
			for ; i < t; i++ {
				y[i*out+j] = dot(x[i*in:(i+1)*in], wr)
			}
		}
	})
}

// gemvBlocks is LinearMatrix's decoding path for Q8_0/Q4_0 weights: each
// input row is quantized to Q8_0 once, then the integer kernel runs over
// the weight rows in chunks small enough that a chunk stays in cache
// while every input row passes over it.
func gemvBlocks(y, x []float32, m *Blocks, t, in, out int) {
	const chunk = 16
	nb := in / QBlock
	qs, ds := make([]int8, t*in), make([]float32, t*nb)
	for i := range t {
		quantizeQ8(qs[i*in:(i+1)*in], ds[i*nb:(i+1)*nb], x[i*in:(i+1)*in])
	}
	xq, bias := make([][]int8, t), make([][]int32, t)
	for i := range t {
		xq[i] = qs[i*in : (i+1)*in]
		if m.Q4 && q4Prep != nil {
			xq[i], bias[i] = q4Prep(xq[i])
		}
	}
	rb := nb * m.blockBytes()
	ParallelFine(out, func(lo, hi int) {
		for j0 := lo; j0 < hi; j0 += chunk {
			j1 := min(hi, j0+chunk)
			for i := range t {
				gemvQ8(y[i*out+j0:i*out+j1], xq[i], ds[i*nb:(i+1)*nb], bias[i], m.Data[j0*rb:j1*rb], m.Q4)
			}
		}
	})
}

// LinearMatrix is Linear for a compact weight matrix w [out × in].
func LinearMatrix(y, x []float32, w Matrix, t, in, out int) {
	if m, ok := w.(*Blocks); ok && m.x16 {
		linearX16([][]float32{y}, x, []*Blocks{m}, t, in)
		return
	}
	if t <= gemvRows {
		// The dot products read the compact rows in place, widening as
		// they go: decoding is bound by reading the weights once.
		switch m := w.(type) {
		case *BF16:
			if t == 1 {
				ParallelFine(out, func(lo, hi int) { gemvBF16(y[lo:hi], x[:in], m.Data[lo*in:hi*in]) })
				return
			}
			gemv(y, x, t, in, out, func(j int, xr []float32) float32 { return dotBF16(xr, m.Data[j*in:(j+1)*in]) })
			return
		case *F16:
			if t == 1 {
				ParallelFine(out, func(lo, hi int) { gemvF16(y[lo:hi], x[:in], m.Data[lo*in:hi*in]) })
				return
			}
			gemv(y, x, t, in, out, func(j int, xr []float32) float32 { return dotF16(xr, m.Data[j*in:(j+1)*in]) })
			return
		case *Blocks:
			gemvBlocks(y, x, m, t, in, out)
			return
		}
	}
	if t <= gemvRows {
		// Widen each weight row once into a buffer of the worker's own.
		Parallel(out, func(lo, hi int) {
			row := make([]float32, in)
			for j := lo; j < hi; j++ {
				w.Widen(row, j, 0)
				for i := 0; i < t; i++ {
					y[i*out+j] = dot(x[i*in:(i+1)*in], row)
				}
			}
		})
		return
	}
	gemm(false, dense, false, t, out, in, 1, x, in, operand{m: w, trans: true}, 0, y, out)
}

// LinearMatrices is LinearMatrix for several weights that read the same
// input: ys[i] = x·wsᵢᵀ, [t × outs[i]]. Quantized weights in the
// sixteen-row layout, all of one format, share one quantization of x
// (and, decoding, one hand-off to the workers); the results are those of
// LinearMatrix, bit for bit.
func LinearMatrices(ys [][]float32, x []float32, ws []Matrix, t, in int, outs []int) {
	bs := make([]*Blocks, len(ws))
	for i, w := range ws {
		m, ok := w.(*Blocks)
		if !ok || !m.x16 || i > 0 && m.Q4 != bs[0].Q4 || m.Rows != outs[i] {
			bs = nil
			break
		}
		bs[i] = m
	}
	if len(bs) == 0 {
		for i, w := range ws {
			LinearMatrix(ys[i], x, w, t, in, outs[i])
		}
		return
	}
	linearX16(ys, x, bs, t, in)
}

// LinearMatrixBackward adds dy·W to dx: the input gradient through a
// frozen compact weight.
func LinearMatrixBackward(dx, dy []float32, w Matrix, t, in, out int) {
	gemm(false, dense, false, t, in, out, 1, dy, out, operand{m: w}, 1, dx, in)
}
