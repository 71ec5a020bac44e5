package tensor

import (
	"math/bits"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
)

// GEMM is Goto-style: B is packed into panels of nr columns and A into
// panels of mr rows, KC deep, and an mr×nr micro-kernel (assembly where the
// CPU has it: 8×32 with AVX-512, 4×16 with AVX2+FMA; else Go) computes each
// tile of C. The assembly kernels can also read full A panels in place,
// which saves packing A when B is narrow. Tiles are spread over the
// workers, each tile written by one (a long K is cut into fixed spans, see
// gemmSplitK), so results depend neither on timing nor on how many workers
// there are.

// Tile shape of the micro-kernel in use (set with it at start-up), and the
// depth of a packed block.
var (
	mr = 4
	nr = 16
)

const (
	kc        = 256
	kcMax     = kc + kc/4 // the deepest float block: a k this far past kc is one block
	kcCompact = 1024      // kc for a compact, transposed B (see gemm)
	kcLazy    = 4096      // kc for a B stored transposed, packed lazily
	maxMR     = 8
	maxNR     = 32
)

// KernelName says which micro-kernel runs.
var KernelName = "go 4x16"

// microKernel adds alpha·A·B to the mr×nr tile at c (row stride ldc);
// with store it sets the tile to 0 + alpha·A·B, without reading it, as if
// it had been cleared first.
var microKernel = kernelGo

// directKernel, where the kernel in use has one, is microKernel reading A
// in place rather than packed: its element (i, p) is a[i·rs + p·cs], with
// one of rs and cs 1. The products are summed in the same order, so the
// results are those of the packed path, bit for bit.
var directKernel func(k int, a []float32, rs, cs int, b, c []float32, ldc int, alpha float32, store bool)

// kernelInfo describes a micro-kernel this CPU can run, for tests.
type kernelInfo struct {
	name   string
	mr, nr int
	fn     func(k int, a, b, c []float32, ldc int, alpha float32, store bool)
	direct func(k int, a []float32, rs, cs int, b, c []float32, ldc int, alpha float32, store bool)
}

// asmKernels lists the assembly kernels usable on this CPU.
var asmKernels []kernelInfo

// noAsm reports ZHLLAMA_NOASM=1, which forces the portable kernel.
func noAsm() bool { return os.Getenv("ZHLLAMA_NOASM") == "1" }

// kernelGo is the portable micro-kernel, for any tile shape.
func kernelGo(k int, a, b, c []float32, ldc int, alpha float32, store bool) {
	var acc [maxMR * maxNR]float32
	for p := 0; p < k; p++ {
		ap, bp := a[p*mr:p*mr+mr], b[p*nr:p*nr+nr]
		for i, av := range ap {
			row := acc[i*nr : i*nr+nr]
			for j, bv := range bp {
				row[j] += av * bv
			}
		}
	}
	for i := 0; i < mr; i++ {
		cr := c[i*ldc : i*ldc+nr]
		if store {
			clear(cr)
		}
		for j := range cr {
			cr[j] += alpha * acc[i*nr+j]
		}
	}
}

// bufPools hold float32 scratch reused across calls (getBuf, putBuf):
// GEMM's packed panels, AttentionBackward's dS, the cross-entropy's rows.
// Each holds one size class, four to a power of two, so that a small
// request never takes (and holds) a large buffer and a large one never
// finds only small ones to throw away: the calls of an attention step
// alternate between sizes thousands of times.
var bufPools [4 * 64]sync.Pool

// bufClass is the size class of n values and the capacity of its buffers:
// the least (4+m)·2^e ≥ n, m < 4.
func bufClass(n int) (class, size int) {
	if n <= 4 {
		return n, n
	}
	e := bits.Len(uint(n-1)) - 3 // (n−1) >> e is in [4, 8)
	m := (n - 1) >> e            // 4..7
	return 4*e + m, (m + 1) << e
}

