package llama

import (
	"io"

	"zhllama/tensor"
)

// Layer holds one decoder layer's weights, [out × in] as in checkpoints.
type Layer struct {
	Q, K, V, O        Weight
	Gate, Up, Down    Weight
	AttnNorm, MLPNorm []float32
}

// Model is LlamaForCausalLM's parameters. The same type holds gradients.
type Model struct {
	Config Config
	Embed  Weight // [vocab × hidden]
	Layers []Layer
	Norm   []float32 // [hidden]
	LMHead Weight    // [vocab × hidden]; the same as Embed when tied

	mapped io.Closer // the checkpoint that compact weights alias, if any
}

// NewModel allocates zeroed parameters (or gradients) for c.
func NewModel(c Config) *Model {
	m := &Model{Config: c}
	for _, r := range m.Refs() {
		*r.Data = make([]float32, r.Size())
	}
	m.Tie()
	return m
}

// Tie makes the head the embedding again when the config ties them (after
// the embedding's values were replaced).
func (m *Model) Tie() {
	if m.Config.TieWordEmbeddings {
		m.LMHead = m.Embed
	}
}

// embed looks up the rows of ids.
func (m *Model) embed(x []float32, ids []int32) {
	h := m.Config.HiddenSize
	if m.Embed.Compact == nil {
		tensor.Embedding(x, m.Embed.W, ids, h)
		return
	}
	for i, id := range ids {
		m.Embed.row(x[i*h:(i+1)*h], int(id))
	}
}

// Randomize sets the parameters as Init writes them for the same seed.
func (m *Model) Randomize(seed uint64) {
	for i, p := range m.Named() {
		next := InitValues(&m.Config, seed, i, p.Name)
		for k := range p.Data {
			p.Data[k] = next()
		}
	}
}

// Close releases the checkpoint files a model loaded with KeepBF16 reads
// its weights from; the model is unusable after.
func (m *Model) Close() error {
	if m.mapped == nil {
		return nil
	}
	err := m.mapped.Close()
	m.mapped = nil
	return err
}

// Keep makes the model own c, the mapped file its compact weights read
// (a GGUF file's tensors): Close closes it.
func (m *Model) Keep(c io.Closer) { m.mapped = c }

// CompactBF16 rounds every weight matrix to bfloat16 and keeps it so,
// read-only: for inference with half the memory.
func (m *Model) CompactBF16() {
	for _, r := range m.Refs() {
		if w := r.Weight; w != nil && w.W != nil {
			w.Compact, w.W = tensor.NewBF16(w.W, r.Shape[0], r.Shape[1]), nil
		}
	}
	m.Tie()
}

// Quantize stores the decoder layers' float32 projections as NF4 (bits 4)
// or int8 (8), frozen, as QLoRA does; embeddings, head and norms stay.
func (m *Model) Quantize(bits int) error {
	for _, r := range m.Refs() {
		if w := r.Weight; w != nil && w.W != nil && r.Layer >= 0 {
			if err := w.quantize(r.Shape[0], r.Shape[1], bits); err != nil {
				return err
			}
		}
	}
	return nil
}

// Bytes is the memory the parameters hold.
func (m *Model) Bytes() int64 {
	var n int64
	for _, r := range m.Refs() {
		if w := r.Weight; w != nil && w.Compact != nil {
			n += w.Compact.Bytes()
			continue
		}
		n += 4 * int64(len(*r.Data))
	}
	return n
}

// attention computes la.att from la.q, la.k and la.v (after RoPE) for
// layer l: over the batch's own sequences in training, over the cached
// past in decoding.
type attention func(l int, la *layerActs)

// layer runs decoder layer l on n rows, from the residual stream x to
// next (which may be x itself), keeping its activations in la. It is the
// one layer path of training and decoding:
//
//	h    = x + O(attend(Rope(Q n1), Rope(K n1), V n1)),  n1 = RMSNorm(x)
//	next = h + Down(SwiGLU(Gate n2, Up n2)),             n2 = RMSNorm(h)
func (m *Model) layer(p *Pass, l int, la *layerActs, x, next []float32, n int, pos []int, cos, sin []float32, attend attention) {
	c := &m.Config
	h, q, kv, in := dims(c)
	eps := float32(c.RMSNormEps)
	w := &m.Layers[l]
	tensor.RMSNorm(la.n1, la.rstd1, x, w.AttnNorm, n, h, eps)
	forwardShared(p, la.n1, n, h, []*Weight{&w.Q, &w.K, &w.V}, [][]float32{la.q, la.k, la.v}, []int{q, kv, kv})
	tensor.Rope(la.q, pos, c.NumAttentionHeads, c.HeadDim, cos, sin)
	tensor.Rope(la.k, pos, c.NumKeyValueHeads, c.HeadDim, cos, sin)
	attend(l, la)
	w.O.forward(p, la.h, la.att, n, q, h)
	tensor.Add(la.h, x)
	tensor.RMSNorm(la.n2, la.rstd2, la.h, w.MLPNorm, n, h, eps)
	forwardShared(p, la.n2, n, h, []*Weight{&w.Gate, &w.Up}, [][]float32{la.g, la.u}, []int{in, in})
	tensor.SwiGLU(la.act, la.g, la.u)
	w.Down.forward(p, next, la.act, n, in, h)
	tensor.Add(next, la.h)
}

