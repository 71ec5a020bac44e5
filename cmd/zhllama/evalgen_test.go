package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"zhllama/eval"
	"zhllama/hfdir"
	"zhllama/internal/testenv"
	"zhllama/llama"
)

type prediction struct{ Prompt, Predict, Label string }

func readPredictions(t *testing.T, dir string) []prediction {
	t.Helper()
	var out []prediction
	for _, l := range testenv.ReadJSONLines[map[string]string](t, filepath.Join(dir, "generated_predictions.jsonl")) {
		p, ok1 := l["prompt"]
		q, ok2 := l["predict"]
		a, ok3 := l["label"]
		if !ok1 || !ok2 || !ok3 || len(l) != 3 {
			t.Fatalf("a prediction line has keys %v, want prompt, predict, label", l)
		}
		out = append(out, prediction{p, q, a})
	}
	return out
}

// eval sft answers every prompt (alpaca by name through dataset_info.json,
// ShareGPT by file), writes LLaMA-Factory's files, and its scores are the
// metrics of what it wrote; greedy answers do not depend on the batch.
func TestEvalSFT(t *testing.T) {
	model := tinyModelDir(t)
	sft := testenv.Path(t, "sft")
	dict := testenv.JiebaDict(t)
	run := func(out string, args ...string) []prediction {
		t.Helper()
		o, errs, code := zhllama(t, "", append([]string{"eval", "sft", "--model", model, "--jieba_dict", dict, "--template", "llama2", "--cutoff_len", "96",
			"--max_new_tokens", "6", "--temperature", "0", "--output_dir", out}, args...)...)
		if code != 0 || !strings.Contains(o, "predict_rouge-l") || !strings.Contains(errs, "ETA") && !strings.Contains(errs, "prompts/s") {
			t.Fatalf("eval sft %v: code %d\n%s\n%s", args, code, o, errs)
		}
		return readPredictions(t, out)
	}
	dir := t.TempDir()
	a := run(filepath.Join(dir, "a"), "--dataset", "alpaca_zh_demo", "--dataset_dir", sft, "--max_samples", "5", "--batch", "2")
	b := run(filepath.Join(dir, "b"), "--dataset", "alpaca_zh_demo", "--dataset_dir", sft, "--max_samples", "5", "--batch", "5")
	if len(a) != 5 || len(b) != 5 {
		t.Fatalf("%d and %d predictions, want 5", len(a), len(b))
	}
	var alpaca []struct{ Output string }
	testenv.ReadJSON(t, filepath.Join(sft, "alpaca_zh_demo.json"), &alpaca)
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("example %d: batch 2 %+v, batch 5 %+v", i, a[i], b[i])
		}
		if !strings.HasPrefix(a[i].Prompt, "<s>") || !strings.Contains(a[i].Prompt, "[INST]") {
			t.Errorf("prompt %d is not llama2's rendering with its special tokens: %q", i, a[i].Prompt)
		}
		if a[i].Label == "" || !strings.HasPrefix(alpaca[i].Output, a[i].Label) {
			t.Errorf("label %d %q is not the start of the dataset's answer %q", i, a[i].Label, alpaca[i].Output)
		}
	}
	// Each line is byte for byte what Python's json.dumps(ensure_ascii=False) writes, as in LLaMA-Factory.
	redump := exec.Command("/usr/bin/python3", "-c", "import json, sys\nfor l in open(sys.argv[1], encoding='utf-8'):\n    assert json.dumps(json.loads(l), ensure_ascii=False) + '\\n' == l, l")
	redump.Args = append(redump.Args, filepath.Join(dir, "a", "generated_predictions.jsonl"))
	if out, err := redump.CombinedOutput(); err != nil {
		t.Errorf("generated_predictions.jsonl is not as json.dumps writes it: %v\n%s", err, out)
	}
	var res map[string]float64
	testenv.ReadJSON(t, filepath.Join(dir, "a", "predict_results.json"), &res)
	cut, err := eval.NewJieba(dict)
	if err != nil {
		t.Fatal(err)
	}
	var scores []eval.GenScores
	for _, p := range a {
		scores = append(scores, eval.ScoreGeneration(p.Predict, p.Label, cut(p.Predict), cut(p.Label)))
	}
	m := eval.MeanScores(scores)
	for k, want := range map[string]float64{"predict_bleu-4": m.BLEU4, "predict_rouge-1": m.Rouge1, "predict_rouge-2": m.Rouge2, "predict_rouge-l": m.RougeL} {
		if got, ok := res[k]; !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s: %v in predict_results.json, %v from the predictions", k, got, want)
		}
	}
	s := run(filepath.Join(dir, "s"), "--dataset", filepath.Join(sft, "sharegpt_zh_1K_format.jsonl"), "--max_samples", "3", "--batch", "2")
	if len(s) != 3 || s[0].Label == "" {
		t.Errorf("sharegpt: %+v", s)
	}
}