func getBuf(n int) *[]float32 {
	class, size := bufClass(n)
	p, _ := bufPools[class].Get().(*[]float32)
	if p == nil {
		buf := make([]float32, size)
		p = &buf
	}
	*p = (*p)[:n]
	return p
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(p *[]float32) {
	class, _ := bufClass(cap(*p))
	bufPools[class].Put(p)
}

// edgePool holds the micro-kernels' scratch tiles for partial tiles at C's
// edges: the kernels are called through function values, so a tile on
// the stack would escape to the heap on every call.
var edgePool = sync.Pool{New: func() any { return new([maxMR * maxNR]float32) }}

// putEdge returns a worker's edge tile, if it took one, to edgePool.
func putEdge(edge **[maxMR * maxNR]float32) {
	if *edge != nil {
		edgePool.Put(*edge)
	}
}

// lazyGroup is how many panels of a B stored untransposed are packed
// together in gemm's lazy order (fewer where the workers would otherwise
// have under two groups each): a 7B layer's dy·W through NF4 runs 25–35%
// faster with 32 (1024 values, 512 bytes of an NF4 row, a call) than 8.
const lazyGroup = 32

// tGroup is how many panels of a float B stored transposed gemm's lazy
// order packs together (see gemm).
const tGroup = 8

// Gemm computes C = alpha·op(A)·op(B) + beta·C, where op transposes when
// asked; op(A) is M×K, op(B) is K×N and C is M×N with row stride ldc.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(false, dense, transA, m, n, k, alpha, a, lda, operand{f: b, ld: ldb, trans: transB}, beta, c, ldc)
}

// causality tells gemm which products causal attention lets it leave out.
type causality int

const (
	dense     causality = iota
	skipAbove           // C[i][j] past the diagonal (j > i) is not needed: tiles wholly past it are left as they were
	aLower              // op(A)[i][p] is zero for p > i: row i sums over p ≤ i
	aUpper              // op(A)[i][p] is zero for p < i: row i sums over p ≥ i
)

// gemmCausal is Gemm on the calling goroutine alone, for callers that
// already keep every worker busy (one attention head each), leaving out
// what causal says is zero or not needed. The products left out are exact
// zeros at either end of a sum, so what is computed equals Gemm's result.
func gemmCausal(causal causality, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(true, causal, transA, m, n, k, alpha, a, lda, operand{f: b, ld: ldb, trans: transB}, beta, c, ldc)
}

// operand is GEMM's B: float32 values f with row stride ld, or a compact
// Matrix m; trans says op(B) is its transpose.
type operand struct {
	f     []float32
	ld    int
	m     Matrix
	trans bool
}

