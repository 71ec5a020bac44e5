package tensor

import "math"

// Attention is causal self-attention for one sequence with grouped
// key/value heads: q and out are [T × heads × hd], k and v [T × kvHeads × hd],
// and query head h reads key/value head h / (heads/kvHeads). valid, when
// not nil, marks which positions may be attended to (padding is false).
// probs [heads × T × T] keeps the attention weights for the backward pass.
func Attention(out, probs, q, k, v []float32, valid []bool, t, heads, kvHeads, hd int) {
	group := heads / kvHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	Parallel(heads, func(lo, hi int) {
		for h := lo; h < hi; h++ {
			kh := h / group
			for i := 0; i < t; i++ {
				p := probs[(h*t+i)*t : (h*t+i+1)*t]
				qi := q[(i*heads+h)*hd : (i*heads+h+1)*hd]
				mx := float32(math.Inf(-1))
				for j := 0; j < t; j++ {
					if j > i || valid != nil && !valid[j] {
						p[j] = float32(math.Inf(-1))
						continue
					}
					kj := k[(j*kvHeads+kh)*hd : (j*kvHeads+kh+1)*hd]
					var s float32
					for d := range qi {
						s += qi[d] * kj[d]
					}
					p[j] = s * scale
					mx = max(mx, p[j])
				}
				var sum float32
				for j := 0; j < t; j++ {
					if math.IsInf(float64(p[j]), -1) {
						p[j] = 0
						continue
					}
					p[j] = float32(math.Exp(float64(p[j] - mx)))
					sum += p[j]
				}
				oi := out[(i*heads+h)*hd : (i*heads+h+1)*hd]
				clear(oi)
				if sum == 0 {
					continue // a padded query sees nothing
				}
				for j := 0; j < t; j++ {
					p[j] /= sum
					if p[j] == 0 {
						continue
					}
					vj := v[(j*kvHeads+kh)*hd : (j*kvHeads+kh+1)*hd]
					for d := range oi {
						oi[d] += p[j] * vj[d]
					}
				}
			}
		}
	})
}

// AttentionBackward adds to dq, dk and dv the gradients given dout. Work is
// split by key/value head, so each gradient element has one writer.
func AttentionBackward(dq, dk, dv, dout, probs, q, k, v []float32, t, heads, kvHeads, hd int) {
	group := heads / kvHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	Parallel(kvHeads, func(lo, hi int) {
		dp := make([]float32, t)
		for kh := lo; kh < hi; kh++ {
			for h := kh * group; h < (kh+1)*group; h++ {
				for i := 0; i < t; i++ {
					p := probs[(h*t+i)*t : (h*t+i+1)*t]
					doi := dout[(i*heads+h)*hd : (i*heads+h+1)*hd]
					var dot float32 // Σ_j p_j · dp_j
					for j := 0; j <= i; j++ {
						if p[j] == 0 {
							dp[j] = 0
							continue
						}
						vj := v[(j*kvHeads+kh)*hd : (j*kvHeads+kh+1)*hd]
						dvj := dv[(j*kvHeads+kh)*hd : (j*kvHeads+kh+1)*hd]
						var s float32
						for d := range doi {
							s += doi[d] * vj[d]
							dvj[d] += p[j] * doi[d]
						}
						dp[j] = s
						dot += p[j] * s
					}
					qi := q[(i*heads+h)*hd : (i*heads+h+1)*hd]
					dqi := dq[(i*heads+h)*hd : (i*heads+h+1)*hd]
					for j := 0; j <= i; j++ {
						if p[j] == 0 {
							continue
						}
						ds := p[j] * (dp[j] - dot) * scale
						kj := k[(j*kvHeads+kh)*hd : (j*kvHeads+kh+1)*hd]
						dkj := dk[(j*kvHeads+kh)*hd : (j*kvHeads+kh+1)*hd]
						for d := range qi {
							dqi[d] += ds * kj[d]
							dkj[d] += ds * qi[d]
						}
					}
				}
			}
		}
	})
}

// CachedAttention is Attention for n new queries at positions start,
// start+1, ... over cached keys and values holding positions 0..start+n-1
// ([positions × kvHeads × hd]); nothing is kept for a backward pass.
func CachedAttention(out, q, keys, vals []float32, start, n, heads, kvHeads, hd int) {
	group := heads / kvHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	Parallel(heads, func(lo, hi int) {
		scores := make([]float32, start+n)
		for h := lo; h < hi; h++ {
			kh := h / group
			for i := 0; i < n; i++ {
				p := start + i
				qi := q[(i*heads+h)*hd : (i*heads+h+1)*hd]
				mx := float32(math.Inf(-1))
				for j := 0; j <= p; j++ {
					kj := keys[(j*kvHeads+kh)*hd : (j*kvHeads+kh+1)*hd]
					var s float32
					for d := range qi {
						s += qi[d] * kj[d]
					}
					scores[j] = s * scale
					mx = max(mx, scores[j])
				}
				var sum float32
				for j := 0; j <= p; j++ {
					scores[j] = float32(math.Exp(float64(scores[j] - mx)))
					sum += scores[j]
				}
				oi := out[(i*heads+h)*hd : (i*heads+h+1)*hd]
				clear(oi)
				for j := 0; j <= p; j++ {
					w := scores[j] / sum
					vj := vals[(j*kvHeads+kh)*hd : (j*kvHeads+kh+1)*hd]
					for d := range oi {
						oi[d] += w * vj[d]
					}
				}
			}
		}
	})
}
