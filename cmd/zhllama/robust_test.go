package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/safetensors"
	"zhllama/spm"
)

// tinyModelDir writes a random tiny model with LLaMA-2's tokenizer.
func tinyModelDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "m")
	if _, errs, code := zhllama(t, "", "model", "init", "--preset", "tiny", "--tokenizer", testenv.Path(t, "tokenizers/llama2/tokenizer.model"), "--output_dir", dir); code != 0 {
		t.Fatalf("model init: %s", errs)
	}
	return dir
}

// copyDir copies a model directory's files.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err == nil {
		err = os.MkdirAll(dst, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, filepath.Join(dst, e.Name()), b)
	}
}

// Every command takes its values through flags: a stray word is an error
// that names it, instead of silently ending the flags (and dropping those
// after it).
func TestStrayArgumentsAreErrors(t *testing.T) {
	m := tinyModelDir(t)
	text := filepath.Join(t.TempDir(), "zh.txt")
	testenv.WriteFile(t, text, []byte("中国的首都是北京，这是一个测试句子。\n"))
	for _, args := range [][]string{
		{"generate", "--model", m, "--prompt", "你好", "世界", "--max_new_tokens", "5"},
		{"eval", "ppl", "--model", m, "世界", "--input", text},
		{"export", "--model", m, "世界", "--adapter", m, "--output_dir", t.TempDir()},
		{"model", "init", "--preset", "tiny", "世界", "--tokenizer", "x", "--output_dir", "y"},
	} {
		_, errs, code := zhllama(t, "", args...)
		if code != 2 || !strings.Contains(errs, `unexpected argument "世界"`) {
			t.Errorf("%v: code %d, %s", args[:2], code, errs)
		}
	}
	// Positional arguments may come before or after flags.
	if out, errs, code := zhllama(t, "", "model", "inspect", m); code != 0 || !strings.Contains(out, "vocab 32000") {
		t.Errorf("model inspect: %d %s", code, errs)
	}
}

// Sampling settings out of range are refused with the flag named; a
// max_new_tokens past the context stops there, without reserving memory
// for it.
func TestGenerateSettings(t *testing.T) {
	m := tinyModelDir(t)
	for flag, value := range map[string]string{"max_new_tokens": "-5", "temperature": "-1", "top_p": "2", "top_k": "-3", "repetition_penalty": "0"} {
		_, errs, code := zhllama(t, "", "generate", "--model", m, "--prompt", "hi", "--"+flag, value)
		if code != 2 || !strings.Contains(errs, "--"+flag+" "+value) {
			t.Errorf("--%s %s: code %d, %s", flag, value, code, errs)
		}
	}
	for _, n := range []string{"9223372036854775807", "100000000"} {
		_, errs, code := zhllama(t, "", "generate", "--model", m, "--prompt", "hi", "--max_new_tokens", n, "--temperature", "1", "--seed", "3")
		if code != 0 || !strings.Contains(errs, "at most 254 new tokens") || !strings.Contains(errs, "254 new tokens at") {
			t.Errorf("--max_new_tokens %s: code %d, %s", n, code, errs)
		}
	}
}