func gemm(serial bool, causal causality, transA bool, m, n, k int, alpha float32, a []float32, lda int, b operand, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if causal == dense && b.m == nil && k >= splitK && m*n <= splitKMaxC {
		gemmSplitK(serial, transA, m, n, k, alpha, a, lda, b, beta, c, ldc)
		return
	}
	// With beta = 0 the first block's kernels store rather than add, and C
	// need not be cleared first.
	storeFirst := beta == 0 && k > 0 && alpha != 0 && !clearC
	if beta != 1 && !storeFirst {
		split(serial, m, 1, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				row := c[i*ldc : i*ldc+n]
				if beta == 0 {
					clear(row)
				} else {
					for j := range row {
						row[j] *= beta
					}
				}
			}
		})
	}
	if k == 0 || alpha == 0 {
		return
	}
	mp, np := (m+mr-1)/mr, (n+nr-1)/nr
	// Where the kernel can, and B is narrow, the full A panels are read in
	// place and only a partial last one is packed: the tiles then go A panel
	// by A panel, so each is read along all of B while it stays in L1, and
	// packing it would cost a pass over A for few B panels. A wide B's tiles
	// instead take each A panel from L2 once per B panel, for which the
	// packed panel's single stream does better (and its packing is
	// amortized over many B panels).
	rs, cs := lda, 1
	if transA {
		rs, cs = 1, lda
	}
	// A compact B stored transposed (x·Wᵀ through frozen weights) is
	// widened row by row, kd values of a row a call: deeper blocks make
	// those runs long enough to stream (at 256 values, 128 bytes of an NF4
	// row, the widening cost more than the kernels).
	kd := kc
	if b.m != nil && b.trans {
		kd = kcCompact
	}
	// A k a little past one block is taken whole: a thin last block would
	// cost a pass over all of C (read and written back) for few products.
	if k <= kd+kd/4 {
		kd = k
	}
	// A B too big for L2 is walked in the wide order (see tileAt). With A
	// at most one block of panels, a wide float B and any compact one
	// (frozen weights) are instead packed lazily, a group of panels at a
	// time into a buffer of the worker's, each group used at once by all
	// of A: packing B whole would write tens of MB (the LM head's, a
	// compact B's widened values) and read them back for little reuse.
	// Within a group each B panel is taken kc products at a time down all
	// the A panels, so the part in use stays in L1; those sub-blocks end
	// where a float B's blocks would, so the results are those of packing
	// B whole (and a compact B's those of its widened values), bit for
	// bit. A B stored transposed is then one panel a group, and its
	// blocks go deeper: fewer passes over C, longer runs of each B row.
	wide := np*nr*min(kd, k)*4 > wideB
	lazy := causal == dense && mp <= mcPanels && (b.m != nil || wide)
	if lazy && b.trans {
		kd = kcLazy
		if k <= kd+kd/4 {
			kd = k
		}
	}
	// A stored transposed (a weight's gradient, dyᵀ·x) with rows a page or
	// more apart (the LM head's, a vocabulary wide) is not read in place:
	// each panel would take its values from kk lines in as many pages, half
	// a line each, once per B panel, and lines a multiple of 4 KB apart
	// share a cache set, so they come from L3 every time. Instead each
	// worker packs a group of A panels at a time, reading each stored row's
	// span across the group in order, and runs the group's tiles while it
	// is in L2. Closer rows are read in place as before: packing them cost
	// more than it saved.
	groupA := transA && lda >= 1024 && causal == dense && !lazy
	full := 0 // A panels read in place (or, grouped, packed later): none packed up front
	switch {
	case groupA:
		full = mp
	case directKernel != nil && !wide:
		full = m / mr
	}
	abuf := getBuf((mp - full) * mr * kd)
	defer putBuf(abuf)
	ap := *abuf
	// A narrow B is packed by each worker into a buffer of its own, after
	// it claims its first tiles of the block, rather than once into one
	// that all the workers read: with the copy shared, a 2-thread GEMM
	// (2048×768×288 x·Wᵀ, 1024³) ran 25–35% slower, each core's kernel at
	// little more than half its one-thread speed, though the copy fits
	// either core's L2. The copies cost each worker a pass over B, which
	// the tiles it reads B for amortize.
	privateB := !serial && !lazy && !groupA && !wide && causal == dense && runtime.GOMAXPROCS(0) > 1
	var bp []float32
	if !lazy && !privateB {
		bbuf := getBuf(np * nr * kd)
		defer putBuf(bbuf)
		bp = *bbuf
	}
	sub := kd // products per kernel call in the lazy order
	if k > kcMax {
		sub = kc
	}
	var p0, kk int // the block in hand
	// tile adds the products klo..khi of block p0 (kk deep) to C's tile
	// (ti, tj) from the packed B panel bt (and the packed A panel at, or
	// with at nil A's panel in place or in ap), storing if store; edge is
	// the worker's scratch for partial tiles, taken when needed.
	tile := func(ti, tj, klo, khi int, store bool, at, bt []float32, edge **[maxMR * maxNR]float32) {
		i0, j0 := ti*mr, tj*nr
		if klo >= khi {
			if store {
				for i := i0; i < min(i0+mr, m); i++ {
					clear(c[i*ldc+j0 : i*ldc+min(j0+nr, n)])
				}
			}
			return
		}
		kn, bk := khi-klo, bt[klo*nr:]
		if at != nil {
			if j0+nr <= n && i0+mr <= m {
				microKernel(kn, at[klo*mr:], bk, c[i0*ldc+j0:], ldc, alpha, store)
				return
			}
		} else if j0+nr <= n {
			switch {
			case ti < full:
				directKernel(kn, a[i0*rs+(p0+klo)*cs:], rs, cs, bk, c[i0*ldc+j0:], ldc, alpha, store)
				return
			case i0+mr <= m:
				microKernel(kn, ap[(ti-full)*mr*kk+klo*mr:(ti-full+1)*mr*kk], bk, c[i0*ldc+j0:], ldc, alpha, store)
				return
			}
		}
		// A partial tile at the edge: compute into a full scratch tile.
		if *edge == nil {
			*edge = edgePool.Get().(*[maxMR * maxNR]float32)
		}
		e := *edge
		if at != nil {
			microKernel(kn, at[klo*mr:], bk, e[:], nr, alpha, true)
		} else if ti < full {
			directKernel(kn, a[i0*rs+(p0+klo)*cs:], rs, cs, bk, e[:], nr, alpha, true)
		} else {
			microKernel(kn, ap[(ti-full)*mr*kk+klo*mr:(ti-full+1)*mr*kk], bk, e[:], nr, alpha, true)
		}
		for i := i0; i < min(i0+mr, m); i++ {
			for j := j0; j < min(j0+nr, n); j++ {
				v := c[i*ldc+j]
				if store {
					v = 0
				}
				c[i*ldc+j] = v + e[(i-i0)*nr+j-j0]
			}
		}
	}
	for p0 = 0; p0 < k; p0 += kd {
		kk = min(kd, k-p0)
		store := storeFirst && p0 == 0
		packA(serial, ap, a, lda, transA, m, p0, kk, full)
		if lazy {
			// A B stored untransposed is taken a row's span over the group
			// at a time.
			group := 1
			// A float B stored transposed and no deeper than one kernel
			// call (the LM head's Wᵀ) takes a few panels a group too, and
			// each A panel goes along the group's panels in turn: C is then
			// written a row's 8 tiles together rather than one tile down
			// every row (rows 128 KB apart in the LM head's logits), and
			// the group's panels, 36 KB each, stay in L2 (256×32000×288:
			// 98–127 → 137–151 GFLOP/s on 2 threads, alternated).
			byRow := b.trans && b.m == nil && sub >= kk
			switch {
			case !b.trans:
				group = max(1, min(lazyGroup, np/(2*runtime.GOMAXPROCS(0))))
			case byRow:
				group = max(1, min(tGroup, np/(8*runtime.GOMAXPROCS(0))))
			}
			split(serial, (np+group-1)/group, 4, func(lo, hi int) {
				var edge *[maxMR * maxNR]float32
				buf := getBuf(group * nr * kk)
				scratch := getBuf(max(8*kk, group*nr))
				defer putEdge(&edge)
				defer putBuf(scratch)
				defer putBuf(buf)
				for g := lo; g < hi; g++ {
					pj0, pj1 := g*group, min(np, (g+1)*group)
					packBPanels(*buf, b, n, p0, kk, pj0, pj1, *scratch)
					if byRow {
						for ti := range mp {
							for tj := pj0; tj < pj1; tj++ {
								tile(ti, tj, 0, kk, store, nil, (*buf)[(tj-pj0)*nr*kk:(tj-pj0+1)*nr*kk], &edge)
							}
						}
						continue
					}
					for tj := pj0; tj < pj1; tj++ {
						bt := (*buf)[(tj-pj0)*nr*kk : (tj-pj0+1)*nr*kk]
						for s0 := 0; s0 < kk; s0 += sub {
							for ti := range mp {
								tile(ti, tj, s0, min(kk, s0+sub), store && s0 == 0, nil, bt, &edge)
							}
						}
					}
				}
			})
			continue
		}
		if privateB {
			// Tiles are claimed an A panel's row of them at a time (so
			// each A panel is read by one core), and a worker the machine
			// pauses leaves the rest to the others.
			var next atomic.Int64
			claim := max(4, np)
			split(serial, runtime.GOMAXPROCS(0), 1, func(_, _ int) {
				var edge *[maxMR * maxNR]float32
				var buf *[]float32
				defer putEdge(&edge)
				defer func() {
					if buf != nil {
						putBuf(buf)
					}
				}()
				for {
					t0 := int(next.Add(int64(claim))) - claim
					if t0 >= mp*np {
						return
					}
					if buf == nil {
						buf = getBuf(np * nr * kk)
						packB(true, *buf, b, n, p0, kk)
					}
					for t := t0; t < min(t0+claim, mp*np); t++ {
						ti, tj := t/np, t%np
						tile(ti, tj, 0, kk, store, nil, (*buf)[tj*nr*kk:(tj+1)*nr*kk], &edge)
					}
				}
			})
			continue
		}
		packB(serial, bp, b, n, p0, kk)
		if groupA {
			// Groups small enough that every worker gets a few.
			group := max(1, min(aGroup, mp/(4*runtime.GOMAXPROCS(0))))
			split(serial, (mp+group-1)/group, 2, func(lo, hi int) {
				var edge *[maxMR * maxNR]float32
				buf := getBuf(group * mr * kk)
				defer putEdge(&edge)
				defer putBuf(buf)
				for g := lo; g < hi; g++ {
					pi0, pi1 := g*group, min(mp, (g+1)*group)
					packATGroup(*buf, a, lda, m, p0, kk, pi0, pi1)
					// Each B panel down the group, so that it is read
					// from L2 once and the group's panels stream past it.
					for tj := range np {
						for ti := pi0; ti < pi1; ti++ {
							at := (*buf)[(ti-pi0)*mr*kk : (ti-pi0+1)*mr*kk]
							tile(ti, tj, 0, kk, store, at, bp[tj*nr*kk:(tj+1)*nr*kk], &edge)
						}
					}
				}
			})
			continue
		}
		// Tiles are claimed a few at a time, so that a worker the machine
		// pauses (a virtual CPU the host takes away) leaves its share to
		// the others rather than holding up the call.
		split(serial, mp*np, 4, func(lo, hi int) {
			var edge *[maxMR * maxNR]float32
			defer putEdge(&edge)
			for t := lo; t < hi; t++ {
				ti, tj := tileAt(t, mp, np, wide)
				i0, j0 := ti*mr, tj*nr
				klo, khi := 0, kk // the products this tile needs, within the block
				switch causal {
				case skipAbove:
					if j0 >= i0+mr {
						continue
					}
				case aLower:
					khi = min(kk, i0+mr-p0)
				case aUpper:
					klo = max(0, i0-p0)
				}
				tile(ti, tj, klo, khi, store, nil, bp[tj*nr*kk:(tj+1)*nr*kk], &edge)
			}
		})
	}
}

