package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/spm"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zhllama-cli-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "zhllama")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := testenv.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// zhllama runs the binary and returns stdout, stderr and the exit code.
// lastJSON decodes the last line of a command's output, the JSON summary
// every bench ends with, into v.
func lastJSON(t *testing.T, out string, v any) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		t.Fatalf("last line is not the JSON summary: %v\n%s", err, out)
	}
}

func zhllama(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestHelp(t *testing.T) {
	out, _, code := zhllama(t, "", "help")
	if code != 0 || !strings.Contains(out, "tokenizer") || !strings.Contains(out, "bench") {
		t.Errorf("help: code %d\n%s", code, out)
	}
	out, _, _ = zhllama(t, "", "tokenizer", "--help")
	for _, sub := range []string{"train", "merge", "encode", "decode", "inspect", "stats"} {
		if !strings.Contains(out, sub) {
			t.Errorf("tokenizer help lacks %s", sub)
		}
	}
	out, _, code = zhllama(t, "", "tokenizer", "train", "--help")
	if code != 0 || !strings.Contains(out, "--character_coverage") {
		t.Errorf("train help: %d %s", code, out)
	}
	_, errs, code := zhllama(t, "", "frobnicate")
	if code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("unknown command: code %d, %q", code, errs)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	model := testenv.Path(t, "tokenizers/chinese-llama2/tokenizer.model")
	text, err := os.ReadFile(testenv.Path(t, "corpus/songci_simplified_1MB.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")[:5000]
	in := strings.Join(lines, "\n") + "\n"
	one, _, code := zhllama(t, in, "tokenizer", "encode", "--model", model, "--output_format=id", "--num_threads=1")
	if code != 0 {
		t.Fatal("encode failed")
	}
	two, _, _ := zhllama(t, in, "tokenizer", "encode", "--model", model, "--output_format=id", "--num_threads=3")
	if one != two {
		t.Fatal("output differs between 1 and 3 threads")
	}
	if n := strings.Count(one, "\n"); n != len(lines) {
		t.Fatalf("%d output lines for %d input lines", n, len(lines))
	}
	if bin, err := exec.LookPath("spm_encode"); err == nil {
		cmd := exec.Command(bin, "--model", model, "--output_format=id")
		cmd.Stdin = strings.NewReader(in)
		want, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(want) != one {
			t.Error("zhllama tokenizer encode differs from spm_encode")
		}
	}
	back, _, code := zhllama(t, one, "tokenizer", "decode", "--model", model, "--input_format=id")
	if code != 0 || back != in {
		t.Error("decode(encode(text)) != text")
	}
	pieces, _, _ := zhllama(t, "你好，世界\n", "tokenizer", "encode", "--model", model, "--add_bos", "--add_eos")
	if !strings.HasPrefix(pieces, "<s> ") || !strings.HasSuffix(pieces, " </s>\n") {
		t.Errorf("pieces with bos/eos: %q", pieces)
	}
	_, errs, code := zhllama(t, "1 2 999999\n", "tokenizer", "decode", "--model", model, "--input_format=id")
	if code != 1 || !strings.Contains(errs, "999999") {
		t.Errorf("bad id: code %d, %q", code, errs)
	}
}

func TestEncodeFilesKeepLines(t *testing.T) {
	model := testenv.Path(t, "tokenizers/llama2/tokenizer.model")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	testenv.WriteFile(t, a, []byte("first\nno newline at end"))
	testenv.WriteFile(t, b, []byte("third\n"))
	outFile := filepath.Join(dir, "out.txt")
	_, _, code := zhllama(t, "", "tokenizer", "encode", "--model", model, "--output", outFile, a, b)
	got, err := os.ReadFile(outFile)
	if err != nil || code != 0 || strings.Count(string(got), "\n") != 3 {
		t.Errorf("code %d, output %q (%v)", code, got, err)
	}
}

func TestMergeCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	out, errs, code := zhllama(t, "", "tokenizer", "merge",
		"--base", testenv.Path(t, "tokenizers/llama2/tokenizer.model"),
		"--add", testenv.Path(t, "tokenizers/chinese_sp/chinese_sp.model"),
		"--output_dir", dir, "--eval_text", testenv.Path(t, "pretrain/medical_corpus.txt"))
	if code != 0 {
		t.Fatalf("merge failed: %s", errs)
	}
	for _, want := range []string{"32000 pieces", "merged: 49953 pieces", "before", "after", "tokens/char"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	m, err := spm.Load(filepath.Join(dir, "tokenizer.model"))
	if err != nil || len(m.Pieces) != 49953 {
		t.Fatalf("merged model: %v", err)
	}
	var cfg map[string]any
	testenv.ReadJSON(t, filepath.Join(dir, "tokenizer_config.json"), &cfg)
	if cfg["add_bos_token"] != true || cfg["add_eos_token"] != false || cfg["tokenizer_class"] != "LlamaTokenizer" {
		t.Errorf("tokenizer_config.json: %v", cfg)
	}
	var stm map[string]any
	testenv.ReadJSON(t, filepath.Join(dir, "special_tokens_map.json"), &stm)
	if stm["bos_token"] == nil {
		t.Errorf("special_tokens_map.json: %v", stm)
	}
}

func TestBadInputs(t *testing.T) {
	dir := t.TempDir()
	notModel := filepath.Join(dir, "notes.txt")
	testenv.WriteFile(t, notModel, []byte("hello, I am not a model\n"))
	out := filepath.Join(dir, "out")
	_, errs, code := zhllama(t, "", "tokenizer", "merge", "--base", notModel, "--add", notModel, "--output_dir", out)
	if code != 1 || !strings.Contains(errs, notModel) {
		t.Errorf("merge of a text file: code %d, %q", code, errs)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed merge created its output directory")
	}
	_, errs, code = zhllama(t, "", "tokenizer", "merge", "--base", notModel)
	if code != 2 || !strings.Contains(errs, "required") {
		t.Errorf("missing flags: code %d, %q", code, errs)
	}
	_, errs, code = zhllama(t, "", "tokenizer", "train", "--vocab_sise=100")
	if code != 2 || !strings.Contains(errs, "unknown flag --vocab_sise") {
		t.Errorf("unknown train flag: code %d, %q", code, errs)
	}
	_, errs, code = zhllama(t, "", "tokenizer", "encode", "--model", filepath.Join(dir, "missing.model"))
	if code != 1 || !strings.Contains(errs, "missing.model") {
		t.Errorf("missing model: code %d, %q", code, errs)
	}
}

func TestInspectAndStats(t *testing.T) {
	llama := testenv.Path(t, "tokenizers/llama2/tokenizer.model")
	zh := testenv.Path(t, "tokenizers/chinese-llama2/tokenizer.model")
	out, _, code := zhllama(t, "", "tokenizer", "inspect", zh)
	for _, want := range []string{"model type:  bpe", "pieces:      55296", "BYTE:", "byte_fallback:", "identity"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
	out, _, code = zhllama(t, "", "tokenizer", "stats", "--model", llama, "--model", zh, "--input", testenv.Path(t, "pretrain/medical_corpus.txt"))
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, "vs first") {
		t.Errorf("stats: code %d\n%s", code, out)
	}
}

func TestDataPackAndInspect(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "packed")
	out, errs, code := zhllama(t, "", "data", "pack", "--tokenizer", testenv.Path(t, "tokenizers/llama2/tokenizer.model"),
		"--input", testenv.Path(t, "pretrain/en_article_tail500.txt"), "--output_dir", dir, "--cutoff_len", "64")
	if code != 0 || !strings.Contains(out, "blocks of 64 tokens (uint16)") {
		t.Fatalf("pack: code %d\n%s\n%s", code, out, errs)
	}
	out, _, code = zhllama(t, "", "data", "inspect", dir, "--blocks", "1")
	end := strings.Index(out, "\n}\n")
	if code != 0 || end < 0 {
		t.Fatalf("inspect: code %d\n%s", code, out)
	}
	var totals map[string]any
	if err := json.Unmarshal([]byte(out[:end+2]), &totals); err != nil {
		t.Fatal(err)
	}
	if totals["blocks"].(float64) < 1 || totals["tokens"].(float64) != 64*totals["blocks"].(float64) || totals["documents"].(float64) < 1 {
		t.Errorf("totals %v", totals)
	}
	if !strings.Contains(out, "--- block 0 (1 \"<s>\"") {
		t.Errorf("no decoded block:\n%s", out)
	}
	_, errs, code = zhllama(t, "", "data", "pack", "--tokenizer", testenv.Path(t, "tokenizers/llama2/tokenizer.model"),
		"--input", testenv.Path(t, "sft/alpaca_zh_demo.json"), "--output_dir", filepath.Join(t.TempDir(), "x"))
	if code != 1 || !strings.Contains(errs, "alpaca") {
		t.Errorf("alpaca input: code %d, %q", code, errs)
	}
}

func TestDataPreview(t *testing.T) {
	tok := testenv.Path(t, "tokenizers/chinese-llama2/tokenizer.model")
	out, errs, code := zhllama(t, "", "data", "preview", "--dataset", "alpaca_zh_demo", "--dataset_dir", filepath.Dir(testenv.Path(t, "sft/dataset_info.json")),
		"--template", "llama2_zh", "--tokenizer", tok, "--n", "2")
	if code != 0 || strings.Count(out, "=== ") != 2 || !strings.Contains(out, "⟦<s> [INST] <<SYS>>") || !strings.Contains(out, "[/INST]⟧") {
		t.Fatalf("preview: code %d\n%s\n%s", code, out, errs)
	}
	out, _, code = zhllama(t, "", "data", "preview", "--dataset", testenv.Path(t, "preference/dpo_zh_500.jsonl"), "--template", "chatml",
		"--tokenizer", tok, "--n", "1", "--json", "--cutoff_len", "64")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("json preview: code %d\n%s", code, out)
	}
	for _, l := range lines {
		var ex struct {
			InputIDs []int `json:"input_ids"`
			Labels   []int `json:"labels"`
			Kind     string
		}
		if err := json.Unmarshal([]byte(l), &ex); err != nil || len(ex.InputIDs) != len(ex.Labels) || len(ex.InputIDs) > 64 || ex.Kind == "" {
			t.Errorf("bad JSON example %s (%v)", l, err)
		}
	}
	_, errs, code = zhllama(t, "", "data", "preview", "--dataset", testenv.Path(t, "sft/identity.json"), "--template", "nope", "--tokenizer", tok)
	if code != 2 || !strings.Contains(errs, "does not exist") {
		t.Errorf("unknown template: code %d, %q", code, errs)
	}
}

