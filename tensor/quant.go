package tensor

import (
	"fmt"
	"math"
	"sort"
)

// NF4Code is the 4-bit NormalFloat data type of QLoRA (as bitsandbytes
// tabulates it): quantiles of N(0, 1) scaled to [-1, 1], with an exact 0.
var NF4Code = [16]float32{
	-1, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1,
}

// DynamicCode is bitsandbytes' signed 8-bit dynamic map (7 exponent
// bits), with which double quantization stores the NF4 block scales.
var DynamicCode = dynamicMap()

func dynamicMap() [256]float32 {
	// In float32 throughout, as torch computes it: linspace(0.1, 1, n)
	// (from the start for the first half, from the end for the rest),
	// midpoints, times a power of ten.
	linspace := func(n int) []float32 {
		start, end := float32(0.1), float32(1)
		step := (end - start) / float32(n-1)
		out := make([]float32, n)
		for k := range out {
			if k < n/2 {
				out[k] = start + step*float32(k)
			} else {
				out[k] = end - step*float32(n-k-1)
			}
		}
		return out
	}
	var data []float32
	for i := 0; i < 7; i++ {
		b := linspace(1<<i + 1)
		scale := float32(math.Pow(10, float64(-6+i)))
		for k := 0; k+1 < len(b); k++ {
			v := scale * ((b[k] + b[k+1]) / 2)
			data = append(data, v, -v)
		}
	}
	data = append(data, 0, 1)
	sort.Slice(data, func(i, j int) bool { return data[i] < data[j] })
	var out [256]float32
	copy(out[:], data)
	return out
}

// nf4Mid are the midpoints between consecutive NF4 values.
var nf4Mid = func() (m [15]float32) {
	for i := range m {
		m[i] = (NF4Code[i] + NF4Code[i+1]) / 2
	}
	return m
}()

// nearestNF4 is the index of the NF4 code nearest to x, found by counting
// the midpoints below x in a binary search of four comparisons: a value on
// a midpoint goes to the lower code, as bitsandbytes' decision tree sends
// it (NaN to code 0).
func nearestNF4(x float32) int {
	// Flags, not branches: random weights would mispredict half of them.
	c := b2i(x > nf4Mid[7]) << 3
	c += b2i(x > nf4Mid[c+3]) << 2
	c += b2i(x > nf4Mid[c+1]) << 1
	return c + b2i(x > nf4Mid[c])
}

// nearestDynamic is the index of the DynamicCode value nearest to x (a tie
// to the lower one, NaN to the last), by a binary search of eight
// comparisons without branches.
func nearestDynamic(x float32) int {
	c := &DynamicCode
	i := 0 // how many codes are below x, at most 255 (past the last, 255 is nearest)
	for half := 128; half > 0; half >>= 1 {
		i += half * b2i(c[i+half-1] < x)
	}
	switch {
	case x != x:
		return 255
	case i == 0:
		return 0
	case c[i]-x < x-c[i-1]:
		return i
	}
	return i - 1
}

// b2i is 1 for true (compiled to a SETcc).
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// NF4 is a Matrix quantized as QLoRA does: blocks of 64 consecutive values
// (in row-major order) scaled by their absolute maximum and rounded to the
// nearest NF4 value, two to a byte (the first in the high nibble); the
// block maxima are themselves quantized ("double quantization") to the
// 8-bit dynamic map in blocks of 256, after subtracting their mean.
type NF4 struct {
	Rows, Cols int
	Packed     []byte    // two 4-bit codes a byte
	QAbsmax    []uint8   // each block's absmax, quantized
	Absmax2    []float32 // scale of each 256 block maxima
	Offset     float32   // the mean subtracted from the maxima
}

const (
	nf4Block    = 64
	absmaxBlock = 256
)

// QuantizeNF4 quantizes w [rows × cols].
func QuantizeNF4(w []float32, rows, cols int) *NF4 {
	n := rows * cols
	nb := (n + nf4Block - 1) / nf4Block
	q := &NF4{Rows: rows, Cols: cols, Packed: make([]byte, (n+1)/2), QAbsmax: make([]uint8, nb)}
	absmax := make([]float32, nb)
	// Blocks are independent; an even number of values per block keeps
	// each byte within one block, so workers never share a byte.
	Parallel(nb, func(lo, hi int) {
		if quantizeNF4Blocks != nil {
			// Whole blocks in the kernel; those it leaves (a maximum
			// that is 0 or NaN) and a partial last block below.
			full := max(0, min(hi, n/nf4Block)-lo)
			quantizeNF4Blocks(w[lo*nf4Block:(lo+full)*nf4Block], q.Packed[lo*nf4Block/2:], absmax[lo:lo+full])
			for b := lo; b < lo+full; b++ {
				if !(absmax[b] > 0) {
					quantizeNF4Block(q.Packed, w, absmax, b, n)
				}
			}
			lo += full
		}
		for b := lo; b < hi; b++ {
			quantizeNF4Block(q.Packed, w, absmax, b, n)
		}
	})
	// Double quantization of the maxima.
	var sum float64
	for _, m := range absmax {
		sum += float64(m)
	}
	q.Offset = float32(sum / float64(nb))
	q.Absmax2 = make([]float32, (nb+absmaxBlock-1)/absmaxBlock)
	Parallel(len(q.Absmax2), func(lo, hi int) {
		for g := lo; g < hi; g++ {
			b0 := g * absmaxBlock
			blk := absmax[b0:min(b0+absmaxBlock, nb)]
			var m float32
			for _, v := range blk {
				m = max(m, float32(math.Abs(float64(v-q.Offset))))
			}
			q.Absmax2[g] = m
			for k, v := range blk {
				x := float32(0)
				if m > 0 {
					x = (v - q.Offset) / m
				}
				q.QAbsmax[b0+k] = uint8(nearestDynamic(x))
			}
		}
	})
	return q
}