// A long product onto a small C (the LM head's input gradient, 256×288
// summed over a 32000-piece vocabulary) is cut into splitParts spans of K,
// each a serial GEMM of its own on one worker, added up in order at the
// end: split by tiles, each of its 125 blocks of K would pack B and wait
// for the workers twice, and every worker would read all of B (W, 37 MB)
// to pack its copy. The spans are the same for any number of workers
// (one included), so the results are too.
const (
	splitK     = 8192
	splitKMaxC = 1 << 20 // values of C, for the spans' partial sums
	splitParts = 4
)

// gemmSplitK is gemm for a long K: C = alpha·op(A)·op(B) + beta·C as the
// sum of splitParts products over spans of K.
func gemmSplitK(serial, transA bool, m, n, k int, alpha float32, a []float32, lda int, b operand, beta float32, c []float32, ldc int) {
	part := (k + splitParts - 1) / splitParts
	sums := getBuf((splitParts - 1) * m * n)
	defer putBuf(sums)
	split(serial, splitParts, 1, func(lo, hi int) {
		for s := lo; s < hi; s++ {
			p0, p1 := s*part, min(k, (s+1)*part)
			as := a[p0:]
			if transA {
				as = a[p0*lda:]
			}
			bs := b
			if b.trans {
				bs.f = b.f[p0:]
			} else {
				bs.f = b.f[p0*b.ld:]
			}
			if s == 0 {
				gemm(true, dense, transA, m, n, p1-p0, alpha, as, lda, bs, beta, c, ldc)
				continue
			}
			gemm(true, dense, transA, m, n, p1-p0, alpha, as, lda, bs, 0, (*sums)[(s-1)*m*n:s*m*n], n)
		}
	})
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		for s := 1; s < splitParts; s++ {
			for j, v := range (*sums)[(s-1)*m*n+i*n : (s-1)*m*n+(i+1)*n] {
				row[j] += v
			}
		}
	}
}