// A merged tokenizer dropped into a model folder without resizing the
// embeddings, and NaN weights, are errors that say what to do — at load
// and in model inspect.
func TestModelMismatches(t *testing.T) {
	m := tinyModelDir(t)
	text := filepath.Join(t.TempDir(), "zh.txt")
	testenv.WriteFile(t, text, []byte("中国的首都是北京，这是一个测试句子。\n"))
	zh := filepath.Join(t.TempDir(), "zhtok")
	copyDir(t, m, zh)
	big, err := os.ReadFile(testenv.Path(t, "tokenizers/chinese-llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(zh, "tokenizer.model"), big)
	for _, args := range [][]string{
		{"generate", "--model", zh, "--prompt", "中国", "--max_new_tokens", "3"},
		{"eval", "ppl", "--model", zh, "--input", text},
		{"model", "inspect", zh},
	} {
		_, errs, code := zhllama(t, "", args...)
		if code != 1 || !strings.Contains(errs, "55296 pieces but the model's vocab_size is 32000") {
			t.Errorf("%v: code %d, %s", args[:2], code, errs)
		}
	}

	nan := filepath.Join(t.TempDir(), "nan")
	copyDir(t, m, nan)
	path := filepath.Join(nan, "model.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var srcs []safetensors.Source
	for _, tn := range f.Tensors {
		v, err := tn.Float32(nil)
		if err != nil {
			t.Fatal(err)
		}
		switch tn.Name {
		case "model.layers.1.self_attn.v_proj.weight":
			v[7] = float32(math.NaN())
		case "model.layers.1.mlp.down_proj.weight", "model.norm.weight": // later: the first is named
			v[2], v[3] = float32(math.Inf(1)), float32(math.NaN())
		}
		srcs = append(srcs, safetensors.FromFloat32(tn.Name, tn.DType, tn.Shape, v))
	}
	f.Close()
	if err := safetensors.Write(path, nil, srcs); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"generate", "--model", nan, "--prompt", "hello", "--max_new_tokens", "3"},
		{"eval", "ppl", "--model", nan, "--input", text},
		{"model", "inspect", nan},
	} {
		out, errs, code := zhllama(t, "", args...)
		if code != 1 || !strings.Contains(errs, "model.layers.1.self_attn.v_proj.weight holds 1 NaN or infinite values (the first at index 7)") || strings.TrimSpace(out) != "" {
			t.Errorf("%v: code %d, out %q, %s", args[:2], code, out, errs)
		}
	}
}

// model init does not write over a trained model unless told.
func TestModelInitKeepsExistingModel(t *testing.T) {
	m := tinyModelDir(t)
	before, err := os.ReadFile(filepath.Join(m, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"model", "init", "--preset", "tiny", "--seed", "9", "--tokenizer", testenv.Path(t, "tokenizers/llama2/tokenizer.model"), "--output_dir", m}
	_, errs, code := zhllama(t, "", args...)
	after, _ := os.ReadFile(filepath.Join(m, "model.safetensors"))
	if code != 1 || !strings.Contains(errs, "is not empty") || string(after) != string(before) {
		t.Errorf("code %d, %s, weights kept %v", code, errs, string(after) == string(before))
	}
	if _, errs, code := zhllama(t, "", append(args, "--overwrite_output_dir")...); code != 0 {
		t.Errorf("--overwrite_output_dir: %d %s", code, errs)
	}
}

// Training stopped by SIGINT or SIGTERM saves a checkpoint, names it, and
// exits with 130 or 143, not 0.
func TestTrainInterruptExitStatus(t *testing.T) {
	base := tinyModelDir(t)
	for sig, want := range map[syscall.Signal]int{syscall.SIGINT: 130, syscall.SIGTERM: 143} {
		out := filepath.Join(t.TempDir(), "out")
		cmd := exec.Command(binary, "train", "--stage", "sft", "--model_name_or_path", base, "--dataset", testenv.Path(t, "sft/alpaca_zh_demo.json"),
			"--template", "llama2", "--cutoff_len", "64", "--per_device_train_batch_size", "2", "--max_steps", "100000", "--logging_steps", "1",
			"--finetuning_type", "lora", "--output_dir", out)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var log strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "step 1/") {
				cmd.Process.Signal(sig)
			}
		}
		err = cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != want || !strings.Contains(log.String(), "interrupted") || !strings.Contains(log.String(), filepath.Join(out, "checkpoint-")) {
			t.Errorf("%v: exit %d, want %d\n%s", sig, code, want, log.String())
		}
	}
}

// Commands refuse to write over their own inputs; a tokenizer.json or a
// model folder where a tokenizer.model is expected gets the right hint.
func TestInputsAreNeverOverwritten(t *testing.T) {
	dir := t.TempDir()
	tok := testenv.Path(t, "tokenizers/llama2/tokenizer.model")
	inplace := filepath.Join(dir, "inplace")
	copyDir(t, filepath.Dir(tok), inplace)
	before, _ := os.ReadFile(filepath.Join(inplace, "tokenizer.model"))
	_, errs, code := zhllama(t, "", "tokenizer", "merge", "--base", filepath.Join(inplace, "tokenizer.model"), "--add", testenv.Path(t, "tokenizers/chinese_sp/chinese_sp.model"), "--output_dir", inplace)
	after, _ := os.ReadFile(filepath.Join(inplace, "tokenizer.model"))
	if code != 2 || !strings.Contains(errs, "would write over the input") || string(before) != string(after) {
		t.Errorf("merge in place: code %d, %s", code, errs)
	}
	sft := filepath.Join(dir, "sft.jsonl")
	testenv.WriteFile(t, sft, []byte(`{"instruction":"介绍一下长城。","output":"长城是中国古代的军事防御工程，绵延上万里。"}`+"\n"))
	if _, errs, code := zhllama(t, "", "data", "clean", "--input", sft, "--output", sft); code != 2 || !strings.Contains(errs, "would write over the input") {
		t.Errorf("clean in place: code %d, %s", code, errs)
	}
	if _, errs, code := zhllama(t, "", "data", "clean", "--input", sft, "--output", dir); code != 2 || !strings.Contains(errs, "is a directory") {
		t.Errorf("clean into a directory: code %d, %s", code, errs)
	}
	m := tinyModelDir(t)
	if _, errs, code := zhllama(t, "", "export", "--model", m, "--adapter", m, "--output_dir", m); code != 2 || !strings.Contains(errs, "would write over the input") {
		t.Errorf("export in place: code %d, %s", code, errs)
	}
	js := filepath.Join(dir, "tokenizer.json")
	testenv.WriteFile(t, js, []byte(`{"version": "1.0", "model": {"type": "BPE"}}`))
	if _, errs, code := zhllama(t, "", "tokenizer", "inspect", js); code != 1 || !strings.Contains(errs, "tokenizer.json?") {
		t.Errorf("tokenizer.json: code %d, %s", code, errs)
	}
	if out, errs, code := zhllama(t, "", "tokenizer", "inspect", filepath.Dir(tok)); code != 0 || !strings.Contains(out, "32000") {
		t.Errorf("a tokenizer folder: code %d, %s", code, errs)
	}
}

