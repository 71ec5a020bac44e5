package main

import (
	"bytes"
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

// A float16 or bfloat16 model is exported from its mapped checkpoint, a
// row at a time, into the same bytes as from the float32 copy of its
// values.
func TestExportGGUFHalf(t *testing.T) {
	for _, dt := range []string{"float16", "bfloat16"} {
		dir := filepath.Join(t.TempDir(), "m")
		if _, errs, code := zhllama(t, "", "model", "init", "--preset", "tiny", "--tokenizer", testenv.Path(t, "tokenizers/llama2/tokenizer.model"), "--output_dir", dir, "--dtype", dt); code != 0 {
			t.Fatal(errs)
		}
		m, err := hfdir.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		wide := filepath.Join(t.TempDir(), "m")
		if err := hfdir.Save(m, wide, "float32", 0); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"} {
			if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
				testenv.WriteFile(t, filepath.Join(wide, f), b)
			}
		}
		for _, ot := range []string{"f32", "q4_0"} {
			var files [2][]byte
			for i, src := range []string{dir, wide} {
				out := t.TempDir()
				if o, errs, code := zhllama(t, "", "export", "--format", "gguf", "--model", src, "--outtype", ot, "--output_dir", out); code != 0 {
					t.Fatalf("%s %s: code %d %s %s", dt, ot, code, o, errs)
				}
				if files[i], err = os.ReadFile(filepath.Join(out, "m-"+ot+".gguf")); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(files[0], files[1]) {
				t.Errorf("%s to %s: %d bytes from the checkpoint, %d from its float32 copy, not the same", dt, ot, len(files[0]), len(files[1]))
			}
		}
	}
}

// A merge that cannot fit in memory (the base in float32) is refused
// before anything is loaded, naming the sizes and the way out.
func TestExportMergeTooBig(t *testing.T) {
	base := t.TempDir()
	testenv.WriteFile(t, filepath.Join(base, "config.json"), []byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":65536,"intermediate_size":262144,`+
		`"num_attention_heads":512,"num_hidden_layers":512,"vocab_size":32000,"rms_norm_eps":1e-5}`))
	for _, args := range [][]string{
		{"export", "--model", base, "--adapter", t.TempDir(), "--output_dir", filepath.Join(t.TempDir(), "o")},
		{"export", "--format", "gguf", "--model", base, "--adapter", t.TempDir(), "--output_dir", filepath.Join(t.TempDir(), "o")},
	} {
		_, errs, code := zhllama(t, "", args...)
		if code != 1 || !strings.Contains(errs, "holds the model in float32") || !strings.Contains(errs, "--adapter_only") {
			t.Errorf("%v: code %d, %s", args[:3], code, errs)
		}
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
