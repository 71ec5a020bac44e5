package llama

import (
	"errors"
	"fmt"
	"slices"

	"zhllama/kvcache"
	"zhllama/sample"
	"zhllama/tensor"
)

// Cache is a decoding state: each sequence's past keys and values, the
// rotary tables for its positions, the pass's choices (which adapters
// apply) and the step's scratch buffers.
type Cache struct {
	Pass
	KV       *kvcache.Cache
	cos, sin []float32 // [most × head_dim/2]
	scratch  stepBufs
}

// stepBufs are Step's activations, grown to the most rows seen.
type stepBufs struct {
	la                 layerActs
	x, last, nrm, rstd []float32
	head, logits       []float32
	pos                []int
	ids                []int32
}

// NewCache makes a cache for batch sequences of up to most tokens each;
// its memory grows with the sequences. A half cache keeps keys and values
// as float16, as llama.cpp's does: half the memory and half the reading.
func (m *Model) NewCache(batch, most int, half bool) *Cache {
	c := &m.Config
	ca := &Cache{KV: kvcache.New(batch, c.NumHiddenLayers, c.NumKeyValueHeads, c.HeadDim, most, half)}
	ca.cos, ca.sin = ropeTables(c, most, most)
	return ca
}

// Len is the number of tokens sequence b has seen.
func (ca *Cache) Len(b int) int { return ca.KV.Len(b) }

func grow(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	*buf = (*buf)[:n]
	return *buf
}

// Step feeds ids[b] (any number of tokens, none included) to sequence b at
// its next positions, all sequences in one pass through the same layers as
// Forward, and returns the logits of the last token of each sequence fed
// ([batch × vocab]; rows of sequences fed nothing are left as they were).
// The slice is reused by the next Step. It panics if a sequence passes the
// cache's length; callers size it for prompt + output.
func (m *Model) Step(ca *Cache, ids [][]int32) []float32 {
	c := &m.Config
	h, v := c.HiddenSize, c.VocabSize
	n := 0
	for b, s := range ids {
		if err := ca.KV.Room(b, len(s)); err != nil {
			panic("llama: KV cache overflow: " + err.Error())
		}
		n += len(s)
	}
	sb := &ca.scratch
	sb.pos, sb.ids = sb.pos[:0], sb.ids[:0]
	for b, s := range ids {
		for i := range s {
			sb.pos = append(sb.pos, ca.KV.Len(b)+i)
		}
		sb.ids = append(sb.ids, s...)
	}
	sb.la.size(c, n, 0, func(buf *[]float32, k int) { grow(buf, k) })
	x := grow(&sb.x, n*h)
	m.embed(x, sb.ids)
	attend := m.cachedAttention(ca, ids)
	for l := range m.Layers {
		m.layer(&ca.Pass, l, &sb.la, x, x, n, sb.pos, ca.cos, ca.sin, attend)
	}
	// Only the last token of each sequence needs logits.
	last := grow(&sb.last, len(ids)*h)
	logits := grow(&sb.logits, len(ids)*v)
	var rows []int
	r := 0
	for b, s := range ids {
		ca.KV.Advance(b, len(s))
		if len(s) > 0 {
			r += len(s)
			copy(last[len(rows)*h:], x[(r-1)*h:r*h])
			rows = append(rows, b)
		}
	}
	k := len(rows)
	nrm, rstd := grow(&sb.nrm, k*h), grow(&sb.rstd, k)
	tensor.RMSNorm(nrm, rstd, last[:k*h], m.Norm, k, h, float32(c.RMSNormEps))
	out := grow(&sb.head, k*v)
	m.LMHead.forward(&ca.Pass, out, nrm, k, h, v)
	for i, b := range rows {
		copy(logits[b*v:(b+1)*v], out[i*v:(i+1)*v])
	}
	return logits
}

// cachedAttention attends each sequence's new tokens to its cached past
// and themselves, storing their keys and values in the cache; all the
// sequences' heads are one batch of work.
func (m *Model) cachedAttention(ca *Cache, ids [][]int32) attention {
	c := &m.Config
	nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	qd, kv := nh*hd, nkv*hd
	var seqs []tensor.CachedSeq
	return func(l int, la *layerActs) {
		seqs = seqs[:0]
		r := 0
		for b, s := range ids {
			if len(s) == 0 {
				continue
			}
			t := len(s)
			kl := ca.KV.Put(b, l, la.k[r*kv:(r+t)*kv], la.v[r*kv:(r+t)*kv])
			seqs = append(seqs, tensor.CachedSeq{Out: la.att[r*qd : (r+t)*qd], Q: la.q[r*qd : (r+t)*qd],
				Keys: kl.K, Vals: kl.V, Keys16: kl.K16, Vals16: kl.V16, Start: ca.KV.Len(b), N: t, Stride: kl.Stride})
			r += t
		}
		tensor.CachedAttentionSeqs(seqs, nh, nkv, hd)
	}
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
	// HalfCache keeps the cached keys and values as float16 (llama.cpp's
	// default cache type): half the memory, and faster decoding where
	// attention's reads matter; float32 otherwise.
	HalfCache bool
	// Adapters selects the LoRA adapters that apply (nil: all), e.g. the
	// policy's alone when a reward adapter shares the model.
	Adapters func(name string) bool
}