func TestDataClean(t *testing.T) {
	dir := t.TempDir()
	out, report := filepath.Join(dir, "clean.jsonl"), filepath.Join(dir, "report.json")
	stdout, errs, code := zhllama(t, "", "data", "clean", "--input", testenv.Path(t, "sft/alpaca_zh_demo.json"), "--output", out, "--report", report)
	if code != 0 || !strings.Contains(stdout, "read 1000 records") || !strings.Contains(stdout, "refusal") {
		t.Fatalf("clean: code %d\n%s\n%s", code, stdout, errs)
	}
	var rep map[string]any
	testenv.ReadJSON(t, report, &rep)
	if rep["kept"] == nil || rep["removed"] == nil || rep["examples"] == nil {
		t.Errorf("report %v", rep)
	}
	_, errs, code = zhllama(t, "", "data", "clean", "--input", testenv.Path(t, "pretrain/fever.txt"), "--output", out, "--dedup", "fuzzy")
	if code != 1 || !strings.Contains(errs, "--dedup=fuzzy") {
		t.Errorf("bad --dedup: code %d, %q", code, errs)
	}
}

func TestModelInitAndInspect(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tiny")
	out, errs, code := zhllama(t, "", "model", "init", "--preset", "tiny", "--tokenizer", testenv.Path(t, "tokenizers/llama2/tokenizer.model"), "--output_dir", dir, "--dtype", "float16")
	if code != 0 || !strings.Contains(out, "vocab 32000") || !strings.Contains(out, "F16") {
		t.Fatalf("init: code %d\n%s\n%s", code, out, errs)
	}
	out, _, code = zhllama(t, "", "model", "inspect", dir)
	if code != 0 || !strings.Contains(out, "2 layers, hidden 64") {
		t.Errorf("inspect: code %d\n%s", code, out)
	}
	_, errs, code = zhllama(t, "", "model", "init", "--preset", "nope", "--tokenizer", testenv.Path(t, "tokenizers/llama2/tokenizer.model"), "--output_dir", dir)
	if code != 1 || !strings.Contains(errs, "no preset") {
		t.Errorf("bad preset: code %d %q", code, errs)
	}
}

