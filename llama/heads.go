package llama

import (
	"math"
	"math/rand/v2"

	"zhllama/tensor"
)

// Heads map the trunk's final hidden states (Acts.Hidden, [bt × h]) to what
// an objective needs, and return dLoss/dHidden for Backward: the LM head's
// mean cross-entropy (pretraining, SFT), per-token log-probabilities of
// given labels (DPO, PPO, multiple-choice evaluation) and a value head
// (reward models, PPO's critic).

// headBytes bounds the logits the LM head holds at once: [tokens × vocab]
// in float32 would be 450 MB for 2048 tokens of a 55296-piece vocabulary.
var headBytes = 32 << 20

// headRows is how many rows of logits the LM head computes at once for bt
// rows: a multiple of 8 within headBytes, at least 16.
func headRows(c *Config, bt int) int {
	n := max(16, headBytes/(4*c.VocabSize)/8*8)
	return min(n, max(bt, 1))
}

// shiftTargets sets a.targets to the labels each position predicts: the
// next position's label, IgnoreIndex at the end of each sequence.
func (a *Acts) shiftTargets(labels []int32) []int32 {
	for b := 0; b < a.B; b++ {
		for t := 0; t < a.T; t++ {
			a.targets[b*a.T+t] = tensor.IgnoreIndex
			if t+1 < a.T {
				a.targets[b*a.T+t] = labels[b*a.T+t+1]
			}
		}
	}
	return a.targets
}

// headChunk is a chunk of the rows that have a target: their indices in
// the batch, their targets, their hidden states packed [k × h] and their
// logits [k × v].
type headChunk struct {
	rows   []int
	tg     []int32
	in, lg []float32
}

// headChunks calls f for the batch's rows that have a target, at most
// headRows of them at a time. Rows without one (prompts, padding, each
// sequence's last position) are left out before the LM head, the costliest
// matrix of a small model, not only after it: their hidden states are
// packed away, unless the chunk's rows follow each other.
func (m *Model) headChunks(a *Acts, targets []int32, f func(ch headChunk)) {
	c := &m.Config
	bt, h, v := a.B*a.T, c.HiddenSize, c.VocabSize
	step := headRows(c, bt)
	rows := a.headRowIdx[:0]
	for r := range bt {
		if targets[r] != tensor.IgnoreIndex {
			rows = append(rows, r)
		}
	}
	a.headRowIdx = rows
	for i0 := 0; i0 < len(rows); i0 += step {
		i1 := min(len(rows), i0+step)
		k := i1 - i0
		ch := headChunk{rows: rows[i0:i1], tg: grow32(&a.headTg, k), lg: a.logits[:k*v]}
		if r0 := ch.rows[0]; ch.rows[k-1] == r0+k-1 {
			ch.in = a.Hidden[r0*h : (r0+k)*h]
		} else {
			ch.in = grow(&a.headIn, k*h)
			for i, r := range ch.rows {
				copy(ch.in[i*h:(i+1)*h], a.Hidden[r*h:(r+1)*h])
			}
		}
		for i, r := range ch.rows {
			ch.tg[i] = targets[r]
		}
		m.LMHead.forward(&a.Pass, ch.lg, ch.in, k, h, v)
		f(ch)
	}
}

// headBackward takes a chunk's logit gradients (in ch.lg) through the LM
// head: into a.dHidden's rows, which hold nothing yet, and, unless grads is
// nil, the head's gradient.
func (m *Model) headBackward(a *Acts, grads *Model, ch headChunk) {
	h, v, k := m.Config.HiddenSize, m.Config.VocabSize, len(ch.rows)
	var g *Weight
	if grads != nil {
		g = &grads.LMHead
	}
	if r0 := ch.rows[0]; ch.rows[k-1] == r0+k-1 {
		m.LMHead.backward(&a.Pass, a.dHidden[r0*h:(r0+k)*h], g, ch.lg, ch.in, k, h, v)
		return
	}
	din := grow(&a.headDIn, k*h)
	clear(din)
	m.LMHead.backward(&a.Pass, din, g, ch.lg, ch.in, k, h, v)
	for i, r := range ch.rows {
		copy(a.dHidden[r*h:(r+1)*h], din[i*h:(i+1)*h])
	}
}

func grow32(buf *[]int32, n int) []int32 {
	if cap(*buf) < n {
		*buf = make([]int32, n)
	}
	*buf = (*buf)[:n]
	return *buf
}

