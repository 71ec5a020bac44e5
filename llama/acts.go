package llama

import (
	"fmt"

	"zhllama/tensor"
)

// Acts holds a batch's activations, kept for the backward pass, and the
// choices of its pass (adapters, dropout). Shapes use bt = B·T rows, h the
// hidden size, q = heads·head_dim, kv = kv_heads·head_dim, in the MLP's
// intermediate size and v the vocabulary.
type Acts struct {
	Pass
	B, T      int
	maxT      int  // the sequence length it was made for
	recompute bool // gradient checkpointing: one layer's activations, recomputed in Backward
	ids       []int32
	valid     []bool      // [bt], nil: every token is real
	pos       []int       // [bt] each row's position in its sequence
	cos, sin  []float32   // [T × head_dim/2] RoPE tables
	x         [][]float32 // [layers+1][bt × h] the residual stream entering each layer, and the last one
	layers    []layerActs // per layer, or one shared with gradient checkpointing
	rstdF     []float32   // [bt] the final norm's reciprocal RMS
	Hidden    []float32   // [bt × h] the final normed hidden states

	// Buffers reused by every step.
	logits []float32 // [headRows × v] one chunk of the LM head's logits
	// The LM head's packed rows (see headChunks): their indices, targets,
	// hidden states, gradients and log-probabilities.
	headRowIdx              []int
	headTg                  []int32
	headIn, headDIn, headLP []float32
	dHidden                 []float32 // [bt × h] what the heads return
	targets                 []int32   // [bt] labels shifted left by one
	back                    backBufs
}

// backBufs are the backward pass's scratch gradients.
type backBufs struct {
	dx, dn, dh   []float32 // [bt × h]
	dact, dg, du []float32 // [bt × in]
	datt, dq     []float32 // [bt × q]
	dk, dv       []float32 // [bt × kv]
}

// layerActs are one decoder layer's activations.
type layerActs struct {
	rstd1, rstd2 []float32 // [bt] reciprocal RMS of the two norms
	n1, n2       []float32 // [bt × h] the normed inputs of attention and MLP
	q            []float32 // [bt × q] queries after RoPE
	k, v         []float32 // [bt × kv] keys after RoPE, values
	probs        []float32 // [B × heads × T × T] attention probabilities (training only)
	att          []float32 // [bt × q] attention output
	h            []float32 // [bt × h] the residual stream after attention
	g, u, act    []float32 // [bt × in] gate, up and SwiGLU(gate, up)
}

// size sizes la's buffers for rows tokens (and probs attention
// probabilities) with take, which allocates or reslices.
func (la *layerActs) size(c *Config, rows, probs int, take func(*[]float32, int)) {
	h, q, kv, in := dims(c)
	for _, p := range []struct {
		buf *[]float32
		n   int
	}{{&la.rstd1, rows}, {&la.n1, rows * h}, {&la.q, rows * q}, {&la.k, rows * kv}, {&la.v, rows * kv},
		{&la.probs, probs}, {&la.att, rows * q}, {&la.h, rows * h}, {&la.rstd2, rows},
		{&la.n2, rows * h}, {&la.g, rows * in}, {&la.u, rows * in}, {&la.act, rows * in}} {
		take(p.buf, p.n)
	}
}

func alloc(buf *[]float32, n int) { *buf = make([]float32, n) }

// NewActs allocates activations for batches of b sequences of t tokens.
func (m *Model) NewActs(b, t int) *Acts {
	a := &Acts{}
	a.layout(&m.Config, b, t, alloc)
	return a
}

// NewCheckpointedActs is NewActs with gradient checkpointing: only each
// layer's input is kept, and Backward recomputes a layer's activations
// before taking its gradients — a forward pass more for activations of
// one layer instead of all.
func (m *Model) NewCheckpointedActs(b, t int) *Acts {
	a := &Acts{recompute: true}
	a.layout(&m.Config, b, t, alloc)
	return a
}

// Reshape makes a hold batches of b × t, reusing its buffers; b·t must not
// pass what it was made for.
func (a *Acts) Reshape(c *Config, b, t int) {
	if b*t > cap(a.rstdF) || t > a.maxT {
		panic(fmt.Sprintf("llama: Reshape to %d × %d past the activations' %d tokens of up to %d", b, t, cap(a.rstdF), a.maxT))
	}
	if b == a.B && t == a.T {
		return
	}
	a.layout(c, b, t, func(buf *[]float32, n int) { *buf = (*buf)[:n] })
}

