package llama

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"zhllama/tensor"
)

// Cache holds the keys and values of the tokens seen so far by each
// sequence of a batch, so that each new token costs one step instead of a
// pass over the whole sequence.
type Cache struct {
	seqs     []seqCache
	maxT     int
	cos, sin []float32
	scratch  stepBufs
}

type seqCache struct {
	k, v [][]float32 // per layer [maxT × kvHeads·headDim], after RoPE for k
	len  int
}

// stepBufs are Step's activations, grown to the most rows seen.
type stepBufs struct {
	x, nrm, rstd, q, att, o, k, v, g, u, act, last, head, logits []float32
	pos                                                          []int
	ids                                                          []int32
}

// NewCache makes a cache for batch sequences of up to maxT tokens each.
func (m *Model) NewCache(batch, maxT int) *Cache {
	c := &m.Config
	kv := c.NumKeyValueHeads * c.HeadDim
	ca := &Cache{maxT: maxT, seqs: make([]seqCache, batch)}
	for b := range ca.seqs {
		for range c.NumHiddenLayers {
			ca.seqs[b].k = append(ca.seqs[b].k, make([]float32, maxT*kv))
			ca.seqs[b].v = append(ca.seqs[b].v, make([]float32, maxT*kv))
		}
	}
	scaling, factor := "", 1.0
	if c.RopeScaling != nil {
		scaling, factor = c.RopeScaling.Type, c.RopeScaling.Factor
	}
	ca.cos, ca.sin = tensor.RopeTables(maxT, c.HeadDim, c.RopeTheta, scaling, factor, c.MaxPositionEmbeddings, maxT)
	return ca
}

// Len is the number of tokens sequence b has seen.
func (ca *Cache) Len(b int) int { return ca.seqs[b].len }

func grow(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	*buf = (*buf)[:n]
	return *buf
}

// Step feeds ids[b] (any number of tokens, none included) to sequence b at
// its next positions, all sequences in one pass, and returns the logits of
// the last token of each sequence fed ([batch × vocab]; rows of sequences
// fed nothing are left as they were). The slice is reused by the next
// Step. It panics if a sequence passes the cache's length; callers size
// it for prompt + output.
func (m *Model) Step(ca *Cache, ids [][]int32) []float32 {
	c := &m.Config
	h := c.HiddenSize
	nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	qd, kv, in := nh*hd, nkv*hd, c.IntermediateSize
	eps := float32(c.RMSNormEps)
	n := 0
	for b, s := range ids {
		if ca.seqs[b].len+len(s) > ca.maxT {
			panic("llama: KV cache overflow")
		}
		n += len(s)
	}
	sb := &ca.scratch
	sb.pos, sb.ids = sb.pos[:0], sb.ids[:0]
	for b, s := range ids {
		for i := range s {
			sb.pos = append(sb.pos, ca.seqs[b].len+i)
		}
		sb.ids = append(sb.ids, s...)
	}
	x, nrm, rstd := grow(&sb.x, n*h), grow(&sb.nrm, n*h), grow(&sb.rstd, n)
	q, att, o := grow(&sb.q, n*qd), grow(&sb.att, n*qd), grow(&sb.o, n*h)
	kNew, vNew := grow(&sb.k, n*kv), grow(&sb.v, n*kv)
	g, u, act := grow(&sb.g, n*in), grow(&sb.u, n*in), grow(&sb.act, n*in)
	m.embed(x, sb.ids)
	for l := range m.Layers {
		w := &m.Layers[l]
		tensor.RMSNorm(nrm, rstd, x, w.AttnNorm, n, h, eps)
		w.Q.forward(q, nrm, n, h, qd)
		w.K.forward(kNew, nrm, n, h, kv)
		w.V.forward(vNew, nrm, n, h, kv)
		tensor.Rope(q, sb.pos, nh, hd, ca.cos, ca.sin)
		tensor.Rope(kNew, sb.pos, nkv, hd, ca.cos, ca.sin)
		r := 0
		for b, s := range ids {
			if len(s) == 0 {
				continue
			}
			sc, t := &ca.seqs[b], len(s)
			copy(sc.k[l][sc.len*kv:], kNew[r*kv:(r+t)*kv])
			copy(sc.v[l][sc.len*kv:], vNew[r*kv:(r+t)*kv])
			tensor.CachedAttention(att[r*qd:(r+t)*qd], q[r*qd:(r+t)*qd], sc.k[l], sc.v[l], sc.len, t, nh, nkv, hd)
			r += t
		}
		w.O.forward(o, att, n, qd, h)
		for i := range x {
			x[i] += o[i]
		}
		tensor.RMSNorm(nrm, rstd, x, w.MLPNorm, n, h, eps)
		w.Gate.forward(g, nrm, n, h, in)
		w.Up.forward(u, nrm, n, h, in)
		tensor.SwiGLU(act, g, u)
		w.Down.forward(o, act, n, in, h)
		for i := range x {
			x[i] += o[i]
		}
	}
	// Only the last token of each sequence needs logits.
	last := grow(&sb.last, len(ids)*h)
	logits := grow(&sb.logits, len(ids)*c.VocabSize)
	var rows []int
	r := 0
	for b, s := range ids {
		ca.seqs[b].len += len(s)
		if len(s) > 0 {
			r += len(s)
			copy(last[len(rows)*h:], x[(r-1)*h:r*h])
			rows = append(rows, b)
		}
	}
	k := len(rows)
	tensor.RMSNorm(nrm[:k*h], rstd[:k], last[:k*h], m.Norm, k, h, eps)
	out := grow(&sb.head, k*c.VocabSize)
	m.LMHead.forward(out, nrm[:k*h], k, h, c.VocabSize)
	for i, b := range rows {
		copy(logits[b*c.VocabSize:(b+1)*c.VocabSize], out[i*c.VocabSize:(i+1)*c.VocabSize])
	}
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
	var e func(int, int) bool
	if emit != nil {
		e = func(_, id int) bool { return emit(id) }
	}
	return m.GenerateBatch([][]int32{prompt}, s, e)[0]
}