// quantizeNF4Block quantizes block b of w (n values in all) into packed,
// setting absmax[b]: the portable QuantizeNF4.
func quantizeNF4Block(packed []byte, w, absmax []float32, b, n int) {
	blk := w[b*nf4Block : min((b+1)*nf4Block, n)]
	var m float32 // the block's absolute maximum; NaN once one is NaN
	for _, v := range blk {
		if a := math.Float32frombits(math.Float32bits(v) &^ (1 << 31)); a > m || a != a {
			m = a
		}
	}
	absmax[b] = m
	// Codes a pair (one byte) at a time; an all-zero block takes the
	// code of 0.
	out := packed[b*nf4Block/2:]
	if !(m > 0) {
		for k := range (len(blk) + 1) / 2 {
			out[k] = 7<<4 | 7
		}
		if len(blk)%2 == 1 {
			out[len(blk)/2] = 7 << 4
		}
		return
	}
	k := 0
	for ; k+1 < len(blk); k += 2 {
		out[k/2] = byte(nearestNF4(blk[k]/m)<<4 | nearestNF4(blk[k+1]/m))
	}
	if k < len(blk) {
		out[k/2] = byte(nearestNF4(blk[k]/m) << 4)
	}
}

// quantizeNF4Blocks, where the CPU has a kernel for it, quantizes
// len(absmax) whole blocks as quantizeNF4Block does, except those whose
// maximum is not positive (left to it).
var quantizeNF4Blocks func(w []float32, packed []byte, absmax []float32)

// nf4Mid16 is nf4Mid and +Inf, a vector's worth.
var nf4Mid16 = [16]float32(append(nf4Mid[:], float32(math.Inf(1))))

func (q *NF4) Dims() (int, int) { return q.Rows, q.Cols }

func (q *NF4) Bytes() int64 {
	return int64(len(q.Packed) + len(q.QAbsmax) + 4*len(q.Absmax2) + 4)
}

// absmax is block b's dequantized scale.
func (q *NF4) absmax(b int) float32 {
	return DynamicCode[q.QAbsmax[b]]*q.Absmax2[b/absmaxBlock] + q.Offset
}

// scaleRun sets dst[i·stride] to absmax(b+i) for i < n: the same values,
// a run of QAbsmax at a time under each of its Absmax2 scales.
func (q *NF4) scaleRun(dst []float32, stride, b, n int) {
	for i := 0; i < n; {
		g := (b + i) / absmaxBlock
		end := min(n, (g+1)*absmaxBlock-b)
		a2, off := q.Absmax2[g], q.Offset
		for j, c := range q.QAbsmax[b+i : b+end] {
			dst[(i+j)*stride] = DynamicCode[c]*a2 + off
		}
		i = end
	}
}

// nf4Pairs decodes a packed byte to its two values at once.
var nf4Pairs = func() (t [256][2]float32) {
	for b := range t {
		t[b] = [2]float32{NF4Code[b>>4], NF4Code[b&15]}
	}
	return t
}()

// widenNF4, where the CPU has a kernel for it, widens nb whole blocks, the
// packed codes starting on a block boundary: value j of block b is
// NF4Code[code]·scales[b], stored in runs of 32 stride values apart (at
// dst[(2b + j/32)·stride + j%32]; stride 32 stores them in order). The
// scales are passed by value: called through a variable, a pointer would
// put them on the heap at every call.
var widenNF4 func(dst []float32, stride int, packed []byte, scales [16]float32, nb int)

func (q *NF4) Widen(dst []float32, r, c0 int) {
	i := r*q.Cols + c0
	for k := 0; k < len(dst); {
		b := i / nf4Block
		if n := (len(dst) - k) / nf4Block * nf4Block; widenNF4 != nil && i%nf4Block == 0 && n > 0 {
			q.widenBlocks(dst[k:], 32, i, n)
			k, i = k+n, i+n
			continue
		}
		s := q.absmax(b)
		end := min(len(dst), k+(b+1)*nf4Block-i)
		if i%2 == 1 { // a leading low nibble
			dst[k] = NF4Code[q.Packed[i/2]&15] * s
			k, i = k+1, i+1
		}
		for ; k+1 < end; k, i = k+2, i+2 {
			p := &nf4Pairs[q.Packed[i/2]]
			dst[k], dst[k+1] = p[0]*s, p[1]*s
		}
		if k < end { // a trailing high nibble
			dst[k] = NF4Code[q.Packed[i/2]>>4] * s
			k, i = k+1, i+1
		}
	}
}

