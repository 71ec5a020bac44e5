package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"zhllama/internal/testenv"
)

// logSoftmax64 is the float64 reference: per row, log Σ exp and the
// softmax.
func logSoftmax64(l []float32) (lse float64, p []float64) {
	mx := math.Inf(-1)
	for _, x := range l {
		mx = math.Max(mx, float64(x))
	}
	var s float64
	p = make([]float64, len(l))
	for i, x := range l {
		p[i] = math.Exp(float64(x) - mx)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
	return mx + math.Log(s), p
}

// TestLogSoftmaxRowsWide checks CrossEntropySum, LogProbs and
// LogProbsBackward against float64 on rows wide enough for the vector
// kernels and their tails.
func TestLogSoftmaxRowsWide(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	rows, v := 5, 1003
	logits := randn(rng, rows*v)
	for i := range logits {
		logits[i] *= 4
	}
	logits[2*v+17] = 60 // one logit far above the rest
	targets := []int32{3, IgnoreIndex, 17, 1002, 500}
	dlogp := []float32{0.5, 1, -2, 1, 0.25}
	var wantLoss float64
	wantLogp := make([]float64, rows)
	wantCE := make([]float64, rows*v)
	wantLPB := make([]float64, rows*v)
	for r, tg := range targets {
		if tg == IgnoreIndex {
			continue
		}
		lse, p := logSoftmax64(logits[r*v : (r+1)*v])
		wantLogp[r] = float64(logits[r*v+int(tg)]) - lse
		wantLoss -= wantLogp[r]
		for i := range p {
			oh := 0.0
			if i == int(tg) {
				oh = 1
			}
			wantCE[r*v+i] = (p[i] - oh) / 4
			wantLPB[r*v+i] = float64(dlogp[r]) * (oh - p[i])
		}
	}
	near := func(what string, i int, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 2e-6*(1+math.Abs(want)) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got, want)
		}
	}
	logp := make([]float32, rows)
	if n := LogProbs(logp, logits, targets, rows, v); n != 4 {
		t.Fatalf("LogProbs counted %d rows", n)
	}
	for r := range logp {
		near("logp", r, float64(logp[r]), wantLogp[r])
	}
	work := append([]float32(nil), logits...)
	loss, n := CrossEntropySum(work, targets, rows, v, 4)
	if n != 4 {
		t.Fatalf("CrossEntropySum counted %d rows", n)
	}
	near("loss", 0, loss, wantLoss)
	for i := range work {
		near("dlogits", i, float64(work[i]), wantCE[i])
	}
	copy(work, logits)
	LogProbsBackward(work, targets, dlogp, rows, v)
	for i := range work {
		near("dlogits (logprobs)", i, float64(work[i]), wantLPB[i])
	}
}

// TestAttentionSoftmaxWide checks the attention probabilities, and the
// cached attention's output, against float64 for a sequence long enough
// for the vector kernels.
func TestAttentionSoftmaxWide(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	tt, heads, kvHeads, hd := 41, 2, 1, 8
	q, k, v := randn(rng, tt*heads*hd), randn(rng, tt*kvHeads*hd), randn(rng, tt*kvHeads*hd)
	valid := make([]bool, tt)
	for i := range valid {
		valid[i] = i%7 != 3
	}
	for _, val := range [][]bool{nil, valid} {
		out, probs := make([]float32, tt*heads*hd), make([]float32, heads*tt*tt)
		Attention(out, probs, q, k, v, val, 1, tt, heads, kvHeads, hd)
		scale := 1 / math.Sqrt(float64(hd))
		for h := 0; h < heads; h++ {
			for i := 0; i < tt; i++ {
				var s []float32
				var idx []int
				for j := 0; j <= i; j++ {
					if val == nil || val[j] {
						s = append(s, float32(dot64(q[(i*heads+h)*hd:(i*heads+h+1)*hd], k[j*hd:(j+1)*hd])*scale))
						idx = append(idx, j)
					}
				}
				want := make([]float64, tt)
				if len(s) > 0 {
					_, p := logSoftmax64(s)
					for n, j := range idx {
						want[j] = p[n]
					}
				}
				for j := range want {
					if got := probs[(h*tt+i)*tt+j]; math.Abs(float64(got)-want[j]) > 1e-5 {
						t.Fatalf("valid=%v head %d row %d col %d: p = %v, want %v", val != nil, h, i, j, got, want[j])
					}
				}
			}
		}
		if val != nil {
			continue
		}
		cached := make([]float32, len(out))
		CachedAttention(cached, q, k, v, 0, tt, heads, kvHeads, hd)
		for i := range out {
			if math.Abs(float64(cached[i]-out[i])) > 1e-5 {
				t.Fatalf("cached attention out[%d] = %v, Attention gives %v", i, cached[i], out[i])
			}
		}
	}
}

