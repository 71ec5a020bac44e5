package hfdir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zhllama/llama"
)

// target_modules as PEFT writes it: a list, or one string (a regular
// expression over module names, or all-linear); names a llama model does
// not have, weights the config does not name, and DoRA are refused.
func TestAdapterConfigTargets(t *testing.T) {
	for js, want := range map[string][]bool{ // q_proj of layer 0, down_proj of layer 1
		`["q_proj","v_proj"]`:                  {true, false},
		`"all-linear"`:                         {true, true},
		`".*\\.layers\\.1\\..*_proj"`:          {false, true},
		`["self_attn.q_proj","mlp.down_proj"]`: {true, true},
	} {
		var m Modules
		if err := json.Unmarshal([]byte(js), &m); err != nil || m.check() != nil {
			t.Fatalf("%s: %v %v", js, err, m.check())
		}
		got := []bool{m.Match("model.layers.0.self_attn.q_proj.weight"), m.Match("model.layers.1.mlp.down_proj.weight")}
		if got[0] != want[0] || got[1] != want[1] {
			t.Errorf("%s matches %v, want %v", js, got, want)
		}
		back, _ := json.Marshal(m)
		if string(back) != js {
			t.Errorf("%s written back as %s", js, back)
		}
	}
	dir := t.TempDir()
	write := func(cfg string) {
		if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for cfg, want := range map[string]string{
		`{"peft_type":"LORA","r":4,"target_modules":["c_attn","c_proj"]}`:        `names "c_attn"`,
		`{"peft_type":"LORA","r":4,"target_modules":["q_proj","foo_proj"]}`:      `names "foo_proj"`,
		`{"peft_type":"LORA","r":4,"target_modules":["q_proj"],"use_dora":true}`: "DoRA",
		`{"peft_type":"LORA","r":4,"target_modules":"(unclosed"}`:                "not a regular expression",
	} {
		write(cfg)
		if _, err := ReadAdapterConfig(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", cfg, err, want)
		}
	}
	// Weights for a module the config does not target.
	c, _ := llama.Preset("tiny")
	m := llama.NewModel(c)
	m.AddLoRA(llama.DefaultAdapter, []string{"q_proj", "v_proj"}, 2, 1, 0, 1)
	if err := SaveAdapter(m, dir, llama.DefaultAdapter, AdapterConfig{R: 2, LoraAlpha: 2, TargetModules: Modules{List: []string{"q_proj"}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadAdapter(llama.NewModel(c), dir, llama.DefaultAdapter); err == nil || !strings.Contains(err.Error(), "v_proj, which target_modules") {
		t.Errorf("untargeted weights: %v", err)
	}
}