// widenPanels widens n values of row r from column c0 as Widen does, but
// into runs of 32 stride values apart (value j at dst[(j/32)·stride +
// j%32]: GEMM's packed panels), and reports whether it could: only whole
// blocks, on a CPU with the kernel.
func (q *NF4) widenPanels(dst []float32, stride, r, c0, n int) bool {
	i := r*q.Cols + c0
	if widenNF4 == nil || i%nf4Block != 0 || n%nf4Block != 0 {
		return false
	}
	q.widenBlocks(dst, stride, i, n)
	return true
}

// widenNF4T, where the CPU has a kernel for it, widens nb whole blocks of
// 16 rows transposed (row j's codes at packed[j·rowBytes:], starting on a
// block boundary): value k of row j to dst[k·stride + j], as
// NF4Code[code]·scales[16·(k/64) + j]; the scales by value, as widenNF4's.
var widenNF4T func(dst []float32, stride int, packed []byte, rowBytes int, scales [16 * 16]float32, nb int)

// widenT widens n values of rows r0..r0+15 from column c0, transposed:
// value k of row r0+j to dst[k·stride + j], as Widen gives it. It reports
// whether it could: only whole blocks of rows that start on one, on a CPU
// with the kernel.
func (q *NF4) widenT(dst []float32, stride, r0, c0, n int) bool {
	if widenNF4T == nil || q.Cols%nf4Block != 0 || c0%nf4Block != 0 || n%nf4Block != 0 || r0+16 > q.Rows {
		return false
	}
	blocksPerRow := q.Cols / nf4Block
	var scales [16 * 16]float32 // 16 blocks of the 16 rows a call
	for k := 0; k < n; k += 16 * nf4Block {
		nb := min(n-k, 16*nf4Block) / nf4Block
		b0 := r0*blocksPerRow + (c0+k)/nf4Block
		for j := range 16 {
			q.scaleRun(scales[j:], 16, b0+j*blocksPerRow, nb)
		}
		widenNF4T(dst[k*stride:], stride, q.Packed[b0*nf4Block/2:], q.Cols/2, scales, nb)
	}
	return true
}

// widenBlocks runs widenNF4 over the n values (whole blocks) from value i
// of the matrix, sixteen blocks a call.
func (q *NF4) widenBlocks(dst []float32, stride, i, n int) {
	for k := 0; k < n; {
		b, nb := i/nf4Block, min(n-k, 16*nf4Block)/nf4Block
		var scales [16]float32
		q.scaleRun(scales[:], 1, b, nb)
		widenNF4(dst[k/32*stride:], stride, q.Packed[i/2:i/2+nb*nf4Block/2], scales, nb)
		k, i = k+nb*nf4Block, i+nb*nf4Block
	}
}

// Int8 is a Matrix quantized row-wise to int8 by each row's absolute
// maximum (bitsandbytes' 8-bit weight layout: values and a scale a row).
type Int8 struct {
	Rows, Cols int
	Data       []int8
	Scale      []float32 // absmax/127 of each row
}

// QuantizeInt8 quantizes w [rows × cols].
func QuantizeInt8(w []float32, rows, cols int) *Int8 {
	q := &Int8{Rows: rows, Cols: cols, Data: make([]int8, rows*cols), Scale: make([]float32, rows)}
	for r := 0; r < rows; r++ {
		row := w[r*cols : (r+1)*cols]
		var m float32
		for _, v := range row {
			m = max(m, float32(math.Abs(float64(v))))
		}
		q.Scale[r] = m / 127
		if m == 0 {
			continue
		}
		for c, v := range row {
			q.Data[r*cols+c] = int8(math.RoundToEven(float64(v * 127 / m)))
		}
	}
	return q
}

func (q *Int8) Dims() (int, int) { return q.Rows, q.Cols }
func (q *Int8) Bytes() int64     { return int64(len(q.Data) + 4*len(q.Scale)) }

func (q *Int8) Widen(dst []float32, r, c0 int) {
	s := q.Scale[r]
	for k, v := range q.Data[r*q.Cols+c0 : r*q.Cols+c0+len(dst)] {
		dst[k] = float32(v) * s
	}
}

// Quantize returns w [rows × cols] as NF4 (bits 4) or Int8 (bits 8).
func Quantize(w []float32, rows, cols, bits int) (Matrix, error) {
	switch bits {
	case 4:
		return QuantizeNF4(w, rows, cols), nil
	case 8:
		return QuantizeInt8(w, rows, cols), nil
	}
	return nil, fmt.Errorf("quantization to %d bits: use 4 (NF4) or 8", bits)
}
