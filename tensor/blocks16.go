package tensor

import (
	"encoding/binary"
	"fmt"
	"sync"

	"zhllama/internal/half"
)

// Sixteen-row blocks are the layout in which the AVX-512 VNNI kernels
// multiply Q8_0 and Q4_0 weights. Rows go in groups of sixteen, block by
// block: for block b of rows 16g…16g+15 come the sixteen float16 scales
// (32 bytes), then the codes as 64-byte vectors in which row l holds four
// consecutive codes at bytes 4l…4l+3. One VPDPBUSD then multiplies four
// codes of all sixteen rows by four input codes broadcast, and the sixteen
// sums land in the lanes of the sixteen outputs: nothing is reduced across
// lanes, and a weight vector loaded once serves every input row.
//
// Q4_0 keeps its byte pairing: vector j holds bytes 4j…4j+3 of each row's
// block, codes 4j…4j+3 in the low nibbles and 16+4j… in the high. Q8_0's
// vector k holds codes 4k…4k+3 plus 128, so that both formats multiply
// unsigned weight codes with signed input codes; the offsets (8 or 128
// times the block's input code sum) come off before scaling. A group's
// block takes the bytes of its sixteen rows' blocks: 288 for Q4_0, 544
// for Q8_0.

const (
	groupRows = 16
	// x16Tile is the most input rows one kernel call takes; the weights a
	// call expands serve all of them.
	x16Tile = 8
	// x16Span bounds the input rows whose quantized codes a worker runs
	// over each group of weights with (x16Span·in bytes, in L2).
	x16Span = 64
)

// x16At is where, in a group's block, row l's bytes j…j+3 of its ggml
// block's codes go (j a multiple of 4).
func x16At(j, l int) int { return 2*groupRows + j/4*64 + 4*l }

// x16Scale is one input row's block: its scale and minus the offset its
// integer sum starts from (−8 or −128 times the sum of its codes).
type x16Scale struct {
	d    float32
	bias int32
}

// x16Kernel, where the CPU has one, sets y[i·ldy + l] (i < t ≤ 8, l < 16)
// to the dot products of one group's nb blocks w with t quantized input
// rows: their codes x as [nb][t][32] and scales xs as [nb][t].
var x16Kernel func(q4 bool, nb, t int, x []int8, xs []x16Scale, w []byte, y []float32, ldy int)

// x16Kernel4, where the CPU has one, is x16Kernel at t = 1 over four
// consecutive groups at once (w holds them, nb blocks each), setting
// y[0:64]. Decoding reads every weight once, and four streams read at
// once draw more bandwidth from memory than one (about a fifth more on
// a Xeon with AVX-512).
var x16Kernel4 func(q4 bool, nb int, x []int8, xs []x16Scale, w []byte, y []float32)

// BlocksFor wraps ggml block data (Q4_0 with q4, else Q8_0) of a
// rows × cols matrix as a Blocks in the layout this CPU's kernels read
// fastest. copied says whether the result holds a copy in another layout,
// so that the caller may let data's pages go.
func BlocksFor(data []byte, rows, cols int, q4 bool) (m *Blocks, copied bool) {
	m = &Blocks{Rows: rows, Cols: cols, Data: data, Q4: q4}
	if cols%QBlock != 0 || len(data) != rows*(cols/QBlock)*m.blockBytes() {
		panic(fmt.Sprintf("tensor: %d bytes of blocks for a %d × %d matrix", len(data), rows, cols))
	}
	if x16Kernel == nil || rows%groupRows != 0 || cols == 0 {
		return m, false
	}
	m.Data = weightBytes(len(data), m)
	interleave16(m.Data, data, rows, cols/QBlock, m.blockBytes())
	m.x16 = true
	return m, true
}

