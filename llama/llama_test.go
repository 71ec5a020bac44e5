package llama

import (
	"strings"
	"testing"
)

// rope_scaling as transformers 4.43 and later write it (rope_type).
func TestRopeType(t *testing.T) {
	c, err := ParseConfig([]byte(`{"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4, "rope_scaling": {"rope_type": "linear", "factor": 4.0}}`))
	if err != nil || c.RopeScaling.Type != "linear" || c.RopeScaling.Factor != 4 {
		t.Errorf("rope_type: %+v %v", c.RopeScaling, err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`{"hidden_size": 512, "num_attention_heads": 8, "num_hidden_layers": 2, "intermediate_size": 1376, "unknown_field": 3}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.VocabSize != 32000 || c.NumKeyValueHeads != 8 || c.HeadDim != 64 || c.RopeTheta != 10000 || c.RMSNormEps != 1e-6 || c.MaxPositionEmbeddings != 2048 || c.TieWordEmbeddings {
		t.Errorf("defaults: %+v", c)
	}
	for cfg, want := range map[string]string{
		`{"num_attention_heads": 32, "num_key_value_heads": 5}`:  "multiple of num_key_value_heads",
		`{"hidden_act": "gelu"}`:                                 "silu",
		`{"model_type": "mistral"}`:                              "llama models",
		`{"rope_scaling": {"type": "yarn", "factor": 2}}`:        "linear or dynamic",
		`{"rope_scaling": {"rope_type": "llama3", "factor": 8}}`: "linear or dynamic",
		`{"vocab_size": "big"}`:                                  "cannot unmarshal",
	} {
		if _, err := ParseConfig([]byte(cfg)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", cfg, err, want)
		}
	}
}

// Parameter counts of the known shapes, as published.
func TestPresetParameterCounts(t *testing.T) {
	for name, want := range map[string]int64{
		"stories15M": 15191712,
		"llama2-7b":  6738415616,
		"llama2-13b": 13015864320,
		"llama2-70b": 68976648192,
	} {
		c, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.NumParams(); got != want {
			t.Errorf("%s: %d parameters, want %d", name, got, want)
		}
	}
	if _, err := Preset("gpt5"); err == nil || !strings.Contains(err.Error(), "stories15M") {
		t.Errorf("unknown preset: %v", err)
	}
}