// LMLoss is the language-model head: logits = Hidden · LMHeadᵀ, and the
// mean cross-entropy of each position predicting the next label (labels
// shifted as LlamaForCausalLM shifts them; IgnoreIndex skips). It returns
// the loss, the counted tokens and, when grads is not nil, dLoss/dHidden,
// adding the head's gradient to grads.LMHead. The gradient is that of the
// summed loss over denom tokens (0: this batch's count), so that
// micro-batches of one optimizer step average over all their tokens. The
// logits are computed in chunks of rows and never held whole.
func (m *Model) LMLoss(a *Acts, labels []int32, denom int, grads *Model) (float64, int, []float32) {
	targets := a.shiftTargets(labels)
	count := tensor.CountTargets(targets)
	if denom <= 0 {
		denom = count
	}
	if grads != nil {
		clear(a.dHidden)
	}
	var sum float64
	m.headChunks(a, targets, func(ch headChunk) {
		s, _ := tensor.CrossEntropySum(ch.lg, ch.tg, len(ch.rows), m.Config.VocabSize, denom)
		sum += s
		if grads != nil {
			m.headBackward(a, grads, ch)
		}
	})
	var dHidden []float32
	if grads != nil {
		dHidden = a.dHidden
	}
	if count == 0 {
		return 0, 0, dHidden
	}
	return sum / float64(count), count, dHidden
}

// Logits writes the LM head's logits of every position to dst [bt × v].
func (m *Model) Logits(a *Acts, dst []float32) {
	c := &m.Config
	bt, h, v := a.B*a.T, c.HiddenSize, c.VocabSize
	step := headRows(c, bt)
	for r0 := 0; r0 < bt; r0 += step {
		r1 := min(bt, r0+step)
		m.LMHead.forward(&a.Pass, dst[r0*v:r1*v], a.Hidden[r0*h:r1*h], r1-r0, h, v)
	}
}

// TokenLogProbs writes to dst [B × T] the log-probability each position
// gives the next label (labels shifted as in LMLoss), 0 where the label is
// IgnoreIndex and at each sequence's last position; it returns the number
// of scored positions. Summed over a response, these are the sequence
// log-probabilities DPO and PPO compare.
func (m *Model) TokenLogProbs(a *Acts, labels []int32, dst []float32) int {
	targets := a.shiftTargets(labels)
	clear(dst[:a.B*a.T])
	n := 0
	m.headChunks(a, targets, func(ch headChunk) {
		lp := grow(&a.headLP, len(ch.rows))
		n += tensor.LogProbs(lp, ch.lg, ch.tg, len(ch.rows), m.Config.VocabSize)
		for i, r := range ch.rows {
			dst[r] = lp[i]
		}
	})
	return n
}

// TokenLogProbsBackward returns dLoss/dHidden for a loss with gradient
// dLogp [B × T] with respect to TokenLogProbs' output (same labels, after
// the same Forward), adding the head's gradient to grads.LMHead (grads nil:
// a frozen head). The logits are computed again, chunk by chunk.
func (m *Model) TokenLogProbsBackward(a *Acts, labels []int32, dLogp []float32, grads *Model) []float32 {
	targets := a.shiftTargets(labels)
	clear(a.dHidden)
	m.headChunks(a, targets, func(ch headChunk) {
		dl := grow(&a.headLP, len(ch.rows))
		for i, r := range ch.rows {
			dl[i] = dLogp[r]
		}
		tensor.LogProbsBackward(ch.lg, ch.tg, dl, len(ch.rows), m.Config.VocabSize)
		m.headBackward(a, grads, ch)
	})
	return a.dHidden
}

// ValueHead is the value head of TRL's AutoModelForCausalLMWithValueHead,
// which LLaMA-Factory's reward models and PPO use: a Linear hidden → 1 with
// a bias, scoring every position.
type ValueHead struct {
	W []float32 // [1 × hidden] v_head.summary.weight
	B []float32 // [1] v_head.summary.bias
}

// Names of the value head's tensors in value_head.safetensors.
const (
	ValueHeadWeight = "v_head.summary.weight"
	ValueHeadBias   = "v_head.summary.bias"
)

// NewValueHead is a zeroed head (or its gradient) for hidden size h.
func NewValueHead(h int) *ValueHead { return &ValueHead{W: make([]float32, h), B: make([]float32, 1)} }

// Init sets the head as nn.Linear initializes it: weight and bias from
// U(±1/√hidden).
func (v *ValueHead) Init(rng *rand.Rand) {
	bound := 1 / math.Sqrt(float64(len(v.W)))
	for i := range v.W {
		v.W[i] = float32((2*rng.Float64() - 1) * bound)
	}
	v.B[0] = float32((2*rng.Float64() - 1) * bound)
}

// Forward writes each row's value to dst [rows]: hidden[r] · W + B.
func (v *ValueHead) Forward(dst, hidden []float32, rows int) {
	h := len(v.W)
	tensor.Linear(dst[:rows], hidden[:rows*h], v.W, rows, h, 1)
	for r := range dst[:rows] {
		dst[r] += v.B[0]
	}
}

// Backward adds dValues [rows] · W to dHidden and, unless g is nil, the
// head's gradients to g.
func (v *ValueHead) Backward(dHidden []float32, g *ValueHead, dValues, hidden []float32, rows int) {
	h := len(v.W)
	var dw []float32
	if g != nil {
		dw = g.W
		var db float64
		for _, d := range dValues[:rows] {
			db += float64(d)
		}
		g.B[0] += float32(db)
	}
	tensor.LinearBackward(dHidden[:rows*h], dw, dValues[:rows], hidden[:rows*h], v.W, rows, h, 1)
}
