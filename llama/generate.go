package llama

import (
	"math"
	"math/rand/v2"
	"sort"

	"zhllama/tensor"
)

// Cache holds the keys and values of the tokens seen so far, so that each
// new token costs one step instead of a pass over the whole sequence.
type Cache struct {
	k, v     [][]float32 // per layer [maxT × kvHeads·headDim], after RoPE for k
	Len      int
	maxT     int
	cos, sin []float32
	pos      []int
}

// NewCache makes a cache for sequences of up to maxT tokens.
func (m *Model) NewCache(maxT int) *Cache {
	c := &m.Config
	kv := c.NumKeyValueHeads * c.HeadDim
	ca := &Cache{maxT: maxT}
	for range c.NumHiddenLayers {
		ca.k = append(ca.k, make([]float32, maxT*kv))
		ca.v = append(ca.v, make([]float32, maxT*kv))
	}
	scaling, factor := "", 1.0
	if c.RopeScaling != nil {
		scaling, factor = c.RopeScaling.Type, c.RopeScaling.Factor
	}
	ca.cos, ca.sin = tensor.RopeTables(maxT, c.HeadDim, c.RopeTheta, scaling, factor, c.MaxPositionEmbeddings, maxT)
	return ca
}

// Step feeds ids at the next positions and returns the logits of the last
// one. It panics if the cache is full; callers size it for prompt + output.
func (m *Model) Step(ca *Cache, ids []int32) []float32 {
	c := &m.Config
	n, h := len(ids), c.HiddenSize
	nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	qd, kv, in := nh*hd, nkv*hd, c.IntermediateSize
	eps := float32(c.RMSNormEps)
	if ca.Len+n > ca.maxT {
		panic("llama: KV cache overflow")
	}
	ca.pos = ca.pos[:0]
	for i := 0; i < n; i++ {
		ca.pos = append(ca.pos, ca.Len+i)
	}
	x := make([]float32, n*h)
	tensor.Embedding(x, m.Embed, ids, h)
	nrm, rstd := make([]float32, n*h), make([]float32, n)
	q, att, o := make([]float32, n*qd), make([]float32, n*qd), make([]float32, n*h)
	g, u, act := make([]float32, n*in), make([]float32, n*in), make([]float32, n*in)
	for l := range m.Layers {
		w := &m.Layers[l]
		tensor.RMSNorm(nrm, rstd, x, w.AttnNorm, n, h, eps)
		tensor.Linear(q, nrm, w.Q, n, h, qd)
		kNew, vNew := ca.k[l][ca.Len*kv:(ca.Len+n)*kv], ca.v[l][ca.Len*kv:(ca.Len+n)*kv]
		tensor.Linear(kNew, nrm, w.K, n, h, kv)
		tensor.Linear(vNew, nrm, w.V, n, h, kv)
		tensor.Rope(q, ca.pos, nh, hd, ca.cos, ca.sin)
		tensor.Rope(kNew, ca.pos, nkv, hd, ca.cos, ca.sin)
		tensor.CachedAttention(att, q, ca.k[l], ca.v[l], ca.Len, n, nh, nkv, hd)
		tensor.Linear(o, att, w.O, n, qd, h)
		for i := range x {
			x[i] += o[i]
		}
		tensor.RMSNorm(nrm, rstd, x, w.MLPNorm, n, h, eps)
		tensor.Linear(g, nrm, w.Gate, n, h, in)
		tensor.Linear(u, nrm, w.Up, n, h, in)
		tensor.SwiGLU(act, g, u)
		tensor.Linear(o, act, w.Down, n, in, h)
		for i := range x {
			x[i] += o[i]
		}
	}
	ca.Len += n
	last := x[(n-1)*h:]
	tensor.RMSNorm(nrm[:h], rstd[:1], last, m.Norm, 1, h, eps)
	logits := make([]float32, c.VocabSize)
	tensor.Linear(logits, nrm[:h], m.LMHead, 1, h, c.VocabSize)
	return logits
}

// Sampling controls Generate, with Hugging Face's meanings.
type Sampling struct {
	MaxNewTokens      int
	Temperature       float64 // 0: greedy
	TopK              int     // 0: off
	TopP              float64 // 1: off
	RepetitionPenalty float64 // 1: off
	Seed              uint64
	StopIDs           []int // generation ends after any of these (EOS)
}

// Generate continues prompt, calling emit with each new token as it comes
// (emit returns false to stop, e.g. at a stop string). It returns the new ids.
func (m *Model) Generate(prompt []int32, s Sampling, emit func(id int) bool) []int {
	ca := m.NewCache(len(prompt) + s.MaxNewTokens)
	rng := rand.New(rand.NewPCG(s.Seed, 0x9e11))
	seen := map[int]bool{}
	for _, id := range prompt {
		seen[int(id)] = true
	}
	logits := m.Step(ca, prompt)
	var out []int
	for len(out) < s.MaxNewTokens {
		id := sample(logits, s, seen, rng)
		out = append(out, id)
		seen[id] = true
		stop := false
		for _, e := range s.StopIDs {
			stop = stop || id == e
		}
		if (emit != nil && !emit(id)) || stop || len(out) == s.MaxNewTokens {
			break
		}
		logits = m.Step(ca, []int32{int32(id)})
	}
	return out
}

// sample picks the next token: repetition penalty, then greedy, or
// temperature, top-k and top-p before drawing, as transformers orders them.
func sample(logits []float32, s Sampling, seen map[int]bool, rng *rand.Rand) int {
	if s.RepetitionPenalty > 0 && s.RepetitionPenalty != 1 {
		pen := float32(s.RepetitionPenalty)
		for id := range seen {
			if logits[id] < 0 {
				logits[id] *= pen
			} else {
				logits[id] /= pen
			}
		}
	}
	if s.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best
	}
	type cand struct {
		id int
		l  float64
	}
	cands := make([]cand, len(logits))
	for i, v := range logits {
		cands[i] = cand{i, float64(v) / s.Temperature}
	}
	sort.Slice(cands, func(i, j int) bool {
		return cands[i].l > cands[j].l || cands[i].l == cands[j].l && cands[i].id < cands[j].id
	})
	if s.TopK > 0 && s.TopK < len(cands) {
		cands = cands[:s.TopK]
	}
	mx := cands[0].l
	probs := make([]float64, len(cands))
	var sum float64
	for i, c := range cands {
		probs[i] = math.Exp(c.l - mx)
		sum += probs[i]
	}
	if s.TopP > 0 && s.TopP < 1 {
		cum := 0.0
		for i := range probs {
			cum += probs[i] / sum
			if cum >= s.TopP {
				probs, cands = probs[:i+1], cands[:i+1]
				break
			}
		}
		sum = 0
		for _, p := range probs {
			sum += p
		}
	}
	r := rng.Float64() * sum
	for i, p := range probs {
		if r -= p; r < 0 {
			return cands[i].id
		}
	}
	return cands[len(cands)-1].id
}