// interleave16 writes src, rows of nb ggml blocks of bb bytes, as
// sixteen-row groups into dst.
func interleave16(dst, src []byte, rows, nb, bb int) {
	q8 := bb == Q8_0BlockBytes
	Parallel(rows/groupRows, func(lo, hi int) {
		for g := lo; g < hi; g++ {
			for b := range nb {
				out := dst[(g*nb+b)*groupRows*bb:][:groupRows*bb]
				for l := range groupRows {
					blk := src[((g*groupRows+l)*nb+b)*bb:][:bb]
					copy(out[2*l:2*l+2], blk[:2])
					for j := 0; j < bb-2; j += 4 {
						at := x16At(j, l)
						copy(out[at:at+4], blk[2+j:6+j])
						if q8 {
							for k := at; k < at+4; k++ {
								out[k] ^= 0x80
							}
						}
					}
				}
			}
		}
	})
}

// block16 gathers block b of row r of a sixteen-row layout back into the
// ggml block blk.
func (m *Blocks) block16(blk []byte, r, b int) {
	bb, nb, l := m.blockBytes(), m.Cols/QBlock, r%groupRows
	grp := m.Data[((r/groupRows)*nb+b)*groupRows*bb:][:groupRows*bb]
	copy(blk[:2], grp[2*l:2*l+2])
	for j := 0; j < bb-2; j += 4 {
		at := x16At(j, l)
		copy(blk[2+j:6+j], grp[at:at+4])
		if !m.Q4 {
			for k := 2 + j; k < 6+j; k++ {
				blk[k] ^= 0x80
			}
		}
	}
}

// linearX16 is LinearMatrix over sixteen-row blocks of one format, for
// several matrices that read the same input (ys[i] = x·msᵢᵀ) and any
// number of input rows: each row is quantized to Q8_0 once for all of
// them, then every worker runs its groups of weight rows over spans of
// input rows, a kernel call taking up to x16Tile of them while the group's
// codes stay in cache. Where the CPU has AMX, whole tiles of amxRows
// input rows go to its kernel instead (pairs of groups; the rest of the
// rows as before). A decoding step (one row) hands out the groups of all
// the matrices at once.
func linearX16(ys [][]float32, x []float32, ms []*Blocks, t, in int) {
	nb := in / QBlock
	buf := x16Bufs.Get().(*x16Buf)
	defer x16Bufs.Put(buf)
	xq, xs := buf.grow(t*in, t*nb)
	offset := int32(-128)
	if ms[0].Q4 {
		offset = -8
	}
	ta := 0 // the rows the AMX kernel takes
	if amxKernel != nil {
		ta = t / amxRows * amxRows
		for _, m := range ms {
			if m.Rows/groupRows%2 != 0 {
				ta = 0
			}
		}
	}
	var tiles [][2]int
	for r := 0; r < ta; r += amxRows {
		tiles = append(tiles, [2]int{r, amxRows})
	}
	for _, tl := range x16Tiles(t - ta) {
		tiles = append(tiles, [2]int{ta + tl[0], tl[1]})
	}
	Parallel(len(tiles), func(lo, hi int) {
		for _, tl := range tiles[lo:hi] {
			quantizeTile(xq[tl[0]*in:(tl[0]+tl[1])*in], xs[tl[0]*nb:(tl[0]+tl[1])*nb], x[tl[0]*in:], tl[1], in, offset)
		}
	})
	if t == 1 && x16Kernel4 != nil {
		decodeX16(ys, xq, xs, ms, nb)
		return
	}
	for i, m := range ms {
		y, out := ys[i], m.Rows
		gb := nb * groupRows * m.blockBytes()
		tls := tiles
		if ta > 0 {
			linearAMX(y, xq, xs, m, ta, in, out)
			tls = tiles[ta/amxRows:]
			if len(tls) == 0 {
				continue
			}
		}
		ParallelFine(out/groupRows, func(lo, hi int) {
			for s := 0; s < len(tls); {
				e := s + 1
				for e < len(tls) && tls[e][0]+tls[e][1]-tls[s][0] <= x16Span {
					e++
				}
				for g := lo; g < hi; g++ {
					w := m.Data[g*gb : (g+1)*gb]
					for _, tl := range tls[s:e] {
						r0, n := tl[0], tl[1]
						x16Kernel(m.Q4, nb, n, xq[r0*in:(r0+n)*in], xs[r0*nb:(r0+n)*nb], w, y[r0*out+g*groupRows:], out)
					}
				}
				s = e
			}
		})
	}
}

