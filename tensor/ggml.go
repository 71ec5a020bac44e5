package tensor

import (
	"encoding/binary"
	"math"

	"zhllama/internal/half"
)

// The block formats of ggml (llama.cpp's tensor library), as GGUF files
// store them: a row is cut into blocks of 32 values, each a float16 scale
// and the quantized values. The quantizers round exactly as ggml's
// reference ones (quantize_row_q8_0_ref, quantize_row_q4_0_ref), so that a
// file written here is the file llama.cpp's converter would write.

// QBlock is the number of values in a Q8_0 or Q4_0 block.
const QBlock = 32

// Bytes per block.
const (
	Q8_0BlockBytes = 2 + QBlock
	Q4_0BlockBytes = 2 + QBlock/2
)

// AppendQ8_0 quantizes x (a multiple of 32 values) to Q8_0 blocks: scale
// d = max|x|/127 and q = round(x/d), half away from zero, as ggml's
// roundf does (quantizeQ8).
func AppendQ8_0(dst []byte, x []float32) []byte {
	var qs [QBlock]int8
	var d [1]float32
	for b := 0; b+QBlock <= len(x); b += QBlock {
		quantizeQ8(qs[:], d[:], x[b:b+QBlock])
		dst = binary.LittleEndian.AppendUint16(dst, half.ToF16(d[0])) // d[0] is a half already: exact
		for _, q := range qs {
			dst = append(dst, byte(q))
		}
	}
	return dst
}

// AppendQ4_0 quantizes x (a multiple of 32 values) to Q4_0 blocks: the
// value of largest magnitude, with its sign, maps to -8; the codes are
// min(15, trunc(x/d + 8.5)), value j in the low nibble of byte j and value
// j+16 in its high nibble.
func AppendQ4_0(dst []byte, x []float32) []byte {
	for b := 0; b+QBlock <= len(x); b += QBlock {
		blk := x[b : b+QBlock]
		var amax, m float32
		for _, v := range blk {
			if a := float32(math.Abs(float64(v))); amax < a {
				amax, m = a, v
			}
		}
		d := m / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		dst = binary.LittleEndian.AppendUint16(dst, half.ToF16(d))
		code := func(v float32) byte {
			return byte(min(15, int8(float32(v*id)+8.5)))
		}
		for j := 0; j < QBlock/2; j++ {
			dst = append(dst, code(blk[j])|code(blk[j+QBlock/2])<<4)
		}
	}
	return dst
}

// DecodeQ8_0 widens whole Q8_0 blocks b into dst (32 values a block).
func DecodeQ8_0(dst []float32, b []byte) {
	for k := 0; k < len(dst); k += QBlock {
		blk := b[k/QBlock*Q8_0BlockBytes:]
		d := half.FromF16(binary.LittleEndian.Uint16(blk))
		for j, q := range blk[2 : 2+QBlock] {
			dst[k+j] = d * float32(int8(q))
		}
	}
}

// DecodeQ4_0 widens whole Q4_0 blocks b into dst (32 values a block).
func DecodeQ4_0(dst []float32, b []byte) {
	for k := 0; k < len(dst); k += QBlock {
		blk := b[k/QBlock*Q4_0BlockBytes:]
		d := half.FromF16(binary.LittleEndian.Uint16(blk))
		for j, q := range blk[2 : 2+QBlock/2] {
			dst[k+j] = d * float32(int(q&15)-8)
			dst[k+j+QBlock/2] = d * float32(int(q>>4)-8)
		}
	}
}

// F16 is a Matrix of IEEE half-precision values, row-major.
type F16 struct {
	Rows, Cols int
	Data       []uint16
}

func (m *F16) Dims() (int, int) { return m.Rows, m.Cols }
func (m *F16) Bytes() int64     { return 2 * int64(len(m.Data)) }

func (m *F16) Widen(dst []float32, r, c0 int) {
	widenF16(dst, m.Data[r*m.Cols+c0:r*m.Cols+c0+len(dst)])
}

// Blocks is a Matrix of ggml blocks (Q8_0 or Q4_0), each row a whole
// number of blocks; Cols is a multiple of 32.
type Blocks struct {
	Rows, Cols int
	Data       []byte
	// Q4 selects Q4_0; otherwise Q8_0.
	Q4 bool
	// x16 says Data is in sixteen-row groups (blocks16.go), not rows.
	x16 bool
}