// GenerateBatch continues each prompt, all of them decoded together: one
// step feeds every unfinished sequence its last token. emit(b, id) is
// called with each new token of sequence b; returning false ends that
// sequence. Sequence b samples from its own stream (seed s.Seed+b), so
// its output does not depend on the rest of the batch.
func (m *Model) GenerateBatch(prompts [][]int32, s Sampling, emit func(b, id int) bool) [][]int {
	maxT := 0
	for _, p := range prompts {
		maxT = max(maxT, len(p))
	}
	ca := m.NewCache(len(prompts), maxT+s.MaxNewTokens)
	v := m.Config.VocabSize
	out := make([][]int, len(prompts))
	rngs := make([]*rand.Rand, len(prompts))
	seen := make([]map[int]bool, len(prompts))
	done := make([]bool, len(prompts))
	feed, last := make([][]int32, len(prompts)), make([]int32, len(prompts))
	for b, p := range prompts {
		rngs[b] = rand.New(rand.NewPCG(s.Seed+uint64(b), 0x9e11))
		seen[b] = map[int]bool{}
		for _, id := range p {
			seen[b][int(id)] = true
		}
		feed[b] = p
		done[b] = s.MaxNewTokens <= 0 || len(p) == 0
	}
	for {
		logits := m.Step(ca, feed)
		active := false
		for b := range feed {
			if done[b] {
				feed[b] = nil
				continue
			}
			id := sample(logits[b*v:(b+1)*v], s, seen[b], rngs[b])
			out[b] = append(out[b], id)
			seen[b][id] = true
			stop := slices.Contains(s.StopIDs, id)
			if (emit != nil && !emit(b, id)) || stop || len(out[b]) == s.MaxNewTokens {
				done[b] = true
				feed[b] = nil
				continue
			}
			last[b] = int32(id)
			feed[b] = last[b : b+1]
			active = true
		}
		if !active {
			return out
		}
	}
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
