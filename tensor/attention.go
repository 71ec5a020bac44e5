package tensor

import "math"

// Attention is causal self-attention for nb sequences of t positions side
// by side, with grouped key/value heads: q and out are
// [nb × t × heads × hd], k and v [nb × t × kvHeads × hd], and query head h
// reads key/value head h / (heads/kvHeads). valid [nb × t], when not nil,
// marks which positions may be attended to (padding is false). probs
// [nb × heads × t × t] keeps the attention weights for the backward pass
// (zero past the diagonal). Each (sequence, key/value head) pair is one
// task on one worker, its heads in order, so the results do not depend on
// the number of workers; per head, scores and outputs are GEMMs over the
// interleaved rows that leave out what the causal mask zeroes.
func Attention(out, probs, q, k, v []float32, valid []bool, nb, t, heads, kvHeads, hd int) {
	group := heads / kvHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	qs, ks := heads*hd, kvHeads*hd // row strides
	ParallelFine(nb*kvHeads, func(lo, hi int) {
		for task := lo; task < hi; task++ {
			b, kh := task/kvHeads, task%kvHeads
			qb, kb, vb, ob := q[b*t*qs:], k[b*t*ks:], v[b*t*ks:], out[b*t*qs:]
			var val []bool
			if valid != nil {
				val = valid[b*t : (b+1)*t]
			}
			for h := kh * group; h < (kh+1)*group; h++ {
				p := probs[(b*heads+h)*t*t : (b*heads+h+1)*t*t]
				gemmCausal(skipAbove, false, true, t, t, hd, scale, qb[h*hd:], qs, kb[kh*hd:], ks, 0, p, t)
				for i := range t {
					softmaxCausal(p[i*t:(i+1)*t], i, val)
				}
				gemmCausal(aLower, false, false, t, hd, t, 1, p, t, vb[kh*hd:], ks, 0, ob[h*hd:], qs)
			}
		}
	})
}

// softmaxCausal turns row i of the scores into attention weights over keys
// 0..i (those valid marks, when not nil) and zeroes the rest.
func softmaxCausal(row []float32, i int, valid []bool) {
	seen := row[:i+1]
	clear(row[i+1:])
	var mx float32
	if valid == nil {
		mx = rowMax(seen)
	} else {
		mx = float32(math.Inf(-1))
		for j, ok := range valid[:i+1] {
			if !ok {
				seen[j] = float32(math.Inf(-1)) // exp gives 0
			} else {
				mx = max(mx, seen[j])
			}
		}
	}
	if math.IsInf(float64(mx), -1) {
		clear(row) // a query that may see nothing
		return
	}
	sum := expSub(seen, seen, mx)
	scal(seen, float32(1/sum))
}

// AttentionBackward adds to dq, dk and dv the gradients given dout, for
// Attention's batch: dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)),
// dQ += dS·K·scale, dK += dSᵀ·Q·scale. As in Attention, each (sequence,
// key/value head) is one task, its heads in order, and the products leave
// out what the causal mask zeroes.
func AttentionBackward(dq, dk, dv, dout, probs, q, k, v []float32, nb, t, heads, kvHeads, hd int) {
	group := heads / kvHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	qs, ks := heads*hd, kvHeads*hd
	ParallelFine(nb*kvHeads, func(lo, hi int) {
		buf := getBuf(t * t) // dS, one head at a time
		defer putBuf(buf)
		ds := *buf
		for task := lo; task < hi; task++ {
			b, kh := task/kvHeads, task%kvHeads
			qb, kb, vb, dob := q[b*t*qs:], k[b*t*ks:], v[b*t*ks:], dout[b*t*qs:]
			dqb, dkb, dvb := dq[b*t*qs:], dk[b*t*ks:], dv[b*t*ks:]
			for h := kh * group; h < (kh+1)*group; h++ {
				p := probs[(b*heads+h)*t*t : (b*heads+h+1)*t*t]
				gemmCausal(aUpper, true, false, t, hd, t, 1, p, t, dob[h*hd:], qs, 1, dvb[kh*hd:], ks)
				gemmCausal(skipAbove, false, true, t, t, hd, 1, dob[h*hd:], qs, vb[kh*hd:], ks, 0, ds, t)
				for i := range t {
					pr, dr := p[i*t:i*t+i+1], ds[i*t:i*t+i+1]
					var dot float32
					for j, pv := range pr {
						dot += pv * dr[j]
					}
					for j, pv := range pr {
						dr[j] = pv * (dr[j] - dot)
					}
					clear(ds[i*t+i+1 : (i+1)*t])
				}
				gemmCausal(aLower, false, false, t, hd, t, scale, ds, t, kb[kh*hd:], ks, 1, dqb[h*hd:], qs)
				gemmCausal(aUpper, true, false, t, hd, t, scale, ds, t, qb[h*hd:], qs, 1, dkb[kh*hd:], ks)
			}
		}
	})
}