// clearC makes gemm clear C for beta = 0 rather than have the kernels store
// into it, for tests comparing the two.
var clearC = false

// mcPanels is how many A panels a block of tiles shares when B is wide:
// the block's A (mcPanels·mr rows × kc) stays in L2 while every B panel
// passes it once.
const mcPanels = 32

// wideB is the packed B size (bytes) past which it no longer stays in L2.
const wideB = 1 << 20

// tileAt is tile t's panel coordinates in the order the workers take
// them. A narrow B stays in L2: walk A panel by A panel, each along all B
// panels, so C is written row band by row band. A wide B (the LM head's)
// would then stream from memory once per A panel; instead take blocks of
// mcPanels A panels and, within a block, B panel by B panel down the
// block's A panels, so each B panel is read from memory once per block.
func tileAt(t, mp, np int, wide bool) (ti, tj int) {
	if !wide {
		return t / np, t % np
	}
	blk := t / (mcPanels * np)
	size := min(mcPanels, mp-blk*mcPanels)
	r := t - blk*mcPanels*np
	return blk*mcPanels + r%size, r / size
}

// packA lays rows of op(A)[:, p0:p0+kk] out as panels of mr rows, each as
// kk groups of mr values, from panel first on (panel first at dst[0]); rows
// past m are zero.
func packA(serial bool, dst, a []float32, lda int, trans bool, m, p0, kk, first int) {
	mp := (m + mr - 1) / mr
	split(serial, mp-first, 1, func(lo, hi int) {
		for pi := lo + first; pi < hi+first; pi++ {
			panel := dst[(pi-first)*mr*kk : (pi-first+1)*mr*kk]
			rows := min(mr, m-pi*mr) // rows past m are zero
			if trans {
				// Row p of the panel is a contiguous run of the stored matrix.
				if rows == 8 && mr == 8 {
					for p := range kk {
						at := (p0+p)*lda + pi*8
						*(*[8]float32)(panel[p*8 : p*8+8]) = *(*[8]float32)(a[at : at+8])
					}
					continue
				}
				for p := 0; p < kk; p++ {
					out := panel[p*mr : p*mr+mr]
					copy(out, a[(p0+p)*lda+pi*mr:(p0+p)*lda+pi*mr+rows])
					clear(out[rows:])
				}
				continue
			}
			if rows == 8 && mr == 8 {
				// Eight rows read side by side, each in order: eight streams the
				// prefetcher follows, one panel row written at a time.
				base := pi*mr*lda + p0
				r0, r1, r2, r3 := a[base:base+kk], a[base+lda:base+lda+kk], a[base+2*lda:base+2*lda+kk], a[base+3*lda:base+3*lda+kk]
				r4, r5, r6, r7 := a[base+4*lda:base+4*lda+kk], a[base+5*lda:base+5*lda+kk], a[base+6*lda:base+6*lda+kk], a[base+7*lda:base+7*lda+kk]
				for p := range kk {
					out := (*[8]float32)(panel[p*8 : p*8+8])
					out[0], out[1], out[2], out[3] = r0[p], r1[p], r2[p], r3[p]
					out[4], out[5], out[6], out[7] = r4[p], r5[p], r6[p], r7[p]
				}
				continue
			}
			for r := 0; r < mr; r++ {
				if r >= rows {
					for p := 0; p < kk; p++ {
						panel[p*mr+r] = 0
					}
					continue
				}
				i := pi*mr + r
				row := a[i*lda+p0 : i*lda+p0+kk]
				for p, v := range row {
					panel[p*mr+r] = v
				}
			}
		}
	})
}

