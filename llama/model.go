package llama

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"unsafe"

	"zhllama/safetensors"
	"zhllama/tensor"
)

// Layer holds one decoder layer's weights, [out × in] as in checkpoints.
type Layer struct {
	Q, K, V, O        Weight
	Gate, Up, Down    Weight
	AttnNorm, MLPNorm []float32
}

// Weight is a weight matrix [out × in]: float32 values in W, or, for a
// frozen weight kept compact in memory (bfloat16, quantized), Low with W
// nil.
type Weight struct {
	W    []float32
	Low  tensor.Matrix
	LoRA *LoRA // a trained low-rank update on top, if any
}

// forward computes y[t×out] = x[t×in] · Wᵀ.
func (w *Weight) forward(y, x []float32, t, in, out int) {
	if w.Low != nil {
		tensor.LinearMatrix(y, x, w.Low, t, in, out)
	} else {
		tensor.Linear(y, x, w.W, t, in, out)
	}
	if w.LoRA != nil {
		w.LoRA.forward(y, x, t, in, out)
	}
}

// backward adds dy·W to dx and, unless g is nil or holds no values (a
// frozen weight), dyᵀ·x to g. Compact weights are always frozen.
func (w *Weight) backward(dx []float32, g *Weight, dy, x []float32, t, in, out int) {
	var dw []float32
	if g != nil {
		dw = g.W
	}
	if w.LoRA != nil {
		var gl *LoRA
		if g != nil {
			gl = g.LoRA
		}
		w.LoRA.backward(dx, gl, dy, t, in, out)
	}
	if w.Low != nil {
		tensor.LinearMatrixBackward(dx, dy, w.Low, t, in, out)
		return
	}
	tensor.LinearBackward(dx, dw, dy, x, w.W, t, in, out)
}

// row widens row r into dst.
func (w *Weight) row(dst []float32, r int) {
	if w.Low != nil {
		w.Low.Widen(dst, r, 0)
		return
	}
	copy(dst, w.W[r*len(dst):(r+1)*len(dst)])
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
	for _, p := range m.params() {
		*p.dst = make([]float32, p.size)
	}
	if c.TieWordEmbeddings {
		m.LMHead = m.Embed
	}
	return m
}

// embed looks up the rows of ids.
func (m *Model) embed(x []float32, ids []int32) {
	h := m.Config.HiddenSize
	if m.Embed.Low == nil {
		tensor.Embedding(x, m.Embed.W, ids, h)
		return
	}
	for i, id := range ids {
		m.Embed.row(x[i*h:(i+1)*h], int(id))
	}
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
		refs = append(refs, paramRef{p.Name, m.Slot(p.Name), n})
	}
	return refs
}

// Slot is the slice a checkpoint name refers to, in m (whose Layers must
// be allocated).
func (m *Model) Slot(name string) *[]float32 {
	if w := m.Weight(name); w != nil {
		return &w.W
	}
	if name == "model.norm.weight" {
		return &m.Norm
	}
	l, rest := m.layer(name)
	if rest == "input_layernorm.weight" {
		return &l.AttnNorm
	}
	return &l.MLPNorm
}

// Weight is the matrix a checkpoint name refers to, nil for the norms.
func (m *Model) Weight(name string) *Weight {
	switch name {
	case "model.embed_tokens.weight":
		return &m.Embed
	case "lm_head.weight":
		return &m.LMHead
	case "model.norm.weight":
		return nil
	}
	l, rest := m.layer(name)
	return map[string]*Weight{
		"self_attn.q_proj.weight": &l.Q, "self_attn.k_proj.weight": &l.K, "self_attn.v_proj.weight": &l.V,
		"self_attn.o_proj.weight": &l.O, "mlp.gate_proj.weight": &l.Gate, "mlp.up_proj.weight": &l.Up,
		"mlp.down_proj.weight": &l.Down,
	}[rest]
}

