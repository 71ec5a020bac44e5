package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/train"
)

// writePipeline writes a pipeline file: a tiny model made from the LLaMA-2
// tokenizer, pretrained, fine-tuned with LoRA, merged and exported.
func writePipeline(t *testing.T, dir, sftData string) string {
	t.Helper()
	src := `output_dir: ` + filepath.Join(dir, "out") + `
samples: ["你好", "介绍一下北京"]
stages:
  - name: base
    run: model init
    with: {preset: tiny, tokenizer: ` + testenv.Path(t, "tokenizers/llama2/tokenizer.model") + `, output_dir: "${out}"}
  - name: pt
    run: train
    with:
      stage: pt
      model_name_or_path: ${base}
      dataset: ` + testenv.Path(t, "pretrain/wiki_demo.txt") + `
      finetuning_type: full
      cutoff_len: 64
      max_samples: 32
      max_steps: 2
      save_steps: 1
      logging_steps: 1
      learning_rate: 1e-3
  - name: sft
    run: train
    with:
      stage: sft
      model_name_or_path: ${pt}
      dataset: ` + sftData + `
      template: llama2_zh
      finetuning_type: lora
      lora_target: [q_proj, v_proj]
      cutoff_len: 64
      max_samples: 16
      max_steps: 2
      save_steps: 1
      logging_steps: 1
  - name: merged
    run: export
    with:
      model: ${pt}
      adapter: ${sft}
`
	path := filepath.Join(dir, "pipeline.yaml")
	testenv.WriteFile(t, path, []byte(src))
	return path
}

type reportFile struct {
	Stages []stageReport `json:"stages"`
}

func readReport(t *testing.T, dir string) map[string]stageReport {
	t.Helper()
	var r reportFile
	testenv.ReadJSON(t, filepath.Join(dir, "out", "report.json"), &r)
	m := map[string]stageReport{}
	for _, s := range r.Stages {
		m[s.Name] = s
	}
	return m
}

func statuses(r map[string]stageReport) string {
	var s []string
	for _, n := range []string{"base", "pt", "sft", "merged"} {
		s = append(s, n+"="+r[n].Status)
	}
	return strings.Join(s, " ")
}

// A pipeline runs its stages in order, each feeding the next by name, and
// reports them; run again it skips what is done and unchanged; a changed
// input reruns the stages from there on; an interrupted training stage
// resumes from its checkpoint.
func TestRunPipeline(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "sft.json")
	b, err := os.ReadFile(testenv.Path(t, "sft/alpaca_zh_demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, data, b)
	pipe := writePipeline(t, dir, data)

	_, errs, code := zhllama(t, "", "run", pipe)
	if code != 0 {
		t.Fatalf("first run: code %d\n%s", code, errs)
	}
	r := readReport(t, dir)
	if got := statuses(r); got != "base=ran pt=ran sft=ran merged=ran" {
		t.Fatalf("first run: %s\n%s", got, errs)
	}
	if r["pt"].Metrics["loss"] == 0 || r["sft"].Metrics["first_loss"] == 0 || len(r["sft"].Plots) == 0 {
		t.Errorf("metrics %v, plots %v", r["sft"].Metrics, r["sft"].Plots)
	}
	if s := r["sft"].Samples; len(s) != 2 || s[0].Prompt != "你好" || s[0].After == "" {
		t.Errorf("sft samples: %+v", s)
	}
	html, err := os.ReadFile(filepath.Join(dir, "out", "report.html"))
	if err != nil || !strings.Contains(string(html), "data:image/svg") || !strings.Contains(string(html), "介绍一下北京") {
		t.Errorf("report.html: %v\n%.300s", err, html)
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "merged", "model.safetensors")); err != nil {
		t.Errorf("export: %v", err)
	}
	var cfg map[string]any
	testenv.ReadJSON(t, filepath.Join(dir, "out", "merged", "tokenizer_config.json"), &cfg)
	if src, _ := cfg["chat_template"].(string); !strings.Contains(src, "llama2_zh") {
		t.Errorf("the merged model has no llama2_zh chat_template: %.80q", src)
	}

	_, errs, code = zhllama(t, "", "run", pipe)
	if r := readReport(t, dir); code != 0 || statuses(r) != "base=skipped pt=skipped sft=skipped merged=skipped" {
		t.Fatalf("second run: code %d, %s\n%s", code, statuses(r), errs)
	}

	// A changed dataset reruns sft and what follows it, not before.
	var examples []map[string]any
	if err := json.Unmarshal(b, &examples); err != nil {
		t.Fatal(err)
	}
	compact, _ := json.Marshal(examples[1:])
	testenv.WriteFile(t, data, compact)
	_, errs, code = zhllama(t, "", "run", pipe)
	if r := readReport(t, dir); code != 0 || statuses(r) != "base=skipped pt=skipped sft=ran merged=ran" {
		t.Fatalf("after a data change: code %d, %s\n%s", code, statuses(r), errs)
	}

	// sft interrupted: no mark, its checkpoints left. It resumes.
	os.Remove(filepath.Join(dir, "out", "sft", markFile))
	_, errs, code = zhllama(t, "", "run", pipe)
	if r := readReport(t, dir); code != 0 || statuses(r) != "base=skipped pt=skipped sft=ran merged=ran" || !strings.Contains(errs, "resuming from its last checkpoint") {
		t.Fatalf("after an interruption: code %d, %s\n%s", code, statuses(r), errs)
	}

	// --force reruns a stage that is done.
	_, errs, code = zhllama(t, "", "run", pipe, "--force", "pt")
	if r := readReport(t, dir); code != 0 || statuses(r) != "base=skipped pt=ran sft=ran merged=ran" {
		t.Fatalf("--force pt: code %d, %s\n%s", code, statuses(r), errs)
	}
}