// NewBlocks quantizes w [rows × cols] to Q8_0 or, with q4, Q4_0; cols must
// be a multiple of 32.
func NewBlocks(w []float32, rows, cols int, q4 bool) *Blocks {
	var data []byte
	if q4 {
		data = AppendQ4_0(make([]byte, 0, rows*cols/QBlock*Q4_0BlockBytes), w)
	} else {
		data = AppendQ8_0(make([]byte, 0, rows*cols/QBlock*Q8_0BlockBytes), w)
	}
	m, _ := BlocksFor(data, rows, cols, q4)
	return m
}

func (m *Blocks) Dims() (int, int) { return m.Rows, m.Cols }
func (m *Blocks) Bytes() int64     { return int64(len(m.Data)) }

// Interleaved says whether Data holds sixteen-row groups (see BlocksFor)
// rather than the ggml rows one after another.
func (m *Blocks) Interleaved() bool { return m.x16 }

func (m *Blocks) blockBytes() int {
	if m.Q4 {
		return Q4_0BlockBytes
	}
	return Q8_0BlockBytes
}

// Widen decodes the blocks that hold row r's columns [c0, c0+len(dst)):
// whole blocks straight into dst, partial ones through a small buffer.
func (m *Blocks) Widen(dst []float32, r, c0 int) {
	bb := m.blockBytes()
	row := m.Data[r*(m.Cols/QBlock)*bb:]
	decode := decodeQ8_0
	if m.Q4 {
		decode = decodeQ4_0
	}
	var buf [QBlock]float32
	var gathered [Q8_0BlockBytes]byte
	for k := 0; k < len(dst); {
		c := c0 + k
		if m.x16 {
			// One block at a time, gathered back into the ggml format.
			blk := gathered[:bb]
			m.block16(blk, r, c/QBlock)
			if c%QBlock == 0 && len(dst)-k >= QBlock {
				decode(dst[k:k+QBlock], blk)
				k += QBlock
				continue
			}
			if m.Q4 {
				DecodeQ4_0(buf[:], blk)
			} else {
				DecodeQ8_0(buf[:], blk)
			}
			k += copy(dst[k:], buf[c%QBlock:])
			continue
		}
		blk := row[c/QBlock*bb : (c/QBlock+1)*bb]
		if off := c % QBlock; off != 0 || len(dst)-k < QBlock {
			// The Go decoders, called directly, keep buf on the stack.
			if m.Q4 {
				DecodeQ4_0(buf[:], blk)
			} else {
				DecodeQ8_0(buf[:], blk)
			}
			k += copy(dst[k:], buf[off:])
			continue
		}
		n := (len(dst) - k) / QBlock // whole blocks from here
		decode(dst[k:k+n*QBlock], row[c/QBlock*bb:(c/QBlock+n)*bb])
		k += n * QBlock
	}
}

// decodeQ8_0 and decodeQ4_0 are DecodeQ8_0 and DecodeQ4_0 as dispatched:
// assembly where the CPU has AVX2 and F16C.
var (
	decodeQ8_0 = DecodeQ8_0
	decodeQ4_0 = DecodeQ4_0
)

// dotF16Go is Σ a[i]·b[i] with b in IEEE half precision.
func dotF16Go(a []float32, b []uint16) float32 {
	var s float32
	for i, h := range b {
		s += a[i] * half.FromF16(h)
	}
	return s
}

// dotQ8_0Go is Σ a[i]·w[i] over the Q8_0 blocks b, one block decoded at
// a time.
func dotQ8_0Go(a []float32, b []byte) float32 {
	var s float32
	var buf [QBlock]float32
	for k := 0; k+QBlock <= len(a); k += QBlock {
		DecodeQ8_0(buf[:], b[k/QBlock*Q8_0BlockBytes:])
		s += dotGo(a[k:k+QBlock], buf[:])
	}
	return s
}

// dotQ4_0Go is dotQ8_0Go for Q4_0 blocks.
func dotQ4_0Go(a []float32, b []byte) float32 {
	var s float32
	var buf [QBlock]float32
	for k := 0; k+QBlock <= len(a); k += QBlock {
		DecodeQ4_0(buf[:], b[k/QBlock*Q4_0BlockBytes:])
		s += dotGo(a[k:k+QBlock], buf[:])
	}
	return s
}

// Decoding multiplies Q8_0 and Q4_0 weights as llama.cpp does: the input
// row is quantized to Q8_0 blocks first (quantizeQ8), so that each block's
// products are integers, summed exactly, and scaled once by both scales.
// The error this adds is the input's rounding to 8 bits (at most half a
// step, max|x|/254 a block), the same llama.cpp's results carry.