func TestGenerateAndEval(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if _, errs, code := zhllama(t, "", "model", "init", "--preset", "tiny", "--tokenizer", testenv.Path(t, "tokenizers/llama2/tokenizer.model"), "--output_dir", dir); code != 0 {
		t.Fatal(errs)
	}
	a, _, code := zhllama(t, "", "generate", "--model", dir, "--prompt", "Once upon a time", "--max_new_tokens", "8")
	b, _, _ := zhllama(t, "", "generate", "--model", dir, "--prompt", "Once upon a time", "--max_new_tokens", "8")
	if code != 0 || a != b || len(a) < 2 {
		t.Errorf("greedy generation: code %d, %q then %q", code, a, b)
	}
	// A float16 KV cache changes the cached values by float16's rounding
	// only: the greedy text here stays the same.
	if h, errs, code := zhllama(t, "", "generate", "--model", dir, "--prompt", "Once upon a time", "--max_new_tokens", "8", "--kv_cache_dtype", "float16"); code != 0 || h != a {
		t.Errorf("--kv_cache_dtype float16: code %d, %q (float32 cache: %q) %s", code, h, a, errs)
	}
	if _, errs, code := zhllama(t, "", "generate", "--model", dir, "--prompt", "Once", "--kv_cache_dtype", "int4"); code != 2 || !strings.Contains(errs, "--kv_cache_dtype") {
		t.Errorf("--kv_cache_dtype int4: code %d %q", code, errs)
	}
	// A file of prompts decoded as one batch gives each the greedy output it gets alone.
	prompts := filepath.Join(t.TempDir(), "prompts.txt")
	testenv.WriteFile(t, prompts, []byte("Once upon a time\n\n从前有座山\nThe\n"))
	out, errs, code := zhllama(t, "", "generate", "--model", dir, "--input", prompts, "--max_new_tokens", "8", "--dtype", "bfloat16")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var first struct{ Prompt, Output string }
	if code != 0 || len(lines) != 3 || json.Unmarshal([]byte(lines[0]), &first) != nil || first.Prompt != "Once upon a time" || first.Output != strings.TrimSpace(a) {
		t.Errorf("generate --input: code %d %q %q (alone: %q)", code, out, errs, a)
	}
	out, errs, code = zhllama(t, "", "eval", "ppl", "--model", dir, "--input", testenv.Path(t, "pretrain/en_article_tail500.txt"), "--cutoff_len", "64")
	var res struct {
		Documents, Tokens int
		NLL, PPL          float64
	}
	if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &res) != nil || res.Documents == 0 || res.PPL < 1 {
		t.Errorf("eval ppl: code %d %q %q", code, out, errs)
	}
}

