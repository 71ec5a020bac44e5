package llama

import (
	"slices"
	"strings"
	"testing"
)

// Biases are refused at the config (they have no place in the model), and
// a tensor name outside the table is an error, never another tensor.
func TestBiasRefusedAndNamesChecked(t *testing.T) {
	for _, key := range []string{"attention_bias", "mlp_bias"} {
		_, err := ParseConfig([]byte(`{"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4, "` + key + `": true}`))
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: true: error %v", key, err)
		}
	}
	m := tinyModel(t, true, 2)
	for _, name := range []string{"model.layers.0.self_attn.o_proj.bias", "model.layers.2.mlp.up_proj.weight",
		"model.layers.-1.input_layernorm.weight", "model.layers.01.input_layernorm.weight", "model.layers.x.mlp.up_proj.weight",
		"model.layers.0", "model.norm", "v_head.summary.weight"} {
		if r, err := m.Tensor(name); err == nil {
			t.Errorf("%s resolved to %s", name, r.Name)
		}
	}
	r, err := m.Tensor("model.layers.1.post_attention_layernorm.weight")
	if err != nil || r.Data != &m.Layers[1].MLPNorm || r.GGUF != "blk.1.ffn_norm.weight" {
		t.Errorf("post_attention_layernorm: %+v, %v", r.Param, err)
	}
	if r, err := m.Tensor("lm_head.weight"); err != nil || &(*r.Data)[0] != &m.Embed.W[0] {
		t.Errorf("a tied lm_head is not the embedding: %v", err)
	}
}

// The table gives checkpoint order, shapes, GGUF names and LoRA targets.
func TestParamTable(t *testing.T) {
	c, _ := Preset("tiny")
	c.TieWordEmbeddings = false
	ps := c.Params()
	if len(ps) != 2+9*c.NumHiddenLayers+1 || ps[0].Name != "model.embed_tokens.weight" || ps[len(ps)-1].GGUF != "output.weight" {
		t.Fatalf("%d params, first %s, last %s", len(ps), ps[0].Name, ps[len(ps)-1].GGUF)
	}
	q := ps[1]
	if q.Name != "model.layers.0.self_attn.q_proj.weight" || q.GGUF != "blk.0.attn_q.weight" || !q.LoRA || !slices.Equal(q.Shape, []int{64, 64}) {
		t.Errorf("first layer tensor %+v", q)
	}
	if !slices.Equal(LoRAModules, []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}) {
		t.Errorf("LoRA modules %v", LoRAModules)
	}
	for _, p := range ps {
		back, err := c.LookupParam(p.Name)
		if err != nil || back.Name != p.Name || !slices.Equal(back.Shape, p.Shape) {
			t.Errorf("%s looks up as %+v, %v", p.Name, back, err)
		}
	}
}