// decodeX16 is linearX16's one input row, quantized: the workers claim
// runs of four groups of any of the matrices (the last run of a matrix
// maybe shorter), so that one hand-off serves them all, in sixteen chunks
// a worker: decoding a large model is bound by memory, and a worker left
// alone at the end reads at little more than half the bandwidth (7B Q4_0
// on 2 threads: 1.03x tokens/s over four chunks a worker).
func decodeX16(ys [][]float32, xq []int8, xs []x16Scale, ms []*Blocks, nb int) {
	runs := make([]int, len(ms)+1) // runs[i]: matrix i's first run
	for i, m := range ms {
		runs[i+1] = runs[i] + (m.Rows/groupRows+3)/4
	}
	parallel(runs[len(ms)], 16, func(lo, hi int) {
		i := 0
		for u := lo; u < hi; u++ {
			for u >= runs[i+1] {
				i++
			}
			m, y := ms[i], ys[i]
			groups, gb := m.Rows/groupRows, nb*groupRows*m.blockBytes()
			g := 4 * (u - runs[i])
			if g+4 <= groups {
				x16Kernel4(m.Q4, nb, xq, xs, m.Data[g*gb:(g+4)*gb], y[g*groupRows:])
				continue
			}
			for ; g < groups; g++ {
				x16Kernel(m.Q4, nb, 1, xq, xs, m.Data[g*gb:(g+1)*gb], y[g*groupRows:], m.Rows)
			}
		}
	})
}

// AMX: amxKernel, where the CPU and the OS allow it, sets the outputs
// y[i·ldy + l] (i < amxRows·nt, l < 32) of nt tiles of amxRows input rows
// (each tile's codes [nb][32][32] and scales [nb][32], as quantizeTile
// lays out a tile of 32; the tiles one after another) and the two groups
// of weight rows that amxSign wrote into ws (nb·amxBlockBytes each).
// Each block's integer sums are exact and scaled as x16Kernel scales
// them: both give the same bits.
const (
	amxRows = 32
	// amxBlockBytes is a block of one group in ws: sixteen float32
	// weight scales and 32 signed codes of each row.
	amxBlockBytes = 64 + groupRows*QBlock
	// amxSpanBytes bounds the input codes a worker runs a pair of groups
	// over before the next pair (in L2).
	amxSpanBytes = 512 << 10
)

var (
	amxKernel func(nb, nt int, x []int8, xs []x16Scale, ws []byte, y []float32, ldy int, sc *amxScratch)
	// amxSign writes nb blocks of one group w into ws in the kernel's
	// signed layout.
	amxSign func(q4 bool, nb int, w, ws []byte)
)

// amxScratch is a worker's memory for the AMX kernel: two blocks'
// integer sums and a tile's outputs (12 KB, aligned inside buf), and a
// pair of groups' weights.
type amxScratch struct {
	buf [3*4096 + 64]byte
	ws  []byte
}

var amxScratches = sync.Pool{New: func() any { return new(amxScratch) }}

// linearAMX sets rows [0, ta) of y (ta a multiple of amxRows) from their
// quantized codes: each worker takes pairs of groups of weight rows,
// writes a pair's weights signed once per span of input rows, and runs
// the span's tiles over them in one call.
func linearAMX(y []float32, xq []int8, xs []x16Scale, m *Blocks, ta, in, out int) {
	nb := in / QBlock
	gb := nb * groupRows * m.blockBytes()
	span := amxRows * max(1, amxSpanBytes/(amxRows*in))
	ParallelFine(out/(2*groupRows), func(lo, hi int) {
		sc := amxScratches.Get().(*amxScratch)
		defer amxScratches.Put(sc)
		if cap(sc.ws) < 2*nb*amxBlockBytes {
			sc.ws = make([]byte, 2*nb*amxBlockBytes)
		}
		ws := sc.ws[:2*nb*amxBlockBytes]
		for s := 0; s < ta; s += span {
			e := min(ta, s+span)
			for p := lo; p < hi; p++ {
				g := 2 * p
				amxSign(m.Q4, nb, m.Data[g*gb:(g+1)*gb], ws[:nb*amxBlockBytes])
				amxSign(m.Q4, nb, m.Data[(g+1)*gb:(g+2)*gb], ws[nb*amxBlockBytes:])
				amxKernel(nb, (e-s)/amxRows, xq[s*in:e*in], xs[s*nb:e*nb], ws, y[s*out+g*groupRows:], out, sc)
			}
		}
	})
}

