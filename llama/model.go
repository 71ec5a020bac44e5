package llama

import (
	"fmt"

	"zhllama/tensor"
)

// Layer holds one decoder layer's weights, [out × in] as in checkpoints.
type Layer struct {
	Q, K, V, O        []float32
	Gate, Up, Down    []float32
	AttnNorm, MLPNorm []float32
}

// Model is LlamaForCausalLM's parameters in float32. The same type holds
// gradients.
type Model struct {
	Config Config
	Embed  []float32 // [vocab × hidden]
	Layers []Layer
	Norm   []float32 // [hidden]
	LMHead []float32 // [vocab × hidden]; the same slice as Embed when tied
}

// NewModel allocates zeroed parameters (or gradients) for c.
func NewModel(c Config) *Model {
	m := &Model{Config: c}
	for _, p := range m.params() {
		*p.dst = make([]float32, p.size)
	}
	if c.TieWordEmbeddings {
		m.LMHead = m.Embed
	}
	return m
}

type paramRef struct {
	name string
	dst  *[]float32
	size int
}

// params pairs each checkpoint name with its slice (lm_head only when untied).
func (m *Model) params() []paramRef {
	c := &m.Config
	if len(m.Layers) != c.NumHiddenLayers {
		m.Layers = make([]Layer, c.NumHiddenLayers)
	}
	var refs []paramRef
	for _, p := range c.Params() {
		n := 1
		for _, d := range p.Shape {
			n *= d
		}
		refs = append(refs, paramRef{p.Name, m.slot(p.Name), n})
	}
	return refs
}

func (m *Model) slot(name string) *[]float32 {
	switch name {
	case "model.embed_tokens.weight":
		return &m.Embed
	case "model.norm.weight":
		return &m.Norm
	case "lm_head.weight":
		return &m.LMHead
	}
	var i int
	var rest string
	fmt.Sscanf(name, "model.layers.%d.%s", &i, &rest)
	l := &m.Layers[i]
	return map[string]*[]float32{
		"self_attn.q_proj.weight": &l.Q, "self_attn.k_proj.weight": &l.K, "self_attn.v_proj.weight": &l.V,
		"self_attn.o_proj.weight": &l.O, "mlp.gate_proj.weight": &l.Gate, "mlp.up_proj.weight": &l.Up,
		"mlp.down_proj.weight": &l.Down, "input_layernorm.weight": &l.AttnNorm, "post_attention_layernorm.weight": &l.MLPNorm,
	}[rest]
}

// NamedParam is a parameter (or its gradient) and its checkpoint name.
type NamedParam struct {
	Name string
	Data []float32
}

// Named lists the parameters with their checkpoint names.
func (m *Model) Named() []NamedParam {
	var out []NamedParam
	for _, p := range m.params() {
		out = append(out, NamedParam{p.name, *p.dst})
	}
	return out
}

// Randomize sets the parameters as Init writes them for the same seed.
func (m *Model) Randomize(seed uint64) {
	for i, p := range m.Named() {
		next := initValues(&m.Config, seed, i, p.Name)
		for k := range p.Data {
			p.Data[k] = next()
		}
	}
}