// Forward runs the trunk on ids [B × T]; valid marks real tokens (nil: all),
// for right-padded batches. It leaves the final hidden states in a.Hidden.
func (m *Model) Forward(a *Acts, ids []int32, valid []bool) {
	c := &m.Config
	a.ids, a.valid = ids, valid
	m.embed(a.x[0], ids)
	attend := m.batchAttention(a)
	for l := range m.Layers {
		m.layer(&a.Pass, l, a.layerActs(l), a.x[l], a.x[l+1], a.B*a.T, a.pos, a.cos, a.sin, attend)
	}
	tensor.RMSNorm(a.Hidden, a.rstdF, a.x[len(m.Layers)], m.Norm, a.B*a.T, c.HiddenSize, float32(c.RMSNormEps))
}

// batchAttention is causal attention within each sequence of a's batch,
// keeping the probabilities for the backward pass.
func (m *Model) batchAttention(a *Acts) attention {
	c := &m.Config
	nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	q, kv, tt := nh*hd, nkv*hd, a.T
	return func(_ int, la *layerActs) {
		bt := a.B * a.T
		tensor.Attention(la.att[:bt*q], la.probs[:a.B*nh*tt*tt], la.q[:bt*q], la.k[:bt*kv], la.v[:bt*kv], a.valid, a.B, tt, nh, nkv, hd)
	}
}

// Backward takes dLoss/dHidden through the trunk, adding parameter
// gradients to grads.
func (m *Model) Backward(a *Acts, dHidden []float32, grads *Model) {
	c := &m.Config
	bt, tt := a.B*a.T, a.T
	h, q, kv, in := dims(c)
	nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	p := &a.Pass
	bb := &a.back
	dx, dn, dh := bb.dx, bb.dn, bb.dh
	dact, dg, du := bb.dact, bb.dg, bb.du
	datt, dq, dk, dv := bb.datt, bb.dq, bb.dk, bb.dv
	clear(dx)
	tensor.RMSNormBackward(dx, grads.Norm, dHidden, a.x[len(m.Layers)], m.Norm, a.rstdF, bt, h)
	var attend attention
	if a.recompute {
		attend = m.batchAttention(a)
	}
	for l := len(m.Layers) - 1; l >= 0; l-- {
		w, g, la := &m.Layers[l], &grads.Layers[l], a.layerActs(l)
		if a.recompute {
			// The layer's activations again, from its saved input.
			m.layer(p, l, la, a.x[l], a.x[l+1], bt, a.pos, a.cos, a.sin, attend)
		}
		// MLP: next = h + Down(SwiGLU(Gate n2, Up n2)), n2 = RMSNorm(h).
		copy(dh, dx)
		clear(dact)
		w.Down.backward(p, dact, &g.Down, dx, la.act, bt, in, h)
		tensor.SwiGLUBackward(dg, du, dact, la.g, la.u)
		clear(dn)
		w.Gate.backward(p, dn, &g.Gate, dg, la.n2, bt, h, in)
		w.Up.backward(p, dn, &g.Up, du, la.n2, bt, h, in)
		tensor.RMSNormBackward(dh, g.MLPNorm, dn, la.h, w.MLPNorm, la.rstd2, bt, h)
		// Attention: h = x + O(Attn(Rope(Q n1), Rope(K n1), V n1)), n1 = RMSNorm(x).
		copy(dx, dh)
		clear(datt)
		w.O.backward(p, datt, &g.O, dh, la.att, bt, q, h)
		clear(dq)
		clear(dk)
		clear(dv)
		tensor.AttentionBackward(dq[:bt*q], dk[:bt*kv], dv[:bt*kv], datt[:bt*q], la.probs[:a.B*nh*tt*tt],
			la.q[:bt*q], la.k[:bt*kv], la.v[:bt*kv], a.B, tt, nh, nkv, hd)
		tensor.RopeBackward(dq, a.pos, nh, hd, a.cos, a.sin)
		tensor.RopeBackward(dk, a.pos, nkv, hd, a.cos, a.sin)
		clear(dn)
		w.Q.backward(p, dn, &g.Q, dq, la.n1, bt, h, q)
		w.K.backward(p, dn, &g.K, dk, la.n1, bt, h, kv)
		w.V.backward(p, dn, &g.V, dv, la.n1, bt, h, kv)
		tensor.RMSNormBackward(dx, g.AttnNorm, dn, a.x[l], w.AttnNorm, la.rstd1, bt, h)
	}
	if grads.Embed.W != nil {
		tensor.EmbeddingBackward(grads.Embed.W, dx, a.ids, h)
	}
}