// quantizeQ8 quantizes x (a multiple of 32 values) to Q8_0 blocks, the
// codes into qs and each block's scale, rounded through float16 as the
// block format stores it, into ds: d = max|x|/127, q = round(x·(1/d)) half
// away from zero, the product rounded to float32 first, as in ggml's
// quantize_row_q8_0_ref.
func quantizeQ8(qs []int8, ds []float32, x []float32) {
	for b := range len(x) / QBlock {
		ds[b] = quantizeQ8Block(qs[b*QBlock:(b+1)*QBlock], x[b*QBlock:(b+1)*QBlock])
	}
}

// quantizeQ8Block is quantizeQ8 of one block: it returns the scale.
func quantizeQ8Block(q []int8, blk []float32) float32 {
	var amax float32
	for _, v := range blk {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	for j, v := range blk {
		q[j] = int8(math.Round(float64(float32(v * id))))
	}
	return half.FromF16(half.ToF16(d))
}

// q4Prep, where the Q4_0 kernel in use wants the quantized input laid out
// its own way, returns that layout of the codes qs and the starting value
// of each block's sum (q4BiasOf, q4PairsOf); gemvQ8 then takes them in
// place of qs and bias.
var q4Prep func(qs []int8) (xq []int8, bias []int32)

// q4BiasOf is, for each block of the quantized input qs, −8 times the sum
// of its codes in the first of eight int32s: a kernel that multiplies the
// Q4_0 nibbles unsigned starts each block's sum there.
func q4BiasOf(qs []int8) []int32 {
	b := make([]int32, len(qs)/QBlock*8)
	for k := range len(qs) / QBlock {
		b[k*8] = -8 * codeSum(qs[k*QBlock:(k+1)*QBlock])
	}
	return b
}

// q4PairsOf is q4BiasOf for a kernel that takes two blocks at once (an
// even number of them): per pair the codes as [first 16 of block 0, first
// 16 of block 1, last 16 of block 0, last 16 of block 1] — the order in
// which the pair's low and high nibbles meet them — and sixteen int32s,
// −8·Σ of block 0's codes in the first and of block 1's in the fifth.
func q4PairsOf(qs []int8) (xq []int8, bias []int32) {
	const h = QBlock / 2
	xq, bias = make([]int8, len(qs)), make([]int32, len(qs)/QBlock*8)
	for p := range len(qs) / (2 * QBlock) {
		b0, b1 := qs[2*p*QBlock:(2*p+1)*QBlock], qs[(2*p+1)*QBlock:(2*p+2)*QBlock]
		dst := xq[2*p*QBlock : (2*p+2)*QBlock]
		copy(dst[0:h], b0[:h])
		copy(dst[h:2*h], b1[:h])
		copy(dst[2*h:3*h], b0[h:])
		copy(dst[3*h:], b1[h:])
		bias[p*16], bias[p*16+4] = -8*codeSum(b0), -8*codeSum(b1)
	}
	return xq, bias
}

func codeSum(q []int8) int32 {
	var s int32
	for _, c := range q {
		s += int32(c)
	}
	return s
}

// gemvQ8Go sets y[r] to the dot product of consecutive weight rows of
// Q8_0 (or, with q4, Q4_0) blocks w with the quantized input (qs, ds; the
// bias, which some kernels take, is not needed here):
// per block, the integer sum of code products times both scales.
func gemvQ8Go(y []float32, qs []int8, ds []float32, _ []int32, w []byte, q4 bool) {
	bb := Q8_0BlockBytes
	if q4 {
		bb = Q4_0BlockBytes
	}
	rb := len(ds) * bb
	for r := range y {
		row := w[r*rb : (r+1)*rb]
		var s float32
		for b, d := range ds {
			blk := row[b*bb : (b+1)*bb]
			q := qs[b*QBlock : (b+1)*QBlock]
			var sum int32
			if q4 {
				for j, c := range blk[2:] {
					sum += (int32(c&15)-8)*int32(q[j]) + (int32(c>>4)-8)*int32(q[j+QBlock/2])
				}
			} else {
				for j, c := range blk[2:] {
					sum += int32(int8(c)) * int32(q[j])
				}
			}
			s += half.FromF16(binary.LittleEndian.Uint16(blk)) * d * float32(sum)
		}
		y[r] = s
	}
}