// Load reads a model directory (config.json and safetensors) into float32,
// after checking every tensor's shape against the config.
func Load(dir string) (*Model, error) {
	s, ck, err := openChecked(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	m := NewModel(s.Config)
	for _, p := range m.params() {
		t, err := ck.Tensor(p.name)
		if err != nil {
			return nil, err
		}
		if _, err := t.Float32(*p.dst); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Acts holds a batch's activations, kept for the backward pass.
type Acts struct {
	B, T     int
	ids      []int32
	valid    []bool
	pos      []int
	cos, sin []float32
	x        [][]float32 // residual stream entering each layer, and the last one
	layers   []layerActs
	rstdF    []float32
	Hidden   []float32 // final normed hidden states [B·T × hidden]

	// Buffers reused by every step, so that training does not allocate.
	logits, dHidden []float32
	targets         []int32
	back            backBufs
}

// backBufs are the backward pass's scratch gradients.
type backBufs struct {
	dx, dn, dh, dact, dg, du, datt, dq, dk, dv []float32
}

type layerActs struct {
	rstd1, n1, q, k, v, probs, att, h []float32
	rstd2, n2, g, u, act              []float32
}

// NewActs allocates activations for batches of b sequences of t tokens.
func (m *Model) NewActs(b, t int) *Acts {
	c := &m.Config
	bt, h := b*t, c.HiddenSize
	q, kv, in := c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim, c.IntermediateSize
	a := &Acts{B: b, T: t, pos: make([]int, t), rstdF: make([]float32, bt), Hidden: make([]float32, bt*h)}
	for i := range a.pos {
		a.pos[i] = i
	}
	scaling, factor := "", 1.0
	if c.RopeScaling != nil {
		scaling, factor = c.RopeScaling.Type, c.RopeScaling.Factor
	}
	a.cos, a.sin = tensor.RopeTables(t, c.HeadDim, c.RopeTheta, scaling, factor, c.MaxPositionEmbeddings, t)
	for l := 0; l <= c.NumHiddenLayers; l++ {
		a.x = append(a.x, make([]float32, bt*h))
	}
	a.logits, a.dHidden, a.targets = make([]float32, bt*c.VocabSize), make([]float32, bt*h), make([]int32, bt)
	a.back = backBufs{
		dx: make([]float32, bt*h), dn: make([]float32, bt*h), dh: make([]float32, bt*h),
		dact: make([]float32, bt*in), dg: make([]float32, bt*in), du: make([]float32, bt*in),
		datt: make([]float32, bt*q), dq: make([]float32, bt*q), dk: make([]float32, bt*kv), dv: make([]float32, bt*kv),
	}
	for range c.NumHiddenLayers {
		a.layers = append(a.layers, layerActs{
			rstd1: make([]float32, bt), n1: make([]float32, bt*h), q: make([]float32, bt*q), k: make([]float32, bt*kv),
			v: make([]float32, bt*kv), probs: make([]float32, b*c.NumAttentionHeads*t*t), att: make([]float32, bt*q),
			h: make([]float32, bt*h), rstd2: make([]float32, bt), n2: make([]float32, bt*h),
			g: make([]float32, bt*in), u: make([]float32, bt*in), act: make([]float32, bt*in),
		})
	}
	return a
}

// Forward runs the trunk on ids [B × T]; valid marks real tokens (nil: all),
// for right-padded batches. It leaves the final hidden states in a.Hidden.
func (m *Model) Forward(a *Acts, ids []int32, valid []bool) {
	c := &m.Config
	bt, h := a.B*a.T, c.HiddenSize
	nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	q, kv, in := nh*hd, nkv*hd, c.IntermediateSize
	a.ids, a.valid = ids, valid
	tensor.Embedding(a.x[0], m.Embed, ids, h)
	eps := float32(c.RMSNormEps)
	for l := range m.Layers {
		w, la, x := &m.Layers[l], &a.layers[l], a.x[l]
		tensor.RMSNorm(la.n1, la.rstd1, x, w.AttnNorm, bt, h, eps)
		tensor.Linear(la.q, la.n1, w.Q, bt, h, q)
		tensor.Linear(la.k, la.n1, w.K, bt, h, kv)
		tensor.Linear(la.v, la.n1, w.V, bt, h, kv)
		for b := 0; b < a.B; b++ {
			sq, sk := la.q[b*a.T*q:(b+1)*a.T*q], la.k[b*a.T*kv:(b+1)*a.T*kv]
			tensor.Rope(sq, a.pos, nh, hd, a.cos, a.sin)
			tensor.Rope(sk, a.pos, nkv, hd, a.cos, a.sin)
			tensor.Attention(la.att[b*a.T*q:(b+1)*a.T*q], la.probs[b*nh*a.T*a.T:(b+1)*nh*a.T*a.T], sq, sk,
				la.v[b*a.T*kv:(b+1)*a.T*kv], a.seqValid(b), a.T, nh, nkv, hd)
		}
		tensor.Linear(la.h, la.att, w.O, bt, q, h)
		for i := range la.h {
			la.h[i] += x[i]
		}
		tensor.RMSNorm(la.n2, la.rstd2, la.h, w.MLPNorm, bt, h, eps)
		tensor.Linear(la.g, la.n2, w.Gate, bt, h, in)
		tensor.Linear(la.u, la.n2, w.Up, bt, h, in)
		tensor.SwiGLU(la.act, la.g, la.u)
		next := a.x[l+1]
		tensor.Linear(next, la.act, w.Down, bt, in, h)
		for i := range next {
			next[i] += la.h[i]
		}
	}
	tensor.RMSNorm(a.Hidden, a.rstdF, a.x[len(m.Layers)], m.Norm, bt, h, eps)
}

func (a *Acts) seqValid(b int) []bool {
	if a.valid == nil {
		return nil
	}
	return a.valid[b*a.T : (b+1)*a.T]
}

// LMLoss is the language-model head: logits = Hidden · LMHeadᵀ, and the
// mean cross-entropy of each position predicting the next label (labels
// shifted as LlamaForCausalLM shifts them; IgnoreIndex skips). It returns
// the loss, the counted tokens, and dLoss/dHidden, adding the head's
// gradient to grads.LMHead (with grads nil, only the loss is computed).
// logits, if not nil, receives the logits.
func (m *Model) LMLoss(a *Acts, labels []int32, grads *Model, logits []float32) (float64, int, []float32) {
	c := &m.Config
	bt, h, v := a.B*a.T, c.HiddenSize, c.VocabSize
	lg := a.logits
	tensor.Linear(lg, a.Hidden, m.LMHead, bt, h, v)
	if logits != nil {
		copy(logits, lg)
	}
	targets := a.targets
	for b := 0; b < a.B; b++ {
		for t := 0; t < a.T; t++ {
			targets[b*a.T+t] = tensor.IgnoreIndex
			if t+1 < a.T {
				targets[b*a.T+t] = labels[b*a.T+t+1]
			}
		}
	}
	loss, n := tensor.CrossEntropy(lg, targets, bt, v)
	if grads == nil {
		return loss, n, nil // evaluation only
	}
	dHidden := a.dHidden
	clear(dHidden)
	tensor.LinearBackward(dHidden, grads.LMHead, lg, a.Hidden, m.LMHead, bt, h, v)
	return loss, n, dHidden
}

// Backward takes dLoss/dHidden through the trunk, adding parameter
// gradients to grads.
func (m *Model) Backward(a *Acts, dHidden []float32, grads *Model) {
	c := &m.Config
	bt, h := a.B*a.T, c.HiddenSize
	nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	q, kv, in := nh*hd, nkv*hd, c.IntermediateSize
	bb := &a.back
	dx, dn, dh := bb.dx, bb.dn, bb.dh
	dact, dg, du := bb.dact, bb.dg, bb.du
	datt, dq, dk, dv := bb.datt, bb.dq, bb.dk, bb.dv
	clear(dx)
	tensor.RMSNormBackward(dx, grads.Norm, dHidden, a.x[len(m.Layers)], m.Norm, a.rstdF, bt, h)
	for l := len(m.Layers) - 1; l >= 0; l-- {
		w, g, la := &m.Layers[l], &grads.Layers[l], &a.layers[l]
		// MLP: next = h + Down(SwiGLU(Gate n2, Up n2)), n2 = RMSNorm(h).
		copy(dh, dx)
		clear(dact)
		tensor.LinearBackward(dact, g.Down, dx, la.act, w.Down, bt, in, h)
		tensor.SwiGLUBackward(dg, du, dact, la.g, la.u)
		clear(dn)
		tensor.LinearBackward(dn, g.Gate, dg, la.n2, w.Gate, bt, h, in)
		tensor.LinearBackward(dn, g.Up, du, la.n2, w.Up, bt, h, in)
		tensor.RMSNormBackward(dh, g.MLPNorm, dn, la.h, w.MLPNorm, la.rstd2, bt, h)
		// Attention: h = x + O(Attn(Rope(Q n1), Rope(K n1), V n1)), n1 = RMSNorm(x).
		copy(dx, dh)
		clear(datt)
		tensor.LinearBackward(datt, g.O, dh, la.att, w.O, bt, q, h)
		clear(dq)
		clear(dk)
		clear(dv)
		for b := 0; b < a.B; b++ {
			sq, sk, sv := la.q[b*a.T*q:(b+1)*a.T*q], la.k[b*a.T*kv:(b+1)*a.T*kv], la.v[b*a.T*kv:(b+1)*a.T*kv]
			bq, bk, bv := dq[b*a.T*q:(b+1)*a.T*q], dk[b*a.T*kv:(b+1)*a.T*kv], dv[b*a.T*kv:(b+1)*a.T*kv]
			tensor.AttentionBackward(bq, bk, bv, datt[b*a.T*q:(b+1)*a.T*q], la.probs[b*nh*a.T*a.T:(b+1)*nh*a.T*a.T], sq, sk, sv, a.T, nh, nkv, hd)
			tensor.RopeBackward(bq, a.pos, nh, hd, a.cos, a.sin)
			tensor.RopeBackward(bk, a.pos, nkv, hd, a.cos, a.sin)
		}
		clear(dn)
		tensor.LinearBackward(dn, g.Q, dq, la.n1, w.Q, bt, h, q)
		tensor.LinearBackward(dn, g.K, dk, la.n1, w.K, bt, h, kv)
		tensor.LinearBackward(dn, g.V, dv, la.n1, w.V, bt, h, kv)
		tensor.RMSNormBackward(dx, g.AttnNorm, dn, a.x[l], w.AttnNorm, la.rstd1, bt, h)
	}
	tensor.EmbeddingBackward(grads.Embed, dx, a.ids, h)
}

// MemoryEstimate is the float32 bytes a training step needs for batches of
// b × t: parameters, gradients and AdamW's two moments (16 bytes per
// parameter), and the activations kept for the backward pass (with the
// logits).
func (c *Config) MemoryEstimate(b, t int) (params, acts int64) {
	params = 16 * c.NumParams()
	bt := int64(b * t)
	h, q, kv, in := int64(c.HiddenSize), int64(c.NumAttentionHeads*c.HeadDim), int64(c.NumKeyValueHeads*c.HeadDim), int64(c.IntermediateSize)
	perLayer := bt*(2+3*h+2*q+2*kv+3*in) + int64(b*c.NumAttentionHeads)*int64(t)*int64(t)
	acts = 4 * (int64(c.NumHiddenLayers)*perLayer + bt*(2*h+int64(c.VocabSize)))
	return params, acts
}