// Validate checks the settings' ranges, naming the setting.
func (s Sampling) Validate() error {
	if s.MaxNewTokens < 0 {
		return fmt.Errorf("max_new_tokens %d: use 0 or more", s.MaxNewTokens)
	}
	return s.Params().Validate()
}

// Params are the sampler's settings.
func (s Sampling) Params() sample.Params {
	return sample.Params{Temperature: s.Temperature, TopK: s.TopK, TopP: s.TopP, RepetitionPenalty: s.RepetitionPenalty, Seed: s.Seed}
}

// Generate continues prompt, calling emit with each new token as it comes
// (emit returns false to stop, e.g. at a stop string). It returns the new ids.
func (m *Model) Generate(prompt []int32, s Sampling, emit func(id int) bool) ([]int, error) {
	var e func(int, int) bool
	if emit != nil {
		e = func(_, id int) bool { return emit(id) }
	}
	out, err := m.GenerateBatch([][]int32{prompt}, s, e)
	if out == nil {
		return nil, err
	}
	return out[0], err
}

// ErrNotFinite reports logits that are NaN or infinite: weights that are.
var ErrNotFinite = errors.New("the model's logits are not finite (NaN or Inf): its weights or inputs hold such values")

// Room is how many tokens a sequence of n can still grow by within the
// model's context (max_position_embeddings).
func (m *Model) Room(n int) int { return max(0, m.Config.MaxPositionEmbeddings-n) }

// GenerateBatch continues each prompt, all of them decoded together: one
// step feeds every unfinished sequence its last token. emit(b, id) is
// called with each new token of sequence b; returning false ends that
// sequence. A sequence also ends at a stop id, after MaxNewTokens, or when
// it fills the model's context. Sequence b samples from its own stream
// (seed s.Seed+b), so its output does not depend on the rest of the batch.
// The cache grows with the sequences, so a large MaxNewTokens costs only
// what is generated.
func (m *Model) GenerateBatch(prompts [][]int32, s Sampling, emit func(b, id int) bool) ([][]int, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	maxT := 0
	for _, p := range prompts {
		maxT = max(maxT, len(p))
	}
	most := max(maxT, m.Config.MaxPositionEmbeddings)
	if s.MaxNewTokens < most-maxT {
		most = maxT + s.MaxNewTokens
	}
	ca := m.NewCache(len(prompts), most, s.HalfCache)
	ca.Adapters = s.Adapters
	v := m.Config.VocabSize
	out := make([][]int, len(prompts))
	samplers := make([]*sample.Sampler, len(prompts))
	done := make([]bool, len(prompts))
	feed, last := make([][]int32, len(prompts)), make([]int32, len(prompts))
	for b, p := range prompts {
		samplers[b] = sample.New(s.Params(), uint64(b))
		for _, id := range p {
			samplers[b].Observe(int(id))
		}
		feed[b] = p
		done[b] = s.MaxNewTokens <= 0 || len(p) == 0 || len(p) >= most
	}
	for {
		logits := m.Step(ca, feed)
		active := false
		for b := range feed {
			if done[b] {
				feed[b] = nil
				continue
			}
			row := logits[b*v : (b+1)*v]
			if !finite(row) {
				return out, ErrNotFinite
			}
			id := samplers[b].Next(row)
			out[b] = append(out[b], id)
			stop := slices.Contains(s.StopIDs, id)
			// The sequence, this token included, fills at most most positions.
			if (emit != nil && !emit(b, id)) || stop || len(out[b]) == s.MaxNewTokens || ca.Len(b)+1 >= most {
				done[b] = true
				feed[b] = nil
				continue
			}
			last[b] = int32(id)
			feed[b] = last[b : b+1]
			active = true
		}
		if !active {
			return out, nil
		}
	}
}

func finite(x []float32) bool {
	for _, v := range x {
		if v-v != 0 { // NaN or ±Inf
			return false
		}
	}
	return true
}