// CachedAttention is Attention for n new queries at positions start,
// start+1, ... over cached keys and values holding positions 0..start+n-1
// ([positions × kvHeads × hd]); nothing is kept for a backward pass.
func CachedAttention(out, q, keys, vals []float32, start, n, heads, kvHeads, hd int) {
	CachedAttentionSeqs([]CachedSeq{{Out: out, Q: q, Keys: keys, Vals: vals, Start: start, N: n}}, heads, kvHeads, hd)
}

// CachedSeq is one sequence's part of a CachedAttentionSeqs call.
// Stride, when not 0, says Keys and Vals are laid out head by head: key
// position j of head h at h·Stride + j·hd (kvcache's layout, in which
// one head's keys are one run of memory); 0 is CachedAttention's
// [positions × kvHeads × hd]. Keys16 and Vals16, when set, hold the keys
// and values as IEEE float16 in place of Keys and Vals, in the same
// layout.
type CachedSeq struct {
	Out, Q, Keys, Vals []float32
	Keys16, Vals16     []uint16
	Start, N, Stride   int
}

// strides returns the distances between a sequence's key positions and
// between its heads.
func (s *CachedSeq) strides(kvHeads, hd int) (pos, head int) {
	if s.Stride != 0 {
		return hd, s.Stride
	}
	return kvHeads * hd, hd
}

// CachedAttentionSeqs is CachedAttention for several sequences at once:
// every (sequence, head) pair is one piece of work for the pool, so a
// decoding step of many short sequences keeps every core busy with one
// hand-off instead of one per sequence. Each output is computed as
// CachedAttention computes it.
func CachedAttentionSeqs(seqs []CachedSeq, heads, kvHeads, hd int) {
	group := heads / kvHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	var few []CachedSeq
	for _, s := range seqs {
		if s.N >= promptRows {
			promptAttention(s, heads, kvHeads, hd, scale)
		} else {
			few = append(few, s)
		}
	}
	seqs = few
	most := 0
	for _, s := range seqs {
		most = max(most, s.Start+s.N)
	}
	Parallel(len(seqs)*heads, func(lo, hi int) {
		scores := make([]float32, most)
		for w := lo; w < hi; w++ {
			sq, h := &seqs[w/heads], w%heads
			ks, hs := sq.strides(kvHeads, hd)
			kh := h / group
			for i := 0; i < sq.N; i++ {
				n := sq.Start + i + 1 // causal: keys 0..Start+i
				qi := sq.Q[(i*heads+h)*hd : (i*heads+h+1)*hd]
				s := scores[:n]
				// Eight, then four keys share each load of the query.
				j := 0
				if sq.Keys16 != nil {
					keys := sq.Keys16[kh*hs:]
					for ; j+8 <= n; j += 8 {
						dot8F16(qi, keys[j*ks:], ks, (*[8]float32)(s[j:j+8]))
					}
					for ; j < n; j++ {
						s[j] = dotF16(qi, keys[j*ks:j*ks+hd])
					}
				} else {
					keys := sq.Keys[kh*hs:]
					for ; j+8 <= n; j += 8 {
						dot8(qi, keys[j*ks:], ks, (*[8]float32)(s[j:j+8]))
					}
					for ; j+4 <= n; j += 4 {
						dot4(qi, keys[j*ks:], ks, (*[4]float32)(s[j:j+4]))
					}
					for ; j < n; j++ {
						s[j] = dot(qi, keys[j*ks:j*ks+hd])
					}
				}
				scal(s, scale)
				sum := expSub(s, s, rowMax(s))
				oi := sq.Out[(i*heads+h)*hd : (i*heads+h+1)*hd]
				if sq.Vals16 != nil {
					wsumF16(s, sq.Vals16[kh*hs:], ks, oi)
				} else {
					wsum(s, sq.Vals[kh*hs:], ks, oi)
				}
				scal(oi, float32(1/sum))
			}
		}
	})
}