// aGroup is how many A panels a worker packs at once where A is stored
// transposed: 512 KB at kc, which stays in L2 while the group's tiles run,
// and rows' runs of 2 KB, long enough for the prefetcher (8 panels, 256
// bytes a row, packed at half the speed).
const aGroup = 64

// packATGroup packs panels pi0..pi1 of op(A)[:, p0:p0+kk] where A is
// stored transposed (op(A)[i][p] = a[p·lda+i]), as packA does, into dst
// (panel pi0 at dst[0]): row p's values for the whole group are one run of
// the stored matrix, read in order. A partial last panel's rows past m are
// left as they were: they only reach rows of an edge tile that are dropped.
func packATGroup(dst, a []float32, lda, m, p0, kk, pi0, pi1 int) {
	i0, i1 := pi0*mr, min(m, pi1*mr)
	for p := range kk {
		src := a[(p0+p)*lda+i0 : (p0+p)*lda+i1]
		if mr == 8 {
			q := 0
			for ; q+8 <= len(src); q += 8 {
				// Element by element: an array assignment calls memmove.
				d, s := (*[8]float32)(dst[(q/8)*8*kk+p*8:]), (*[8]float32)(src[q:])
				d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7] = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
			}
			if q < len(src) {
				copy(dst[(q/8)*8*kk+p*8:], src[q:])
			}
			continue
		}
		for q := 0; q < len(src); q += mr {
			copy(dst[(q/mr)*mr*kk+p*mr:(q/mr)*mr*kk+p*mr+mr], src[q:])
		}
	}
}

