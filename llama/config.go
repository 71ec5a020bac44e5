// Package llama is the LLaMA-2 model: its Hugging Face configuration, its
// parameters and checkpoints.
package llama

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// RopeScaling is config.json's rope_scaling.
type RopeScaling struct {
	Type     string  `json:"type"`      // linear or dynamic
	RopeType string  `json:"rope_type"` // the same, as transformers 4.43 and later write it
	Factor   float64 `json:"factor"`
}

// Config is LlamaForCausalLM's config.json. Load fills absent fields with
// the defaults transformers' LlamaConfig uses.
type Config struct {
	Architectures         []string     `json:"architectures"`
	ModelType             string       `json:"model_type"`
	VocabSize             int          `json:"vocab_size"`
	HiddenSize            int          `json:"hidden_size"`
	IntermediateSize      int          `json:"intermediate_size"`
	NumHiddenLayers       int          `json:"num_hidden_layers"`
	NumAttentionHeads     int          `json:"num_attention_heads"`
	NumKeyValueHeads      int          `json:"num_key_value_heads"`
	HeadDim               int          `json:"head_dim"`
	HiddenAct             string       `json:"hidden_act"`
	MaxPositionEmbeddings int          `json:"max_position_embeddings"`
	InitializerRange      float64      `json:"initializer_range"`
	RMSNormEps            float64      `json:"rms_norm_eps"`
	UseCache              bool         `json:"use_cache"`
	PadTokenID            *int         `json:"pad_token_id"`
	BOSTokenID            int          `json:"bos_token_id"`
	EOSTokenID            int          `json:"eos_token_id"`
	PretrainingTP         int          `json:"pretraining_tp"`
	TieWordEmbeddings     bool         `json:"tie_word_embeddings"`
	RopeTheta             float64      `json:"rope_theta"`
	RopeScaling           *RopeScaling `json:"rope_scaling"`
	AttentionBias         bool         `json:"attention_bias"`
	AttentionDropout      float64      `json:"attention_dropout"`
	MLPBias               bool         `json:"mlp_bias"`
	SummaryDropoutProb    *float64     `json:"summary_dropout_prob,omitempty"` // TRL's value head dropout; absent: 0.1
	TorchDType            string       `json:"torch_dtype"`
}

// DefaultConfig is transformers' LlamaConfig() (the LLaMA-7B shape).
func DefaultConfig() Config {
	return Config{
		Architectures: []string{"LlamaForCausalLM"}, ModelType: "llama",
		VocabSize: 32000, HiddenSize: 4096, IntermediateSize: 11008, NumHiddenLayers: 32, NumAttentionHeads: 32,
		HiddenAct: "silu", MaxPositionEmbeddings: 2048, InitializerRange: 0.02, RMSNormEps: 1e-6, UseCache: true,
		BOSTokenID: 1, EOSTokenID: 2, PretrainingTP: 1, RopeTheta: 10000, TorchDType: "float32",
	}
}

// ParseConfig reads config.json's bytes over the defaults, fills derived
// fields (num_key_value_heads, head_dim) and validates the shape.
func ParseConfig(b []byte) (Config, error) {
	c := DefaultConfig()
	if err := json.Unmarshal(b, &c); err != nil {
		return c, err
	}
	var raw map[string]any
	json.Unmarshal(b, &raw)
	if mt, _ := raw["model_type"].(string); mt != "" && mt != "llama" {
		return c, fmt.Errorf("model_type is %q; zhllama runs llama models", mt)
	}
	if _, ok := raw["num_key_value_heads"]; !ok || c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if rs := c.RopeScaling; rs != nil && rs.Type == "" {
		rs.Type = rs.RopeType
	}
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	return c, c.Validate()
}

// Validate checks that the shapes fit together.
func (c *Config) Validate() error {
	switch {
	case c.VocabSize <= 0 || c.HiddenSize <= 0 || c.IntermediateSize <= 0 || c.NumHiddenLayers <= 0 || c.NumAttentionHeads <= 0:
		return fmt.Errorf("vocab_size %d, hidden_size %d, intermediate_size %d, num_hidden_layers %d and num_attention_heads %d must all be positive",
			c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads)
	case c.NumKeyValueHeads <= 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0:
		return fmt.Errorf("num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)", c.NumAttentionHeads, c.NumKeyValueHeads)
	case c.HeadDim <= 0 || c.HeadDim%2 != 0:
		return fmt.Errorf("head_dim %d must be positive and even (rotary embeddings pair dimensions)", c.HeadDim)
	case c.HiddenAct != "silu":
		return fmt.Errorf("hidden_act %q: zhllama implements silu (LLaMA's)", c.HiddenAct)
	case c.PretrainingTP != 1:
		return fmt.Errorf("pretraining_tp %d: only 1 is supported (the weights are the same; set it to 1)", c.PretrainingTP)
	}
	if c.AttentionBias || c.MLPBias {
		return fmt.Errorf("attention_bias and mlp_bias must be false: zhllama's llama has no bias tensors (LLaMA-2 has none)")
	}
	if c.RopeScaling != nil && c.RopeScaling.Type != "linear" && c.RopeScaling.Type != "dynamic" {
		return fmt.Errorf("rope_scaling type %q: use linear or dynamic", c.RopeScaling.Type)
	}
	return nil
}

// Presets are model shapes by name.
var Presets = map[string]func() Config{
	"tiny": func() Config {
		c := DefaultConfig()
		c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 64, 172, 2, 4, 2
		c.MaxPositionEmbeddings, c.RMSNormEps = 256, 1e-5
		return c
	},
	"stories15M": func() Config {
		c := DefaultConfig()
		c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 288, 768, 6, 6, 6
		c.MaxPositionEmbeddings, c.RMSNormEps, c.TieWordEmbeddings = 256, 1e-5, true
		return c
	},
	"stories110M": func() Config {
		c := DefaultConfig()
		c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 768, 2048, 12, 12, 12
		c.MaxPositionEmbeddings, c.RMSNormEps, c.TieWordEmbeddings = 1024, 1e-5, true
		return c
	},
	"llama2-7b": func() Config {
		c := DefaultConfig()
		c.NumKeyValueHeads, c.MaxPositionEmbeddings, c.RMSNormEps, c.TorchDType = 32, 4096, 1e-5, "float16"
		return c
	},
	"llama2-13b": func() Config {
		c := DefaultConfig()
		c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 5120, 13824, 40, 40, 40
		c.MaxPositionEmbeddings, c.RMSNormEps, c.TorchDType = 4096, 1e-5, "float16"
		return c
	},
	"llama2-70b": func() Config {
		c := DefaultConfig()
		c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 8192, 28672, 80, 64, 8
		c.MaxPositionEmbeddings, c.RMSNormEps, c.TorchDType = 4096, 1e-5, "float16"
		return c
	},
}

// Preset returns a named preset with derived fields filled.
func Preset(name string) (Config, error) {
	f, ok := Presets[name]
	if !ok {
		var names []string
		for n := range Presets {
			names = append(names, n)
		}
		sort.Strings(names)
		return Config{}, fmt.Errorf("no preset %q; presets: %s", name, strings.Join(names, ", "))
	}
	c := f()
	c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	return c, c.Validate()
}
