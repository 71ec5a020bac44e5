package llama

import (
	"fmt"
	"strconv"
	"strings"
)

// spec declares one tensor of the model, once: its Hugging Face and GGUF
// names, its shape, whether LoRA can sit on it, and where the model holds
// it. Every list of names (checkpoint order, lookup by name, LoRA targets,
// PEFT's modules_to_save, GGUF export) derives from the specs below.
type spec struct {
	hf     string // Hugging Face name; within a layer, after "model.layers.N."
	gguf   string // GGUF name; within a layer, after "blk.N."
	module string // the module name lora_target and modules_to_save use
	lora   bool   // a LoRA target
	shape  func(c *Config) []int
	weight func(m *Model, l *Layer) *Weight    // matrices
	vector func(m *Model, l *Layer) *[]float32 // norms
}

func dims(c *Config) (h, q, kv, in int) {
	return c.HiddenSize, c.NumAttentionHeads * c.HeadDim, c.NumKeyValueHeads * c.HeadDim, c.IntermediateSize
}

var (
	embedSpec = spec{hf: "model.embed_tokens.weight", gguf: "token_embd.weight", module: "embed_tokens",
		shape:  func(c *Config) []int { return []int{c.VocabSize, c.HiddenSize} },
		weight: func(m *Model, _ *Layer) *Weight { return &m.Embed }}
	normSpec = spec{hf: "model.norm.weight", gguf: "output_norm.weight", module: "norm",
		shape:  func(c *Config) []int { return []int{c.HiddenSize} },
		vector: func(m *Model, _ *Layer) *[]float32 { return &m.Norm }}
	headSpec = spec{hf: "lm_head.weight", gguf: "output.weight", module: "lm_head",
		shape:  func(c *Config) []int { return []int{c.VocabSize, c.HiddenSize} },
		weight: func(m *Model, _ *Layer) *Weight { return &m.LMHead }}

	// layerSpecs are a decoder layer's tensors in checkpoint order.
	layerSpecs = []spec{
		{hf: "self_attn.q_proj.weight", gguf: "attn_q.weight", module: "q_proj", lora: true,
			shape:  func(c *Config) []int { h, q, _, _ := dims(c); return []int{q, h} },
			weight: func(_ *Model, l *Layer) *Weight { return &l.Q }},
		{hf: "self_attn.k_proj.weight", gguf: "attn_k.weight", module: "k_proj", lora: true,
			shape:  func(c *Config) []int { h, _, kv, _ := dims(c); return []int{kv, h} },
			weight: func(_ *Model, l *Layer) *Weight { return &l.K }},
		{hf: "self_attn.v_proj.weight", gguf: "attn_v.weight", module: "v_proj", lora: true,
			shape:  func(c *Config) []int { h, _, kv, _ := dims(c); return []int{kv, h} },
			weight: func(_ *Model, l *Layer) *Weight { return &l.V }},
		{hf: "self_attn.o_proj.weight", gguf: "attn_output.weight", module: "o_proj", lora: true,
			shape:  func(c *Config) []int { h, q, _, _ := dims(c); return []int{h, q} },
			weight: func(_ *Model, l *Layer) *Weight { return &l.O }},
		{hf: "mlp.gate_proj.weight", gguf: "ffn_gate.weight", module: "gate_proj", lora: true,
			shape:  func(c *Config) []int { h, _, _, in := dims(c); return []int{in, h} },
			weight: func(_ *Model, l *Layer) *Weight { return &l.Gate }},
		{hf: "mlp.up_proj.weight", gguf: "ffn_up.weight", module: "up_proj", lora: true,
			shape:  func(c *Config) []int { h, _, _, in := dims(c); return []int{in, h} },
			weight: func(_ *Model, l *Layer) *Weight { return &l.Up }},
		{hf: "mlp.down_proj.weight", gguf: "ffn_down.weight", module: "down_proj", lora: true,
			shape:  func(c *Config) []int { h, _, _, in := dims(c); return []int{h, in} },
			weight: func(_ *Model, l *Layer) *Weight { return &l.Down }},
		{hf: "input_layernorm.weight", gguf: "attn_norm.weight", module: "input_layernorm",
			shape:  func(c *Config) []int { return []int{c.HiddenSize} },
			vector: func(_ *Model, l *Layer) *[]float32 { return &l.AttnNorm }},
		{hf: "post_attention_layernorm.weight", gguf: "ffn_norm.weight", module: "post_attention_layernorm",
			shape:  func(c *Config) []int { return []int{c.HiddenSize} },
			vector: func(_ *Model, l *Layer) *[]float32 { return &l.MLPNorm }},
	}
)

// LoRAModules are the modules an adapter can sit on (lora_target's names).
var LoRAModules = func() []string {
	var out []string
	for _, s := range layerSpecs {
		if s.lora {
			out = append(out, s.module)
		}
	}
	return out
}()

// SavedModules are the modules a LoRA run can train whole beside its
// adapters (additional_target, PEFT's modules_to_save), with their tensors.
var SavedModules = map[string]string{embedSpec.module: embedSpec.hf, headSpec.module: headSpec.hf, normSpec.module: normSpec.hf}