// packB lays columns of op(B)[p0:p0+kk, :] out as panels of nr columns,
// each as kk rows of nr; columns past n are zero.
func packB(serial bool, dst []float32, b operand, n, p0, kk int) {
	np := (n + nr - 1) / nr
	if b.m == nil && !b.trans {
		// Float rows dealt out to the panels a row at a time, the workers
		// taking spans of rows: each reads its span of B in order, which
		// the prefetcher follows (panel by panel would read every row
		// np times, a piece each, at B's row stride).
		split(serial, kk, 1, func(lo, hi int) {
			for p := lo; p < hi; p++ {
				row := b.f[(p0+p)*b.ld : (p0+p)*b.ld+n]
				pj := 0
				if nr == 32 && dealRow32 != nil {
					// Whole panels in one call: a copy call per 128 bytes
					// cost as much as the copying.
					pj = n / 32
					dealRow32(row[:pj*32], dst[p*32:], 32*kk)
				}
				for ; pj < np; pj++ {
					out := dst[pj*nr*kk+p*nr : pj*nr*kk+(p+1)*nr]
					clear(out[copy(out, row[pj*nr:min(n, (pj+1)*nr)]):])
				}
			}
		})
		return
	}
	split(serial, np, 1, func(lo, hi int) {
		scratch := getBuf(max(8*kk, (hi-lo)*nr))
		packBPanels(dst[lo*nr*kk:], b, n, p0, kk, lo, hi, *scratch)
		putBuf(scratch)
	})
}

// dealRow32, where the CPU has AVX-512, copies row (whole panels of 32)
// to dst, dst[stride:], dst[2·stride:] …, 32 values each.
var dealRow32 func(row, dst []float32, stride int)