func TestTrainExportGenerate(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	if _, errs, code := zhllama(t, "", "model", "init", "--preset", "tiny", "--tokenizer", testenv.Path(t, "tokenizers/llama2/tokenizer.model"), "--output_dir", base); code != 0 {
		t.Fatal(errs)
	}
	cfg := filepath.Join(dir, "sft.yaml")
	testenv.WriteFile(t, cfg, []byte("stage: sft\nfinetuning_type: lora\nlora_rank: 4\ndataset: alpaca_zh_demo\ntemplate: llama2\ncutoff_len: 64\nmax_samples: 8\nper_device_train_batch_size: 4\nmax_steps: 2\nlogging_steps: 1\nbf16: true\n"))
	out := filepath.Join(dir, "lora")
	_, errs, code := zhllama(t, "", "train", cfg, "--model_name_or_path", base, "--dataset_dir", testenv.Path(t, "sft"), "--output_dir", out)
	if code != 0 || !strings.Contains(errs, "step 2/2") || !strings.Contains(errs, "no effect here") {
		t.Fatalf("train: code %d\n%s", code, errs)
	}
	_, errs, code = zhllama(t, "", "train", cfg, "--model_name_or_path", base, "--output_dir", out, "--learning_rat", "1")
	if code != 2 || !strings.Contains(errs, "did you mean learning_rate") {
		t.Errorf("unknown key: code %d %s", code, errs)
	}
	merged := filepath.Join(dir, "merged")
	if o, errs, code := zhllama(t, "", "export", "--model", base, "--adapter", out, "--output_dir", merged); code != 0 || !strings.Contains(o, "merged 14 LoRA modules") {
		t.Fatalf("export: code %d %s %s", code, o, errs)
	}
	a, _, _ := zhllama(t, "", "generate", "--model", merged, "--prompt", "你好", "--max_new_tokens", "6")
	b, _, code := zhllama(t, "", "generate", "--model", base, "--adapter", out, "--prompt", "你好", "--max_new_tokens", "6")
	if code != 0 || a != b || a == "" {
		t.Errorf("merged %q, base+adapter %q", a, b)
	}
}

// TestProfiles checks that ZHLLAMA_CPUPROFILE and ZHLLAMA_MEMPROFILE each
// leave a profile (gzip-compressed, as pprof writes them) and that the
// command's exit status passes through.
func TestProfiles(t *testing.T) {
	dir := t.TempDir()
	cpu, mem := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "mem.prof")
	t.Setenv("ZHLLAMA_CPUPROFILE", cpu)
	t.Setenv("ZHLLAMA_MEMPROFILE", mem)
	if got := profiled(func() int { _ = make([]byte, 1<<20); return 3 }); got != 3 {
		t.Fatalf("exit status %d, want 3", got)
	}
	for _, p := range []string{cpu, mem} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("%s: not a pprof profile (%d bytes)", p, len(b))
		}
	}
}