func TestEvalSFTBadInput(t *testing.T) {
	model := tinyModelDir(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "dict.txt")
	testenv.WriteFile(t, bad, []byte("的 100 u\n不好\n"))
	type badCase struct {
		args []string
		code int
		want []string
	}
	cases := []badCase{
		{[]string{"--output_dir", dir}, 2, []string{"--dataset is required"}},
		{[]string{"--dataset", "nope", "--dataset_dir", dir, "--jieba_dict", testenv.JiebaDict(t), "--output_dir", dir}, 1, []string{"dataset nope", "dataset_info.json"}},
		{[]string{"--dataset", "alpaca_zh_demo", "--dataset_dir", testenv.Path(t, "sft")}, 2, []string{"--output_dir is required"}},
		{[]string{"--dataset", "alpaca_zh_demo", "--dataset_dir", testenv.Path(t, "sft"), "--jieba_dict", bad, "--output_dir", dir}, 1, []string{bad + ":2", "word frequency"}},
		{[]string{"--dataset", "alpaca_zh_demo", "--dataset_dir", testenv.Path(t, "sft"), "--jieba_dict", filepath.Join(dir, "none.txt"), "--output_dir", dir}, 1, []string{"none.txt"}},
		{[]string{"--dataset", "alpaca_zh_demo", "--dataset_dir", testenv.Path(t, "sft"), "--jieba_dict", testenv.JiebaDict(t), "--template", "nope", "--output_dir", dir}, 1, []string{"template", "nope"}},
	}
	if !eval.EmbeddedDict {
		// Without --jieba_dict the dictionary is looked for; here it points nowhere.
		t.Setenv("ZHLLAMA_JIEBA_DICT", filepath.Join(dir, "missing-dict.txt"))
		cases = append(cases, badCase{[]string{"--dataset", "alpaca_zh_demo", "--dataset_dir", testenv.Path(t, "sft"), "--output_dir", dir}, 1, []string{"missing-dict.txt"}})
	}
	for _, c := range cases {
		_, errs, code := zhllama(t, "", append([]string{"eval", "sft", "--model", model}, c.args...)...)
		if code != c.code {
			t.Errorf("%v: code %d, want %d\n%s", c.args, code, c.code, errs)
		}
		for _, w := range c.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%v: stderr lacks %q:\n%s", c.args, w, errs)
			}
		}
	}
}

// eval rm on a model with a value head: swapping every pair's answers
// turns the accuracy into its complement and the margin into its
// negative, and the batch changes nothing.
func TestEvalRM(t *testing.T) {
	model := tinyModelDir(t)
	m, err := hfdir.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	head := llama.NewValueHead(m.Config.HiddenSize)
	head.Init(rand.New(rand.NewPCG(1, 2)))
	if err := hfdir.SaveValueHead(model, head); err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	testenv.ReadJSON(t, testenv.Path(t, "preference/dpo_zh_demo.json"), &recs)
	recs = recs[:12]
	dir := t.TempDir()
	pairs, swapped := filepath.Join(dir, "pairs.json"), filepath.Join(dir, "swapped.json")
	write := func(path string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, path, b)
	}
	write(pairs, recs)
	for _, r := range recs {
		r["chosen"], r["rejected"] = r["rejected"], r["chosen"]
	}
	write(swapped, recs)
	run := func(data, batch string) rmResult {
		t.Helper()
		out := filepath.Join(dir, "out"+batch+filepath.Base(data))
		o, errs, code := zhllama(t, "", "eval", "rm", "--model", model, "--dataset", data, "--template", "llama2", "--cutoff_len", "96", "--batch", batch, "--output_dir", out)
		if code != 0 || !strings.Contains(o, "accuracy") {
			t.Fatalf("eval rm: code %d\n%s\n%s", code, o, errs)
		}
		var r rmResult
		testenv.ReadJSON(t, filepath.Join(out, "rm_results.json"), &r)
		return r
	}
	a, b, s := run(pairs, "1"), run(pairs, "5"), run(swapped, "5")
	if a.Pairs != 12 || math.Abs(a.Accuracy-b.Accuracy) > 1e-12 || math.Abs(a.MeanMargin-b.MeanMargin) > 1e-4 {
		t.Errorf("batch 1 %+v, batch 5 %+v", a, b)
	}
	if math.Abs(s.Accuracy-(1-a.Accuracy)) > 1e-12 || math.Abs(s.MeanMargin+a.MeanMargin) > 1e-4 {
		t.Errorf("swapped %+v, original %+v", s, a)
	}
	t.Logf("random head: %+v", a)

	// Errors name what is wrong.
	plain := tinyModelDir(t)
	if _, errs, code := zhllama(t, "", "eval", "rm", "--model", plain, "--dataset", pairs); code != 1 || !strings.Contains(errs, hfdir.ValueHeadFile) || !strings.Contains(errs, "stage: rm") {
		t.Errorf("no value head: code %d %s", code, errs)
	}
	if _, errs, code := zhllama(t, "", "eval", "rm", "--model", model, "--dataset", testenv.Path(t, "sft/alpaca_zh_demo.json")); code != 1 || !strings.Contains(errs, "one answer per prompt") {
		t.Errorf("an SFT dataset: code %d %s", code, errs)
	}
	if _, errs, code := zhllama(t, "", "eval", "rm", "--model", model); code != 2 || !strings.Contains(errs, "--dataset is required") {
		t.Errorf("no dataset: code %d %s", code, errs)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.json"), []byte(`[{"conversations": [], "chosen": 1}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := zhllama(t, "", "eval", "rm", "--model", model, "--dataset", filepath.Join(dir, "broken.json")); code != 1 || !strings.Contains(errs, "broken.json") {
		t.Errorf("a broken dataset: code %d %s", code, errs)
	}
}

type rmResult struct {
	Pairs      int
	Accuracy   float64
	MeanMargin float64 `json:"mean_margin"`
	Loss       float64
}