// x16Buf holds a call's quantized input; decoding makes hundreds of
// calls a token, so the buffers are reused rather than allocated.
type x16Buf struct {
	q  []int8
	xs []x16Scale
}

var x16Bufs = sync.Pool{New: func() any { return new(x16Buf) }}

// grow returns the buffers at n codes and ns scales, reallocating only
// when they are too small.
func (b *x16Buf) grow(n, ns int) ([]int8, []x16Scale) {
	if cap(b.q) < n {
		b.q = make([]int8, n)
	}
	if cap(b.xs) < ns {
		b.xs = make([]x16Scale, ns)
	}
	return b.q[:n], b.xs[:ns]
}

// x16Tiles splits t input rows into kernel calls of 8, 4, 2 and 1 rows:
// pairs (first row, rows).
func x16Tiles(t int) [][2]int {
	var tiles [][2]int
	for r := 0; r < t; {
		n := x16Tile
		for n > t-r {
			n /= 2
		}
		tiles = append(tiles, [2]int{r, n})
		r += n
	}
	return tiles
}

// quantizeTile quantizes the n rows of x (in values each, ldx = in apart)
// to Q8_0 as the kernels take them: codes [nb][n][32] into q, each
// block's scale and offset sum (offset times its code sum) into xs.
func quantizeTile(q []int8, xs []x16Scale, x []float32, n, in int, offset int32) {
	for i := range n {
		quantizeRow(q[i*QBlock:], xs[i:], x[i*in:(i+1)*in], n, offset)
	}
}

// quantizeRow quantizes one row x into the tile layout: block b's codes
// at q[32·n·b:], its scale and offset sum at xs[n·b]. An assembly
// version replaces it where the sixteen-row kernels run.
var quantizeRow = quantizeRowGo

func quantizeRowGo(q []int8, xs []x16Scale, x []float32, n int, offset int32) {
	for b := range len(x) / QBlock {
		c := q[b*n*QBlock:][:QBlock]
		d := quantizeQ8Block(c, x[b*QBlock:(b+1)*QBlock])
		xs[b*n] = x16Scale{d: d, bias: offset * codeSum(c)}
	}
}

// x16Go is the kernels' arithmetic in Go: the reference the tests hold
// them to, with each block's integer sum exact and one float32 rounding
// per product of scales, as the kernels round.
func x16Go(q4 bool, nb, t int, x []int8, xs []x16Scale, w []byte, y []float32, ldy int) {
	bb := Q8_0BlockBytes
	if q4 {
		bb = Q4_0BlockBytes
	}
	for i := range t {
		var acc [groupRows]float32
		for b := range nb {
			blk := w[b*groupRows*bb:][:groupRows*bb]
			c := x[(b*t+i)*QBlock:][:QBlock]
			s := xs[b*t+i]
			for l := range groupRows {
				sum := s.bias
				for j := 0; j < bb-2; j += 4 {
					v := blk[x16At(j, l):][:4]
					for k := range 4 {
						if q4 {
							sum += int32(v[k]&15)*int32(c[j+k]) + int32(v[k]>>4)*int32(c[j+k+QBlock/2])
						} else {
							sum += int32(v[k]) * int32(c[j+k])
						}
					}
				}
				dw := half.FromF16(binary.LittleEndian.Uint16(blk[2*l:]))
				acc[l] += float32(sum) * (dw * s.d)
			}
		}
		copy(y[i*ldy:i*ldy+groupRows], acc[:])
	}
}