// Param is one tensor of the model as its config declares it.
type Param struct {
	Name   string // in Hugging Face checkpoints
	GGUF   string // in GGUF files
	Shape  []int
	Layer  int    // the decoder layer, or -1
	Module string // e.g. q_proj, input_layernorm, embed_tokens
	LoRA   bool   // an adapter can sit on it
	Matrix bool   // a weight matrix (not a norm vector)

	spec *spec
}

// Size is the number of values.
func (p Param) Size() int {
	n := 1
	for _, d := range p.Shape {
		n *= d
	}
	return n
}

func (c *Config) param(s *spec, layer int) Param {
	p := Param{Name: s.hf, GGUF: s.gguf, Shape: s.shape(c), Layer: layer, Module: s.module, LoRA: s.lora,
		Matrix: s.weight != nil, spec: s}
	if layer >= 0 {
		p.Name = "model.layers." + strconv.Itoa(layer) + "." + s.hf
		p.GGUF = "blk." + strconv.Itoa(layer) + "." + s.gguf
	}
	return p
}

// Params lists the parameters of LlamaForCausalLM with this config in
// checkpoint order (lm_head only when untied).
func (c *Config) Params() []Param {
	ps := []Param{c.param(&embedSpec, -1)}
	for l := 0; l < c.NumHiddenLayers; l++ {
		for i := range layerSpecs {
			ps = append(ps, c.param(&layerSpecs[i], l))
		}
	}
	ps = append(ps, c.param(&normSpec, -1))
	if !c.TieWordEmbeddings {
		ps = append(ps, c.param(&headSpec, -1))
	}
	return ps
}

// LookupParam finds a parameter by its Hugging Face name. A name that is
// not a tensor of a model with this config is an error.
func (c *Config) LookupParam(name string) (Param, error) {
	for _, s := range []*spec{&embedSpec, &normSpec, &headSpec} {
		if name == s.hf {
			if s == &headSpec && c.TieWordEmbeddings {
				break
			}
			return c.param(s, -1), nil
		}
	}
	if rest, ok := strings.CutPrefix(name, "model.layers."); ok {
		num, suffix, _ := strings.Cut(rest, ".")
		l, err := strconv.Atoi(num)
		if err == nil && l >= 0 && l < c.NumHiddenLayers && num == strconv.Itoa(l) {
			for i := range layerSpecs {
				if layerSpecs[i].hf == suffix {
					return c.param(&layerSpecs[i], l), nil
				}
			}
		}
	}
	return Param{}, fmt.Errorf("tensor %s is not part of a llama model with this config (%d layers, tied embeddings %v)", name, c.NumHiddenLayers, c.TieWordEmbeddings)
}

// NumParams counts the parameters.
func (c *Config) NumParams() int64 {
	var n int64
	for _, p := range c.Params() {
		n += int64(p.Size())
	}
	return n
}

// Ref is a parameter and where a model holds it.
type Ref struct {
	Param
	Weight *Weight    // for matrices
	Data   *[]float32 // the float32 values (Weight.W for matrices)
}

func (m *Model) ref(p Param) Ref {
	var l *Layer
	if p.Layer >= 0 {
		l = &m.Layers[p.Layer]
	}
	r := Ref{Param: p}
	if p.spec.weight != nil {
		r.Weight = p.spec.weight(m, l)
		r.Data = &r.Weight.W
	} else {
		r.Data = p.spec.vector(m, l)
	}
	return r
}

// Refs lists every parameter with where m holds it, in checkpoint order.
func (m *Model) Refs() []Ref {
	if len(m.Layers) != m.Config.NumHiddenLayers {
		m.Layers = make([]Layer, m.Config.NumHiddenLayers)
	}
	ps := m.Config.Params()
	out := make([]Ref, len(ps))
	for i, p := range ps {
		out[i] = m.ref(p)
	}
	return out
}

// NewModelRefs lists the parameters of a model of config c, with nothing
// allocated: their names and shapes, for checks against a checkpoint.
func NewModelRefs(c Config) []Ref { return (&Model{Config: c}).Refs() }

// Tensor finds a parameter of m by its Hugging Face name; an unknown name
// is an error. lm_head.weight of a tied model is the embedding.
func (m *Model) Tensor(name string) (Ref, error) {
	c := m.Config
	if name == headSpec.hf && c.TieWordEmbeddings {
		c.TieWordEmbeddings = false
		p, _ := c.LookupParam(name)
		r := m.ref(p)
		r.Weight, r.Data = &m.LMHead, &m.LMHead.W // shares the embedding's values
		return r, nil
	}
	p, err := c.LookupParam(name)
	if err != nil {
		return Ref{}, err
	}
	if len(m.Layers) != c.NumHiddenLayers {
		m.Layers = make([]Layer, c.NumHiddenLayers)
	}
	return m.ref(p), nil
}

// NamedParam is a parameter (or its gradient) and its checkpoint name.
type NamedParam struct {
	Name string
	Data []float32
}

// Named lists the parameters with their checkpoint names.
func (m *Model) Named() []NamedParam {
	var out []NamedParam
	for _, r := range m.Refs() {
		out = append(out, NamedParam{r.Name, *r.Data})
	}
	return out
}