// The exit status is a contract (README "Exit status"): a usage error is
// 2 and names the flag or argument at fault, for every command.
func TestUsageErrorsNameTheFlag(t *testing.T) {
	var leaves [][]string
	var walk func(c *command, path []string)
	walk = func(c *command, path []string) {
		if c.run != nil {
			leaves = append(leaves, path)
		}
		for _, s := range c.sub {
			walk(s, append(append([]string(nil), path...), s.name))
		}
	}
	walk(commands(), nil)
	for _, path := range leaves {
		if path[0] == "version" {
			continue
		}
		_, errs, code := zhllama(t, "", append(path, "--no_such_flag=1")...)
		if code != 2 || !strings.Contains(errs, "no_such_flag") {
			t.Errorf("%v --no_such_flag=1: exit %d, %q", path, code, errs)
		}
		if path[0] == "bench" || path[0] == "demo" {
			continue // with no flags a benchmark or the demo runs
		}
		_, errs, code = zhllama(t, "", path...)
		if code != 2 || !strings.Contains(errs, "--") && !strings.Contains(errs, "argument") && !strings.Contains(errs, "key ") {
			t.Errorf("%v without flags: exit %d, %q", path, code, errs)
		}
	}
}

// bench gemm times square sizes and MxNxK shapes side by side with
// torch.mm through an optimized BLAS (the sides taking turns), and names
// the BLAS.
func TestBenchGemm(t *testing.T) {
	testenv.RequireTorch(t)
	out, errs, code := zhllama(t, "", "bench", "gemm", "--sizes", "64,48x40x16", "--runs", "1", "--rounds", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"64x64x64", "48x40x16", "PyTorch through", "openblas", `"ratio":`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if _, errs, code := zhllama(t, "", "bench", "gemm", "--sizes", "48x40"); code != 2 || !strings.Contains(errs, `"48x40" is not n or MxNxK`) {
		t.Errorf("bad shape: exit %d, %s", code, errs)
	}
	if _, errs, code := zhllama(t, "", "bench", "gemm", "--rounds", "0"); code != 2 || !strings.Contains(errs, "--rounds 0") {
		t.Errorf("no rounds: exit %d, %s", code, errs)
	}
}

// A tokenizer.model cut short between two pieces still parses; inspect
// says it may be truncated.
func TestInspectTruncatedTokenizer(t *testing.T) {
	b, err := os.ReadFile(testenv.Path(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := spm.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	cut := &spm.Model{Pieces: m.Pieces[:16000]}
	path := filepath.Join(t.TempDir(), "cut.model")
	testenv.WriteFile(t, path, cut.Marshal())
	out, errs, code := zhllama(t, "", "tokenizer", "inspect", path)
	if code != 0 || !strings.Contains(out, "may be cut short") {
		t.Errorf("code %d, %s %s", code, out, errs)
	}
}

// A reward model trained with stage rm scores texts; the scores do not
// depend on the batch; a model without a value head is named as such.
func TestScore(t *testing.T) {
	base := tinyModelDir(t)
	rm := filepath.Join(t.TempDir(), "rm")
	if _, errs, code := zhllama(t, "", "train", "--stage", "rm", "--model_name_or_path", base, "--dataset", testenv.Path(t, "preference/dpo_zh_demo.json"),
		"--template", "llama2", "--cutoff_len", "64", "--max_samples", "8", "--finetuning_type", "lora", "--per_device_train_batch_size", "2",
		"--max_steps", "2", "--output_dir", rm); code != 0 {
		t.Fatalf("train rm: %s", errs)
	}
	in := filepath.Join(t.TempDir(), "texts.jsonl")
	testenv.WriteFile(t, in, []byte(`{"text": "长城有多长？长城全长两万多公里。"}`+"\n"+"一行纯文本\n"+`{"text": "a longer English text to score with the model"}`+"\n"))
	one, errs, code := zhllama(t, "", "score", "--model", base, "--adapter", rm, "--input", in, "--batch", "1")
	all, _, _ := zhllama(t, "", "score", "--model", base, "--adapter", rm, "--input", in, "--batch", "3")
	if code != 0 || strings.Count(one, "\n") != 3 || !strings.Contains(one, `"score":`) {
		t.Fatalf("score: code %d, %s %s", code, one, errs)
	}
	scores := func(out string) []float64 {
		var s []float64
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var r struct {
				Score *float64 `json:"score"`
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil || r.Score == nil {
				t.Fatalf("output line %q: %v", l, err)
			}
			s = append(s, *r.Score)
		}
		return s
	}
	a, b := scores(one), scores(all)
	if len(a) != 3 || len(b) != 3 || a[0] == a[1] && a[1] == a[2] {
		t.Fatalf("scores %v and %v", a, b)
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-4 {
			t.Errorf("text %d: %v alone, %v in a batch", i, a, b)
		}
	}
	if _, errs, code := zhllama(t, "", "score", "--model", base, "--input", in); code != 1 || !strings.Contains(errs, "not a reward model") {
		t.Errorf("no value head: code %d, %s", code, errs)
	}
}
