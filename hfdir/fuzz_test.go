package hfdir

import (
	"os"
	"path/filepath"
	"testing"

	"zhllama/llama"
)

// PEFT's adapter_config.json and a model's config.json never panic their
// readers, nor what they feed (target matching, the parameter table).
func FuzzConfigs(f *testing.F) {
	f.Add([]byte(`{"peft_type":"LORA","task_type":"CAUSAL_LM","r":8,"lora_alpha":16,"lora_dropout":0.05,"target_modules":["q_proj","v_proj"],"modules_to_save":["embed_tokens","lm_head"],"use_rslora":false}`))
	f.Add([]byte(`{"peft_type":"LORA","r":4,"target_modules":"all-linear"}`))
	f.Add([]byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":4096,"intermediate_size":11008,"num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":32,"rms_norm_eps":1e-05,"vocab_size":55296,"rope_scaling":{"type":"linear","factor":2}}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if c, err := ReadAdapterConfig(dir); err == nil {
			c.TargetModules.Match("model.layers.0.self_attn.q_proj.weight")
			c.Scale()
		}
		if c, err := llama.ParseConfig(data); err == nil && c.NumHiddenLayers < 1000 {
			c.Params()
			c.NumParams()
		}
	})
}