// headKV returns kv head kh's keys and values as float32 rows ld apart:
// in place, or, from a float16 cache, the first n positions widened into
// buf (2·n·hd values; a prompt does enough work per key that the copy is
// small beside it).
func (s *CachedSeq) headKV(kh, kvHeads, hd, n int, buf []float32) (keys, vals []float32, ld int) {
	ks, hs := s.strides(kvHeads, hd)
	if s.Keys16 == nil {
		return s.Keys[kh*hs:], s.Vals[kh*hs:], ks
	}
	keys, vals = buf[:n*hd], buf[n*hd:2*n*hd]
	k16, v16 := s.Keys16[kh*hs:], s.Vals16[kh*hs:]
	if ks == hd { // the head's positions are one run
		widenF16(keys, k16)
		widenF16(vals, v16)
		return keys, vals, hd
	}
	for j := range n {
		widenF16(keys[j*hd:(j+1)*hd], k16[j*ks:])
		widenF16(vals[j*hd:(j+1)*hd], v16[j*ks:])
	}
	return keys, vals, hd
}

const (
	// promptRows is the fewest new queries of a sequence that
	// CachedAttentionSeqs takes through promptAttention.
	promptRows = 16
	// promptBlock bounds the queries whose scores are held at once.
	promptBlock = 256
)

// promptAttention is CachedAttentionSeqs for one sequence with many new
// queries (a prompt), computed as Attention computes it: per head, the
// scores of up to promptBlock queries against every key the last of them
// sees are one GEMM, each row is normalised over the keys its query may
// see (the rest cleared), and the weighted sums are one more GEMM.
func promptAttention(s CachedSeq, heads, kvHeads, hd int, scale float32) {
	group := heads / kvHeads
	qs := heads * hd // query row stride
	total := s.Start + s.N
	if s.Start == 0 && s.N <= promptBlock {
		// A prompt from the first position: the queries' diagonal is the
		// keys', so, as in Attention, each head is one task and its GEMMs
		// leave out the scores past the diagonal and the zero weights
		// there — exact zeros at the end of each sum, so the results are
		// those of the dense GEMMs below — for half the products and none
		// of the waits for the workers between one head's steps. A float16
		// cache is widened by each task, a head at a time.
		n := s.N
		ParallelFine(heads, func(lo, hi int) {
			buf := getBuf(n*n + 2*n*hd)
			defer putBuf(buf)
			p, kvb := (*buf)[:n*n], (*buf)[n*n:]
			var keys, vals []float32
			ld, last := 0, -1
			for h := lo; h < hi; h++ {
				if kh := h / group; kh != last {
					keys, vals, ld = s.headKV(kh, kvHeads, hd, n, kvb)
					last = kh
				}
				gemmCausal(skipAbove, false, true, n, n, hd, scale, s.Q[h*hd:], qs, keys, ld, 0, p, n)
				for i := range n {
					softmaxCausal(p[i*n:(i+1)*n], i, nil)
				}
				gemmCausal(aLower, false, false, n, hd, n, 1, p, n, vals, ld, 0, s.Out[h*hd:], qs)
			}
		})
		return
	}
	// Otherwise each head's GEMMs run on all the workers, the float16
	// cache widened first, a head a worker.
	var kv *[]float32
	if s.Keys16 != nil {
		kv = getBuf(kvHeads * 2 * total * hd)
		defer putBuf(kv)
	}
	keys, vals := make([][]float32, kvHeads), make([][]float32, kvHeads)
	lds := make([]int, kvHeads)
	Parallel(kvHeads, func(lo, hi int) {
		for kh := lo; kh < hi; kh++ {
			var b []float32
			if kv != nil {
				b = (*kv)[kh*2*total*hd:]
			}
			keys[kh], vals[kh], lds[kh] = s.headKV(kh, kvHeads, hd, total, b)
		}
	})
	p := make([]float32, min(s.N, promptBlock)*total)
	for i0 := 0; i0 < s.N; i0 += promptBlock {
		rows := min(promptBlock, s.N-i0)
		nk := s.Start + i0 + rows // the keys the block's last query sees
		for h := range heads {
			kh := h / group
			Gemm(false, true, rows, nk, hd, scale, s.Q[i0*qs+h*hd:], qs, keys[kh], lds[kh], 0, p, nk)
			Parallel(rows, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					row := p[i*nk : (i+1)*nk]
					seen := row[:s.Start+i0+i+1] // causal
					clear(row[len(seen):])
					sum := expSub(seen, seen, rowMax(seen))
					scal(seen, float32(1/sum))
				}
			})
			Gemm(false, false, rows, hd, nk, 1, p, nk, vals[kh], lds[kh], 0, s.Out[i0*qs+h*hd:], qs)
		}
	}
}
