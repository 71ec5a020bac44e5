package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zhllama/gguf"
	"zhllama/hfdir"
	"zhllama/internal/testenv"
	"zhllama/llama"
)

// export --format gguf writes <dir>-<outtype>.gguf with the model
// directory's chat template; generate and eval ppl read it as a model; a
// float32 GGUF continues a prompt exactly as the directory does.
func TestExportGGUF(t *testing.T) {
	dir := tinyModelDir(t)
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	var tc map[string]any
	testenv.ReadJSON(t, cfgPath, &tc)
	tc["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
	b, _ := json.Marshal(tc)
	testenv.WriteFile(t, cfgPath, b)
	out := t.TempDir()
	for _, ot := range []string{"f32", "q4_0"} {
		o, errs, code := zhllama(t, "", "export", "--format", "gguf", "--model", dir, "--outtype", ot, "--output_dir", out)
		if code != 0 || !strings.Contains(o, "m-"+ot+".gguf") {
			t.Fatalf("export %s: code %d %s %s", ot, code, o, errs)
		}
	}
	f, err := gguf.Open(filepath.Join(out, "m-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if tmpl, err := f.String("tokenizer.chat_template"); err != nil || tmpl != tc["chat_template"] {
		t.Errorf("chat template %q, %v", tmpl, err)
	}
	f.Close()
	want, _, _ := zhllama(t, "", "generate", "--model", dir, "--dtype", "float32", "--prompt", "从前有座山", "--max_new_tokens", "8")
	got, errs, code := zhllama(t, "", "generate", "--model", filepath.Join(out, "m-f32.gguf"), "--prompt", "从前有座山", "--max_new_tokens", "8")
	if code != 0 || got != want || got == "" {
		t.Errorf("generate from the GGUF: code %d %q, from the directory %q; %s", code, got, want, errs)
	}
	// chat renders with the GGUF's own chat template.
	if _, errs, code := zhllama(t, "你好\n/exit\n", "chat", "--model", filepath.Join(out, "m-f32.gguf"), "--max_new_tokens", "4"); code != 0 || !strings.Contains(errs, "own chat_template") {
		t.Errorf("chat on the GGUF: code %d %s", code, errs)
	}
	// A PEFT adapter: alone as a GGUF adapter, or merged.
	m, err := hfdir.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"} {
		p, _ := m.Config.LookupParam(name)
		m.Attach(name, llama.NewLoRA(p.Shape[0], p.Shape[1], 4, 2, 0, rng))
	}
	ad := filepath.Join(t.TempDir(), "sft-lora")
	if err := hfdir.SaveAdapter(m, ad, llama.DefaultAdapter, hfdir.AdapterConfig{R: 4, LoraAlpha: 8, TargetModules: hfdir.Modules{List: []string{"q_proj", "k_proj"}}}, nil); err != nil {
		t.Fatal(err)
	}
	if o, errs, code := zhllama(t, "", "export", "--format", "gguf", "--model", dir, "--adapter", ad, "--adapter_only", "--output_dir", out); code != 0 || !strings.Contains(o, "sft-lora-lora-f32.gguf") || !strings.Contains(o, "2 modules, r 4, alpha 8") {
		t.Errorf("adapter export: code %d %s %s", code, o, errs)
	}
	if o, errs, code := zhllama(t, "", "export", "--format", "gguf", "--model", dir, "--adapter", ad, "--outtype", "q8_0", "--output_dir", out); code != 0 || !strings.Contains(o, "sft-lora-q8_0.gguf") {
		t.Errorf("merged export: code %d %s %s", code, o, errs)
	}
	o, errs, code := zhllama(t, "", "eval", "ppl", "--model", filepath.Join(out, "m-q4_0.gguf"), "--input", testenv.Path(t, "pretrain/en_article_tail500.txt"), "--cutoff_len", "64")
	if code != 0 || !strings.Contains(o, `"ppl"`) {
		t.Errorf("eval ppl on q4_0: code %d %s %s", code, o, errs)
	}
}

// Bad export requests are usage errors that name the flag; an adapter
// that trains whole tensors is refused as a GGUF adapter.
func TestExportGGUFRefuses(t *testing.T) {
	dir := tinyModelDir(t)
	out := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--outtype", "q4_k_m"}, `--outtype "q4_k_m": use one of bf16, f16, f32, q4_0, q8_0`},
		{[]string{"--adapter_only"}, "--adapter_only needs --adapter"},
		{[]string{"--format", "onnx"}, `--format "onnx": use hf or gguf`},
		{[]string{"--dtype", "float16"}, "--dtype goes with --format hf"},
	} {
		args := append([]string{"export", "--format", "gguf", "--model", dir, "--output_dir", out}, c.args...)
		if _, errs, code := zhllama(t, "", args...); code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: code %d %s", c.args, code, errs)
		}
	}
	ad := t.TempDir()
	testenv.WriteFile(t, filepath.Join(ad, "adapter_config.json"), []byte(`{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"],"modules_to_save":["embed_tokens"]}`))
	_, errs, code := zhllama(t, "", "export", "--format", "gguf", "--model", dir, "--adapter", ad, "--adapter_only", "--output_dir", out)
	if code != 1 || !strings.Contains(errs, "export the merged model instead") {
		t.Errorf("modules_to_save adapter: code %d %s", code, errs)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("refused exports left %d files", len(entries))
	}
}