// SoftmaxWeights against float64: exp(scale·x − max) and their sum.
func TestSoftmaxWeights(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 15, 17, 32000} {
		x := randn(rng, n)
		dst := make([]float32, n)
		const scale = 1 / 0.7
		sum := SoftmaxWeights(dst, x, scale)
		mx := math.Inf(-1)
		for _, v := range x {
			mx = max(mx, float64(v*scale))
		}
		var want float64
		for i, v := range x {
			w := math.Exp(float64(v*scale) - mx)
			want += w
			if math.Abs(float64(dst[i])-w) > 2e-6*w { // x·scale − max rounded to float32, then 1 ulp of exp
				t.Fatalf("n=%d: weight %d is %g, want %g", n, i, dst[i], w)
			}
		}
		if math.Abs(sum-want) > 1e-6*want {
			t.Errorf("n=%d: sum %g, want %g", n, sum, want)
		}
	}
}

// attendOneByOne is CachedAttention with each of the n queries a sequence
// of its own, a decoding step below promptRows: the reference the prompt
// paths are held to.
func attendOneByOne(out, q, k, v []float32, start, n, heads, kvHeads, hd int) {
	var one []CachedSeq
	w := heads * hd
	for i := range n {
		one = append(one, CachedSeq{Out: out[i*w : (i+1)*w], Q: q[i*w : (i+1)*w], Keys: k, Vals: v, Start: start + i, N: 1})
	}
	CachedAttentionSeqs(one, heads, kvHeads, hd)
}

// A prompt's queries through promptAttention (scores and sums as GEMMs,
// from the first position (heads as tasks, causal GEMMs) or several
// blocks of queries after cached positions, grouped key/value
// heads) give what the same queries give one at a time.
func TestPromptAttention(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	heads, kvHeads, hd := 4, 2, 8
	for _, c := range []struct{ start, n int }{{0, promptRows}, {0, 100}, {5, 40}, {3, promptBlock + 37}} {
		total := c.start + c.n
		q := randn(rng, c.n*heads*hd)
		k, v := randn(rng, total*kvHeads*hd), randn(rng, total*kvHeads*hd)
		got, want := make([]float32, len(q)), make([]float32, len(q))
		CachedAttention(got, q, k, v, c.start, c.n, heads, kvHeads, hd)
		attendOneByOne(want, q, k, v, c.start, c.n, heads, kvHeads, hd)
		testenv.AssertClose(t, fmt.Sprintf("start %d, %d queries", c.start, c.n), got, want, 1e-5, 1)
	}
}

// Keys and values laid out head by head (CachedSeq.Stride, kvcache's
// layout) give what the interleaved layout gives, bit for bit, for
// decoding steps and prompts alike.
func TestCachedAttentionHeadMajor(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	heads, kvHeads, hd := 4, 2, 16
	for _, c := range []struct{ start, n int }{{0, 1}, {12, 1}, {9, 3}, {4, promptRows + 5}} {
		total := c.start + c.n
		room := total + 7 // a head's run is longer than its positions
		q := randn(rng, c.n*heads*hd)
		k, v := randn(rng, total*kvHeads*hd), randn(rng, total*kvHeads*hd)
		hk, hv := make([]float32, kvHeads*room*hd), make([]float32, kvHeads*room*hd)
		for j := range total {
			for h := range kvHeads {
				copy(hk[h*room*hd+j*hd:][:hd], k[(j*kvHeads+h)*hd:])
				copy(hv[h*room*hd+j*hd:][:hd], v[(j*kvHeads+h)*hd:])
			}
		}
		got, want := make([]float32, len(q)), make([]float32, len(q))
		CachedAttention(want, q, k, v, c.start, c.n, heads, kvHeads, hd)
		CachedAttentionSeqs([]CachedSeq{{Out: got, Q: q, Keys: hk, Vals: hv, Start: c.start, N: c.n, Stride: room * hd}}, heads, kvHeads, hd)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("start %d, %d queries: output %d is %g head by head, %g interleaved", c.start, c.n, i, got[i], want[i])
			}
		}
	}
}