// packBPanels lays panels lo..hi of op(B)[p0:p0+kk, :] out from dst[0];
// scratch holds max(8·kk, (hi−lo)·nr) values.
func packBPanels(dst []float32, b operand, n, p0, kk, lo, hi int, scratch []float32) {
	if !b.trans {
		// Take each stored row's span over the panels (a compact one
		// widened in one call: the compact formats widen long runs
		// fastest), then deal it out; NF4's whole blocks are widened
		// straight into the panels.
		c0, c1 := lo*nr, min(n, hi*nr)
		nf, _ := b.m.(*NF4)
		for p := 0; p < kk; p++ {
			from := c0 // the columns from here on are dealt out of a row
			if w := (c1 - c0) &^ (nf4Block - 1); nf != nil && nr == 32 && w > 0 && nf.widenPanels(dst[p*32:], 32*kk, p0+p, c0, w) {
				from += w
			}
			if from == c1 {
				continue
			}
			row := scratch[:c1-from]
			if b.m != nil {
				b.m.Widen(row, p0+p, from)
			} else {
				row = b.f[(p0+p)*b.ld+from : (p0+p)*b.ld+c1]
			}
			for pj := from / nr; pj < hi; pj++ {
				out := dst[(pj-lo)*nr*kk+p*nr : (pj-lo)*nr*kk+(p+1)*nr]
				clear(out[copy(out, row[pj*nr-from:min(len(row), (pj+1)*nr-from)]):])
			}
		}
		return
	}
	for pj := lo; pj < hi; pj++ {
		packBPanel(dst[(pj-lo)*nr*kk:(pj-lo+1)*nr*kk], b, n, p0, kk, pj, scratch[:8*kk])
	}
}

// packBPanel lays panel pj of op(B)[p0:p0+kk, :] out in panel, for a B
// stored transposed, float or compact; rows is scratch of 8·kk values for
// a compact one.
func packBPanel(panel []float32, b operand, n, p0, kk, pj int, rows []float32) {
	j0 := pj * nr
	w := min(nr, n-j0)
	// NF4 rows are widened and transposed in one pass, 16 at a time, where
	// the kernel can.
	if nf, ok := b.m.(*NF4); ok && w == nr && nr%16 == 0 && nf.widenT(panel, nr, j0, p0, kk) {
		for j := 16; j < nr; j += 16 {
			nf.widenT(panel[j:], nr, j0+j, p0, kk)
		}
		return
	}
	// Column j of op(B) is a contiguous row of the stored matrix: read
	// eight such rows in order (widening them if compact) and transpose
	// them into the panel, 8×8 at a time.
	for j := 0; j < w; j += 8 {
		jn := min(8, w-j)
		src, lds := rows, kk
		if b.m != nil {
			for r := range jn {
				b.m.Widen(rows[r*kk:(r+1)*kk], j0+j+r, p0)
			}
		} else {
			src, lds = b.f[(j0+j)*b.ld+p0:], b.ld
		}
		p := 0
		if jn == 8 {
			for ; p+8 <= kk; p += 8 {
				transpose8(src[p:], lds, panel[p*nr+j:], nr)
			}
		}
		for r := range jn {
			for q, v := range src[r*lds+p : r*lds+kk] {
				panel[(p+q)*nr+j+r] = v
			}
		}
	}
	for p := 0; p < kk; p++ {
		clear(panel[p*nr+w : p*nr+nr])
	}
}

// Linear computes y[T×out] = x[T×in] · Wᵀ for W[out×in], as nn.Linear does.
func Linear(y, x, w []float32, t, in, out int) {
	if t <= gemvRows {
		gemvF32(y, x, w, t, in, out)
		return
	}
	Gemm(false, true, t, out, in, 1, x, in, w, in, 0, y, out)
}

// LinearBackward adds to dx (if not nil) dy·W and to dw (if not nil) dyᵀ·x.
func LinearBackward(dx, dw, dy, x, w []float32, t, in, out int) {
	if dx != nil {
		Gemm(false, false, t, in, out, 1, dy, out, w, in, 1, dx, in)
	}
	if dw != nil {
		Gemm(true, false, out, in, t, 1, dy, out, x, in, 1, dw, in)
	}
}