// layer splits "model.layers.N.rest" into layer N and rest.
func (m *Model) layer(name string) (*Layer, string) {
	var i int
	var rest string
	fmt.Sscanf(name, "model.layers.%d.%s", &i, &rest)
	return &m.Layers[i], rest
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
func Load(dir string) (*Model, error) { return LoadWith(dir, LoadOptions{}) }

// LoadOptions control LoadWith.
type LoadOptions struct {
	// KeepBF16 keeps bfloat16 weight matrices in bfloat16, read-only, for
	// inference: half the memory, and the same results, since widening
	// bfloat16 to float32 is exact.
	KeepBF16 bool
	// QuantizeBits, 4 or 8, stores the decoder layers' projections as NF4
	// (with double quantization) or row-wise int8, frozen, as QLoRA does;
	// embeddings, the head and the norms stay float32.
	QuantizeBits int
	// Progress, if set, is told after each tensor: done of total bytes.
	Progress func(done, total int64)
}

// LoadWith is Load with options.
func LoadWith(dir string, o LoadOptions) (*Model, error) {
	s, ck, err := openChecked(dir)
	if err != nil {
		return nil, err
	}
	m := &Model{Config: s.Config}
	mapped := false
	var done int64
	for _, p := range m.params() {
		t, err := ck.Tensor(p.name)
		if err != nil {
			ck.Close()
			return nil, err
		}
		if o.Progress != nil {
			o.Progress(done, s.Bytes) // the tensors before this one are converted
		}
		done += int64(len(t.Data))
		if w := m.Weight(p.name); w != nil && o.QuantizeBits != 0 && strings.HasPrefix(p.name, "model.layers.") {
			// Tensor by tensor, so that the float32 model never exists whole.
			if w.W, err = t.Float32(nil); err == nil {
				err = w.quantize(t.Shape[0], t.Shape[1], o.QuantizeBits)
			}
			if err != nil {
				ck.Close()
				return nil, err
			}
			t.Release()
			continue
		}
		if w := m.Weight(p.name); w != nil && o.KeepBF16 && t.DType == safetensors.BF16 {
			w.Low = &tensor.BF16{Rows: t.Shape[0], Cols: t.Shape[1], Data: bf16View(t.Data)}
			mapped = true
			continue
		}
		if *p.dst, err = t.Float32(nil); err != nil {
			ck.Close()
			return nil, err
		}
		t.Release()
	}
	if o.Progress != nil {
		o.Progress(s.Bytes, s.Bytes)
	}
	if m.Config.TieWordEmbeddings {
		m.LMHead = m.Embed
	}
	if mapped {
		m.mapped = ck // the bfloat16 weights are the file's pages
	} else {
		ck.Close()
	}
	return m, nil
}

// bf16View is b as little-endian uint16s: the mapped file itself where
// the alignment allows (no copy, and pages the kernel can drop and reread
// under memory pressure), else a copy.
func bf16View(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&b[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
	}
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return out
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

// CompactBF16 rounds every weight matrix to bfloat16 and keeps it so,
// read-only: for inference with half the memory.
func (m *Model) CompactBF16() {
	for _, p := range m.Config.Params() {
		if w := m.Weight(p.Name); w != nil && w.W != nil {
			w.Low, w.W = tensor.NewBF16(w.W, p.Shape[0], p.Shape[1]), nil
		}
	}
	if m.Config.TieWordEmbeddings {
		m.LMHead = m.Embed
	}
}

// Quantize stores the decoder layers' float32 projections as NF4 (bits 4)
// or int8 (8), frozen, as QLoRA does; embeddings, head and norms stay.
func (m *Model) Quantize(bits int) error {
	for _, p := range m.Config.Params() {
		if w := m.Weight(p.Name); w != nil && w.W != nil && strings.HasPrefix(p.Name, "model.layers.") {
			if err := w.quantize(p.Shape[0], p.Shape[1], bits); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *Weight) quantize(rows, cols, bits int) error {
	q, err := tensor.Quantize(w.W, rows, cols, bits)
	if err != nil {
		return err
	}
	w.Low, w.W = q, nil
	return nil
}

// Bytes is the memory the parameters hold.
func (m *Model) Bytes() int64 {
	var n int64
	for _, p := range m.params() {
		if w := m.Weight(p.name); w != nil && w.Low != nil {
			n += w.Low.Bytes()
			continue
		}
		n += 4 * int64(len(*p.dst))
	}
	return n
}

// Acts holds a batch's activations, kept for the backward pass.
type Acts struct {
	B, T      int
	maxT      int  // the sequence length it was made for
	recompute bool // gradient checkpointing: one layer's activations, recomputed in Backward
	ids       []int32
	valid     []bool
	pos       []int
	cos, sin  []float32
	x         [][]float32 // residual stream entering each layer, and the last one
	layers    []layerActs
	rstdF     []float32
	Hidden    []float32 // final normed hidden states [B·T × hidden]

	// LossDenom, when not 0, is the token count LMLoss's gradient is
	// averaged over instead of the batch's own: the tokens of all the
	// micro-batches of an optimizer step.
	LossDenom int

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
	a := &Acts{}
	a.layout(&m.Config, b, t, func(buf *[]float32, n int) { *buf = make([]float32, n) })
	return a
}

// NewCheckpointedActs is NewActs with gradient checkpointing: only each
// layer's input is kept, and Backward recomputes a layer's activations
// before taking its gradients — a forward pass more for activations of
// one layer instead of all.
func (m *Model) NewCheckpointedActs(b, t int) *Acts {
	a := &Acts{recompute: true}
	a.layout(&m.Config, b, t, func(buf *[]float32, n int) { *buf = make([]float32, n) })
	return a
}

// Reshape makes a hold batches of b × t, reusing its buffers; b·t must not
// pass what it was made for.
func (a *Acts) Reshape(c *Config, b, t int) {
	if b*t > cap(a.rstdF) || t > a.maxT {
		panic("llama: Reshape past the activations' size")
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
	q, kv, in := c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim, c.IntermediateSize
	a.B, a.T = b, t
	if a.maxT == 0 {
		a.maxT = t
	}
	a.pos = make([]int, t)
	for i := range a.pos {
		a.pos[i] = i
	}
	scaling, factor := "", 1.0
	if c.RopeScaling != nil {
		scaling, factor = c.RopeScaling.Type, c.RopeScaling.Factor
	}
	a.cos, a.sin = tensor.RopeTables(t, c.HeadDim, c.RopeTheta, scaling, factor, c.MaxPositionEmbeddings, t)
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
	take(&a.logits, bt*c.VocabSize)
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
		la := &a.layers[l]
		for _, p := range []struct {
			buf *[]float32
			n   int
		}{{&la.rstd1, bt}, {&la.n1, bt * h}, {&la.q, bt * q}, {&la.k, bt * kv}, {&la.v, bt * kv},
			{&la.probs, b * c.NumAttentionHeads * t * t}, {&la.att, bt * q}, {&la.h, bt * h}, {&la.rstd2, bt},
			{&la.n2, bt * h}, {&la.g, bt * in}, {&la.u, bt * in}, {&la.act, bt * in}} {
			take(p.buf, p.n)
		}
	}
}

// Forward runs the trunk on ids [B × T]; valid marks real tokens (nil: all),
// for right-padded batches. It leaves the final hidden states in a.Hidden.
func (m *Model) Forward(a *Acts, ids []int32, valid []bool) {
	c := &m.Config
	a.ids, a.valid = ids, valid
	m.embed(a.x[0], ids)
	for l := range m.Layers {
		m.layerForward(a, l)
	}
	tensor.RMSNorm(a.Hidden, a.rstdF, a.x[len(m.Layers)], m.Norm, a.B*a.T, c.HiddenSize, float32(c.RMSNormEps))
}

// layerActs is where layer l keeps its activations: its own, or with
// gradient checkpointing the one set all layers share.
func (a *Acts) layerActs(l int) *layerActs {
	if a.recompute {
		return &a.layers[0]
	}
	return &a.layers[l]
}

// layerForward runs decoder layer l from a.x[l] to a.x[l+1].
func (m *Model) layerForward(a *Acts, l int) {
	c := &m.Config
	bt, h := a.B*a.T, c.HiddenSize
	nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	q, kv, in := nh*hd, nkv*hd, c.IntermediateSize
	eps := float32(c.RMSNormEps)
	w, la, x := &m.Layers[l], a.layerActs(l), a.x[l]
	tensor.RMSNorm(la.n1, la.rstd1, x, w.AttnNorm, bt, h, eps)
	w.Q.forward(la.q, la.n1, bt, h, q)
	w.K.forward(la.k, la.n1, bt, h, kv)
	w.V.forward(la.v, la.n1, bt, h, kv)
	for b := 0; b < a.B; b++ {
		sq, sk := la.q[b*a.T*q:(b+1)*a.T*q], la.k[b*a.T*kv:(b+1)*a.T*kv]
		tensor.Rope(sq, a.pos, nh, hd, a.cos, a.sin)
		tensor.Rope(sk, a.pos, nkv, hd, a.cos, a.sin)
		tensor.Attention(la.att[b*a.T*q:(b+1)*a.T*q], la.probs[b*nh*a.T*a.T:(b+1)*nh*a.T*a.T], sq, sk,
			la.v[b*a.T*kv:(b+1)*a.T*kv], a.seqValid(b), a.T, nh, nkv, hd)
	}
	w.O.forward(la.h, la.att, bt, q, h)
	for i := range la.h {
		la.h[i] += x[i]
	}
	tensor.RMSNorm(la.n2, la.rstd2, la.h, w.MLPNorm, bt, h, eps)
	w.Gate.forward(la.g, la.n2, bt, h, in)
	w.Up.forward(la.u, la.n2, bt, h, in)
	tensor.SwiGLU(la.act, la.g, la.u)
	next := a.x[l+1]
	w.Down.forward(next, la.act, bt, in, h)
	for i := range next {
		next[i] += la.h[i]
	}
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
	m.LMHead.forward(lg, a.Hidden, bt, h, v)
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
	loss, n := tensor.CrossEntropy(lg, targets, bt, v, a.LossDenom)
	if grads == nil {
		return loss, n, nil // evaluation only
	}
	dHidden := a.dHidden
	clear(dHidden)
	m.LMHead.backward(dHidden, &grads.LMHead, lg, a.Hidden, bt, h, v)
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
		if a.recompute {
			m.layerForward(a, l) // the layer's activations again, from its saved input
		}
		w, g, la := &m.Layers[l], &grads.Layers[l], a.layerActs(l)
		// MLP: next = h + Down(SwiGLU(Gate n2, Up n2)), n2 = RMSNorm(h).
		copy(dh, dx)
		clear(dact)
		w.Down.backward(dact, &g.Down, dx, la.act, bt, in, h)
		tensor.SwiGLUBackward(dg, du, dact, la.g, la.u)
		clear(dn)
		w.Gate.backward(dn, &g.Gate, dg, la.n2, bt, h, in)
		w.Up.backward(dn, &g.Up, du, la.n2, bt, h, in)
		tensor.RMSNormBackward(dh, g.MLPNorm, dn, la.h, w.MLPNorm, la.rstd2, bt, h)
		// Attention: h = x + O(Attn(Rope(Q n1), Rope(K n1), V n1)), n1 = RMSNorm(x).
		copy(dx, dh)
		clear(datt)
		w.O.backward(datt, &g.O, dh, la.att, bt, q, h)
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
		w.Q.backward(dn, &g.Q, dq, la.n1, bt, h, q)
		w.K.backward(dn, &g.K, dk, la.n1, bt, h, kv)
		w.V.backward(dn, &g.V, dv, la.n1, bt, h, kv)
		tensor.RMSNormBackward(dx, g.AttnNorm, dn, a.x[l], w.AttnNorm, la.rstd1, bt, h)
	}
	if grads.Embed.W != nil {
		tensor.EmbeddingBackward(grads.Embed.W, dx, a.ids, h)
	}
}

// MemoryEstimate is the float32 bytes a training step needs for batches of
// b × t: parameters, gradients and AdamW's two moments (16 bytes per
// parameter), and the activations kept for the backward pass (with the
// logits).
func (c *Config) MemoryEstimate(b, t int) (params, acts int64) {
	return 16 * c.NumParams(), c.ActivationBytes(b, t, false)
}

// ActivationBytes is the float32 bytes of the activations a batch of b × t
// keeps for the backward pass (with the logits and the residual stream);
// with gradient checkpointing one layer's worth instead of every layer's.
func (c *Config) ActivationBytes(b, t int, checkpointed bool) int64 {
	bt := int64(b * t)
	h, q, kv, in := int64(c.HiddenSize), int64(c.NumAttentionHeads*c.HeadDim), int64(c.NumKeyValueHeads*c.HeadDim), int64(c.IntermediateSize)
	perLayer := bt*(2+2*h+2*q+2*kv+3*in) + int64(b*c.NumAttentionHeads)*int64(t)*int64(t)
	layers := int64(c.NumHiddenLayers)
	if checkpointed {
		layers = 1
	}
	return 4 * (layers*perLayer + int64(c.NumHiddenLayers+1)*bt*h + bt*(2*h+int64(c.VocabSize)))
}