// A pipeline file's mistakes are named with their line before anything
// runs; a failing stage stops the run, names the stage, and is reported.
func TestRunPipelineErrors(t *testing.T) {
	dir := t.TempDir()
	for src, want := range map[string]string{
		"output_dir: o\nstages:\n  - name: a\n    run: train\n    with: {model_name_or_path: \"${b}\"}\n": "line 5: ${b} names no earlier stage",
		"output_dir: o\nstages:\n  - name: a\n    run: fly\n":                                             `line 3: stage "a": run: "fly" is not a command`,
		"output_dir: o\nstages:\n  - name: a\n    run: train\n  - name: a\n    run: train\n":              `line 5: stage "a": the name is taken`,
		"output_dir: o\nstages:\n  - name: a\n    run: train\n    wiht: {}\n":                             "field wiht not found",
		"output_dir: o\nstages: []\n":                                                              "no stages",
		"stages:\n  - name: a\n    run: version\n":                                                 "output_dir is missing",
		"output_dir: o\nstages:\n  - name: 1a\n    run: train\n":                                   "the name must be",
		"output_dir: o\nstages:\n  - name: a\n    run: train\n    with: {stage: sft, stage: pt}\n": "stage is given twice",
		"output_dir: o\nstages:\n  - name: a\n    run: train\n    with: {dataset: {a: b}}\n":       "dataset: give a value or a list",
		"output_dir: " + filepath.Join(dir, "o") + "\nstages:\n  - name: a\n    run: export\n    with: {model: " + filepath.Join(dir, "none") + ", adapter: x}\n": "stage a (export)",
	} {
		path := filepath.Join(dir, "p.yaml")
		testenv.WriteFile(t, path, []byte(src))
		_, errs, code := zhllama(t, "", "run", path)
		if code == 0 || !strings.Contains(errs, want) {
			t.Errorf("%q: code %d, want %q in\n%s", src, code, want, errs)
		}
	}
	var r reportFile
	testenv.ReadJSON(t, filepath.Join(dir, "o", "report.json"), &r)
	if len(r.Stages) != 1 || r.Stages[0].Status != "failed" || r.Stages[0].Error == "" {
		b, _ := json.Marshal(r)
		t.Errorf("a failed stage's report: %s", b)
	}
}

// The README's sample pipeline reads, every ${...} resolves, and each
// train stage's keys are keys train takes.
func TestSamplePipelineReads(t *testing.T) {
	p, err := readPipeline(filepath.Join("..", "..", "examples", "chinese-alpaca-2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{"output_dir": "runs"}
	for i := range p.Stages {
		s := &p.Stages[i]
		dirs["out"] = filepath.Join("runs", s.Name)
		args, _, err := p.stageArgs(s, dirs)
		if err != nil {
			t.Fatal(err)
		}
		dirs[s.Name] = dirs["out"]
		if s.Run == "train" {
			if _, _, err := train.Parse("", args); err != nil {
				t.Errorf("stage %s: %v", s.Name, err)
			}
		}
	}
}