// layout sizes every buffer for b × t with take, which allocates or
// reslices.
func (a *Acts) layout(c *Config, b, t int, take func(*[]float32, int)) {
	bt, h := b*t, c.HiddenSize
	_, q, kv, in := dims(c)
	a.B, a.T = b, t
	if a.maxT == 0 {
		a.maxT = t
	}
	a.pos = make([]int, bt)
	for i := range a.pos {
		a.pos[i] = i % t
	}
	a.cos, a.sin = ropeTables(c, t, t)
	take(&a.rstdF, bt)
	take(&a.Hidden, bt*h)
	if a.x == nil {
		a.x = make([][]float32, c.NumHiddenLayers+1)
		n := c.NumHiddenLayers
		if a.recompute {
			n = 1
		}
		a.layers = make([]layerActs, n)
	}
	for l := range a.x {
		take(&a.x[l], bt*h)
	}
	if a.logits == nil {
		a.logits = make([]float32, headRows(c, bt)*c.VocabSize)
	}
	take(&a.dHidden, bt*h)
	if a.targets == nil || cap(a.targets) < bt {
		a.targets = make([]int32, bt)
	}
	a.targets = a.targets[:bt]
	bb := &a.back
	for _, p := range []struct {
		buf *[]float32
		n   int
	}{{&bb.dx, bt * h}, {&bb.dn, bt * h}, {&bb.dh, bt * h}, {&bb.dact, bt * in}, {&bb.dg, bt * in}, {&bb.du, bt * in},
		{&bb.datt, bt * q}, {&bb.dq, bt * q}, {&bb.dk, bt * kv}, {&bb.dv, bt * kv}} {
		take(p.buf, p.n)
	}
	for l := range a.layers {
		a.layers[l].size(c, bt, b*c.NumAttentionHeads*t*t, take)
	}
}

// ropeTables are the cos and sin tables for positions, with rope_scaling
// as transformers applies it for sequences of seqLen.
func ropeTables(c *Config, positions, seqLen int) (cos, sin []float32) {
	scaling, factor := "", 1.0
	if c.RopeScaling != nil {
		scaling, factor = c.RopeScaling.Type, c.RopeScaling.Factor
	}
	return tensor.RopeTables(positions, c.HeadDim, c.RopeTheta, scaling, factor, c.MaxPositionEmbeddings, seqLen)
}

// layerActs is where layer l keeps its activations: its own, or with
// gradient checkpointing the one set all layers share.
func (a *Acts) layerActs(l int) *layerActs {
	if a.recompute {
		return &a.layers[0]
	}
	return &a.layers[l]
}

// MemoryEstimate is the float32 bytes a training step needs for batches of
// b × t: parameters, gradients and AdamW's two moments (16 bytes per
// parameter), and the activations kept for the backward pass.
func (c *Config) MemoryEstimate(b, t int) (params, acts int64) {
	return 16 * c.NumParams(), c.ActivationBytes(b, t, false)
}

// ActivationBytes is the float32 bytes of the activations a batch of b × t
// keeps for the backward pass (with a chunk of the logits and the residual
// stream); with gradient checkpointing one layer's worth instead of every
// layer's.
func (c *Config) ActivationBytes(b, t int, checkpointed bool) int64 {
	bt := int64(b * t)
	h, q, kv, in := int64(c.HiddenSize), int64(c.NumAttentionHeads*c.HeadDim), int64(c.NumKeyValueHeads*c.HeadDim), int64(c.IntermediateSize)
	perLayer := bt*(2+2*h+2*q+2*kv+3*in) + int64(b*c.NumAttentionHeads)*int64(t)*int64(t)
	layers := int64(c.NumHiddenLayers)
	if checkpointed {
		layers = 1
	}
	logits := int64(headRows(c, b*t)) * int64(c.VocabSize)
	return 4 * (layers*perLayer + int64(c.NumHiddenLayers+1)*bt*h + bt*2*h + logits)
}
