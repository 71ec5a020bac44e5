package train

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"zhllama/corpus"
	"zhllama/hfdir"
	"zhllama/internal/testenv"
	"zhllama/llama"
	"zhllama/llama/torchref"
	"zhllama/rlhf"
	"zhllama/safetensors"
	"zhllama/spm"
	"zhllama/template"
)

// tinyModel writes a small random model with LLaMA-2's tokenizer.
func tinyModel(t *testing.T) string {
	t.Helper()
	tok, err := spm.Load(testenv.Path(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := llama.Preset("tiny")
	c.TieWordEmbeddings = false
	dir := filepath.Join(t.TempDir(), "base")
	if err := hfdir.Init(c, tok, dir, hfdir.InitOptions{Seed: 5, DType: "float32"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func sftConfig(t *testing.T, model string, extra ...string) Config {
	t.Helper()
	args := append([]string{"--model_name_or_path", model, "--dataset", testenv.Path(t, "sft/alpaca_zh_demo.json"),
		"--template", "llama2", "--cutoff_len", "48", "--max_samples", "16", "--finetuning_type", "full",
		"--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--output_dir", filepath.Join(t.TempDir(), "out"),
		"--learning_rate", "1e-3", "--logging_steps", "1"}, extra...)
	c, _, err := Parse("", args)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newTrainer(t *testing.T, c Config) *Trainer {
	t.Helper()
	tr, err := New(c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// One SGD step and three AdamW steps (with accumulation, clipping, weight
// decay off for the norms, and a warmup-cosine schedule) move every
// parameter as PyTorch moves it on the same micro-batches.
func TestTrainParityWithPyTorch(t *testing.T) {
	testenv.RequireTorch(t)
	model := tinyModel(t)
	for _, tc := range []struct {
		name  string
		steps int
		extra []string
	}{
		{"sgd", 1, []string{"--optim", "sgd", "--weight_decay", "0.1", "--lr_scheduler_type", "constant", "--learning_rate", "0.5"}},
		{"adamw", 3, []string{"--weight_decay", "0.01", "--lr_scheduler_type", "cosine", "--warmup_steps", "1", "--max_steps", "4", "--max_grad_norm", "0.5"}},
		{"lora", 2, []string{"--finetuning_type", "lora", "--lora_rank", "4", "--lora_alpha", "8", "--lora_target", "q_proj,v_proj,down_proj", "--additional_target", "norm", "--optim", "sgd", "--learning_rate", "0.5", "--weight_decay", "0.01"}},
		{"lora-adamw", 1, []string{"--finetuning_type", "lora", "--lora_rank", "4", "--use_rslora", "--lora_target", "all", "--weight_decay", "0.01"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sftConfig(t, model, tc.extra...)
			tr := newTrainer(t, c)
			in, before := torchTrainInput(tr, c)
			var steps [][]map[string]any
			for s := 0; s < tc.steps; s++ {
				var micro []map[string]any
				for _, idx := range tr.stepBatches(s) {
					micro = append(micro, batchJSON(MakeBatch(tr.examples(tr.Train, idx), 0)))
				}
				steps = append(steps, micro)
			}
			for s := 0; s < tc.steps; s++ {
				if r := tr.TrainStep(); r.Skipped {
					t.Fatalf("step %d skipped: %+v", s, r)
				}
			}
			in["steps"] = steps
			worst := compareTrained(t, tr, model, in, before)
			t.Logf("%s: %d steps, worst relative update difference %.2g", tc.name, tc.steps, worst)
		})
	}
}

// torchTrainInput is the reference's train input for tr before its first
// step (all but the steps): what trains, named as the reference names
// whole tensors, the no-decay group, the adapters' starting values and
// the optimizer's settings; and the trained tensors' starting values.
func torchTrainInput(tr *Trainer, c Config) (in map[string]any, before map[string][]float32) {
	before = map[string][]float32{}
	noDecay, names := []string{}, []string{}
	for _, p := range tr.Params {
		before[p.Name] = append([]float32(nil), p.Data...)
		names = append(names, strings.TrimPrefix(p.Name, "base_model.model."))
		if p.Group == noDecayGroup {
			noDecay = append(noDecay, strings.TrimPrefix(p.Name, "base_model.model."))
		}
	}
	var lora []map[string]any
	for _, a := range tr.Model.Adapters(llama.DefaultAdapter) {
		ka, kb := hfdir.LoRAKeys(a.Name)
		ka, kb = strings.TrimPrefix(ka, "base_model.model."), strings.TrimPrefix(kb, "base_model.model.")
		lora = append(lora, map[string]any{"weight": a.Name, "a": ka, "b": kb, "A": slices.Clone(a.LoRA.A), "B": slices.Clone(a.LoRA.B), "r": a.LoRA.R, "scale": a.LoRA.Scale})
	}
	return map[string]any{"optim": map[bool]string{true: "sgd", false: "adamw"}[c.Optim == "sgd"],
		"lr": c.LearningRate, "weight_decay": c.WeightDecay, "betas": []float64{c.AdamBeta1, c.AdamBeta2}, "eps": c.AdamEpsilon,
		"max_grad_norm": c.MaxGradNorm, "scheduler": c.LRSchedulerType, "warmup": tr.Warmup, "total": tr.Total,
		"no_decay": noDecay, "trainable": names, "lora": lora}, before
}

// batchJSON is a batch as the reference reads it: rows of ids, valid and labels.
func batchJSON(b Batch) map[string]any {
	ids, valid, labels := make([][]int32, b.B), make([][]bool, b.B), make([][]int32, b.B)
	for r := 0; r < b.B; r++ {
		ids[r], valid[r], labels[r] = b.IDs[r*b.T:(r+1)*b.T], b.Valid[r*b.T:(r+1)*b.T], b.Labels[r*b.T:(r+1)*b.T]
	}
	return map[string]any{"ids": ids, "valid": valid, "labels": labels}
}

// compareTrained runs the reference's train mode on in and fails t where
// a trained tensor's update differs from PyTorch's by more than 1e-4
// relative (updateDiff); it returns the worst difference.
func compareTrained(t *testing.T, tr *Trainer, model string, in map[string]any, before map[string][]float32) float64 {
	t.Helper()
	return compareParams(t, tr, torchTrain(t, model, in), before)
}

// torchTrain runs the reference's train mode on in and returns its
// output, open until the test ends.
func torchTrain(t *testing.T, model string, in map[string]any) *safetensors.File {
	t.Helper()
	dir := t.TempDir()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(dir, "in.json"), b)
	if _, err := torchref.Run(dir, "train", model, filepath.Join(dir, "in.json"), filepath.Join(dir, "out.safetensors")); err != nil {
		t.Fatal(err)
	}
	ref, err := safetensors.Open(filepath.Join(dir, "out.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	return ref
}

// compareParams fails t where a trained tensor's update differs from the
// reference's ("param." + name) by more than 1e-4 relative (updateDiff);
// it returns the worst difference.
func compareParams(t *testing.T, tr *Trainer, ref *safetensors.File, before map[string][]float32) float64 {
	t.Helper()
	worst := 0.0
	for _, p := range tr.Params {
		rt, ok := ref.Tensor("param." + strings.TrimPrefix(p.Name, "base_model.model."))
		if !ok {
			t.Fatalf("reference lacks %s", p.Name)
		}
		want, _ := rt.Float32(nil)
		d := updateDiff(before[p.Name], p.Data, want)
		worst = math.Max(worst, d)
		if d > 1e-4 {
			t.Errorf("%s: update differs from PyTorch's by %.2g relative", p.Name, d)
		}
	}
	return worst
}

// updateDiff is ‖got−want‖ / ‖want−before‖: the error relative to the
// size of the update, in the L2 norm. (A max-norm ratio would be ruled by
// entries whose gradient nearly cancels over the batch: Adam scales those
// up to a full-size step, and their float32 rounding with them.)
func updateDiff(before, got, want []float32) float64 {
	var d, u float64
	for i := range got {
		d += math.Pow(float64(got[i]-want[i]), 2)
		u += math.Pow(float64(want[i]-before[i]), 2)
	}
	return math.Sqrt(d / math.Max(u, 1e-60))
}

// Twenty steps straight and ten, a checkpoint, and ten resumed from it
// give the same weights bit for bit.
func TestResumeIsExact(t *testing.T) {
	model := tinyModel(t)
	extra := []string{"--max_steps", "20", "--lr_scheduler_type", "cosine", "--warmup_ratio", "0.1", "--save_steps", "10", "--weight_decay", "0.01"}
	straight := sftConfig(t, model, extra...)
	a := newTrainer(t, straight)
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	split := sftConfig(t, model, extra...)
	b := newTrainer(t, split)
	if err := b.prepareOutput(); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		b.TrainStep()
	}
	if err := b.SaveCheckpoint(); err != nil {
		t.Fatal(err)
	}
	c := newTrainer(t, split)
	if err := c.Resume("true"); err != nil {
		t.Fatal(err)
	}
	if c.Step != 10 {
		t.Fatalf("resumed at step %d", c.Step)
	}
	if err := c.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, p := range a.Params {
		q := c.Params[i]
		for j := range p.Data {
			if p.Data[j] != q.Data[j] {
				t.Fatalf("%s[%d]: straight %g, resumed %g", p.Name, j, p.Data[j], q.Data[j])
			}
		}
	}
	// The final directory is a model that loads, with the tokenizer beside it.
	m, err := hfdir.Load(split.OutputDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Named()[0].Data[0]; got != a.Params[0].Data[0] {
		t.Errorf("saved model differs: %g", got)
	}
	for _, f := range []string{"tokenizer.model", "metrics.jsonl", "training_loss.svg", "checkpoint-10/optimizer.safetensors"} {
		if _, err := os.Stat(filepath.Join(split.OutputDir, f)); err != nil {
			t.Error(err)
		}
	}
}

// Two micro-batches of 2 accumulate to the step one batch of 4 takes.
func TestAccumulationMatchesBigBatch(t *testing.T) {
	model := tinyModel(t)
	big := newTrainer(t, sftConfig(t, model, "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--optim", "sgd"))
	small := newTrainer(t, sftConfig(t, model, "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--optim", "sgd"))
	// Both see the same four examples: the epoch's order does not depend on the batch size.
	rb, rs := big.TrainStep(), small.TrainStep()
	if math.Abs(rb.Loss-rs.Loss) > 1e-5*rb.Loss || rb.Tokens != rs.Tokens {
		t.Fatalf("loss %g over %d tokens, accumulated %g over %d", rb.Loss, rb.Tokens, rs.Loss, rs.Tokens)
	}
	for i, p := range big.Params {
		if d := updateDiff(make([]float32, len(p.Grad)), p.Grad, small.Params[i].Grad); d > 1e-5 {
			t.Errorf("%s: gradients differ by %.2g", p.Name, d)
		}
	}
}

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte("# comment\nmodel_name_or_path: m\ndataset: a, b\nlora_target:\n  - q_proj\n  - v_proj\noutput_dir: o\nlearning_rate: 1.0e-4\nbf16: true\npacking: false\n"), 0o644)
	c, ignored, err := Parse(path, []string{"--learning_rate", "2e-5", "--overwrite_output_dir", "--stage=pt"})
	if err != nil {
		t.Fatal(err)
	}
	if c.LearningRate != 2e-5 || !c.OverwriteOutputDir || c.Stage != "pt" || len(c.Dataset) != 2 || c.Dataset[1] != "b" ||
		len(c.LoraTarget) != 2 || *c.Packing || c.LoraAlpha != 16 || len(ignored) != 1 {
		t.Errorf("parsed %+v, ignored %v", c, ignored)
	}
	testenv.WriteFile(t, path, []byte("model_name_or_path: m\nlearning_rate: 1\noutput_dir: o\nlearning_rate: 5\n"))
	if _, _, err := Parse(path, nil); err == nil || !strings.Contains(err.Error(), "line 4: key learning_rate is given again (first on line 2)") {
		t.Errorf("duplicate key: %v", err)
	}
	os.WriteFile(path, []byte("model_name_or_path: m\nlearning_rte: 1\n"), 0o644)
	if _, _, err := Parse(path, nil); err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "did you mean learning_rate") {
		t.Errorf("unknown key: %v", err)
	}
	for _, bad := range [][]string{{"--finetuning_type", "qlora"}, {"--cutoff_len", "1.5"}, {"--packing", "maybe"}, {"--max_stepz", "3"}} {
		if _, _, err := Parse("", append([]string{"--model_name_or_path", "m", "--dataset", "d", "--output_dir", "o"}, bad...)); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// LLaMA-Factory's deepspeed key: the JSON's ZeRO stage sets zero_stage
// (stages 1–3 run as ZeRO-1); zero_stage given or optim sgd keeps its own;
// a missing or malformed file is named.
func TestDeepSpeedKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		testenv.WriteFile(t, p, []byte(body))
		return p
	}
	z2 := write("ds_z2.json", `{"train_batch_size": "auto", "zero_optimization": {"stage": 2, "overlap_comm": true}}`)
	z0 := write("ds_z0.json", `{"zero_optimization": {"stage": 0}}`)
	none := write("ds_none.json", `{"bf16": {"enabled": "auto"}}`)
	args := func(extra ...string) []string {
		return append([]string{"--model_name_or_path", "m", "--dataset", "d", "--output_dir", "o"}, extra...)
	}
	for _, tc := range []struct {
		extra []string
		want  int
	}{
		{[]string{"--deepspeed", z2}, 1},
		{[]string{"--deepspeed", z0}, 0},
		{[]string{"--deepspeed", none}, 0},
		{[]string{"--deepspeed", z2, "--optim", "sgd"}, 0},
	} {
		c, ignored, err := Parse("", args(tc.extra...))
		if err != nil || c.ZeroStage != tc.want || len(ignored) != 0 {
			t.Errorf("%v: zero_stage %d (want %d), ignored %v, %v", tc.extra, c.ZeroStage, tc.want, ignored, err)
		}
	}
	for file, want := range map[string]string{
		filepath.Join(dir, "missing.json"):                       "missing.json",
		write("bad.json", `{"zero_optimization": {"stage": 4}}`): "zero_optimization.stage is 4",
		write("broken.json", `{"zero_optimization": `):           "broken.json",
	} {
		if _, _, err := Parse("", args("--deepspeed", file)); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "key deepspeed") {
			t.Errorf("%s: %v", file, err)
		}
	}
}

// A tokenizer with more pieces grows the embeddings; old rows are kept.
func TestResizeVocab(t *testing.T) {
	model := tinyModel(t)
	c := sftConfig(t, model, "--tokenizer_name_or_path", testenv.Path(t, "tokenizers/chinese-llama2/tokenizer.model"), "--max_steps", "1")
	tr := newTrainer(t, c)
	base, err := hfdir.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Model.Config.VocabSize != 55296 || len(tr.Model.Embed.W) != 55296*64 || len(tr.Model.LMHead.W) != 55296*64 {
		t.Fatalf("vocab %d, embed %d", tr.Model.Config.VocabSize, len(tr.Model.Embed.W))
	}
	for i, v := range base.Embed.W {
		if tr.Model.Embed.W[i] != v {
			t.Fatalf("old row value %d changed", i)
		}
	}
	// And the other way is an error.
	c2 := sftConfig(t, model, "--tokenizer_name_or_path", testenv.Path(t, "tokenizers/chinese_sp/chinese_sp.model"))
	if _, err := New(c2, io.Discard); err == nil || !strings.Contains(err.Error(), "vocab_size 32000") {
		t.Errorf("smaller tokenizer: %v", err)
	}
}

// Freeze trains the chosen modules of the last layers only.
func TestFreeze(t *testing.T) {
	model := tinyModel(t)
	tr := newTrainer(t, sftConfig(t, model, "--finetuning_type", "freeze", "--freeze_trainable_layers", "1", "--freeze_trainable_modules", "mlp", "--max_steps", "1"))
	for _, p := range tr.Params {
		if !strings.HasPrefix(p.Name, "model.layers.1.mlp.") {
			t.Errorf("trains %s", p.Name)
		}
	}
	if len(tr.Params) != 3 {
		t.Errorf("%d tensors trained", len(tr.Params))
	}
	before := append([]float32(nil), tr.Model.Layers[0].Q.W...)
	up := append([]float32(nil), tr.Model.Layers[1].Up.W...)
	tr.TrainStep()
	tr.TrainStep()
	if updateDiff(before, tr.Model.Layers[0].Q.W, before) != 0 || updateDiff(up, tr.Model.Layers[1].Up.W, up) == 0 {
		t.Error("freeze changed a frozen weight or left a trained one")
	}
}

// A LoRA run writes a PEFT adapter that loads back onto the base with the
// logits the trained model gives; a resized vocabulary travels with it.
func TestLoRAAdapterRoundTrip(t *testing.T) {
	model := tinyModel(t)
	c := sftConfig(t, model, "--finetuning_type", "lora", "--lora_rank", "4", "--max_steps", "3", "--learning_rate", "1e-2",
		"--tokenizer_name_or_path", testenv.Path(t, "tokenizers/chinese-llama2/tokenizer.model"), "--lora_dropout", "0.1",
		"--additional_target", "norm")
	tr := newTrainer(t, c)
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	ac, err := hfdir.ReadAdapterConfig(c.OutputDir)
	if err != nil || len(ac.TargetModules.List) != 7 || len(ac.ModulesToSave) != 3 {
		t.Fatalf("adapter config %+v: %v", ac, err)
	}
	// The template trained with is the adapter's chat_template.
	tpl, _ := template.Get("llama2")
	if src, err := hfdir.ChatTemplate(c.OutputDir); src != tpl.Jinja() || err != nil {
		t.Errorf("chat_template %.80q, %v", src, err)
	}
	m, err := hfdir.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	if _, replaced, err := hfdir.LoadAdapter(m, c.OutputDir, llama.DefaultAdapter); err != nil || len(replaced) != 3 || m.Config.VocabSize != 55296 {
		t.Fatalf("load adapter: %v, replaced %v, vocab %d", err, replaced, m.Config.VocabSize)
	}
	ids := []int32{1, 450, 40000, 3}
	want := append([]float32(nil), tr.Model.Step(tr.Model.NewCache(1, 4, false), [][]int32{ids})...)
	if err := m.MergeLoRA(); err != nil {
		t.Fatal(err)
	}
	got := m.Step(m.NewCache(1, 4, false), [][]int32{ids})
	if d := updateDiff(make([]float32, len(want)), got, want); d > 1e-5 {
		t.Errorf("merged adapter logits differ by %.2g", d)
	}

	// PyTorch applying the files as PEFT reads them gives the same logits.
	testenv.RequireTorch(t)
	dir := t.TempDir()
	b, _ := json.Marshal(map[string]any{"ids": [][]int32{ids}})
	os.WriteFile(filepath.Join(dir, "in.json"), b, 0o644)
	if _, err := torchref.Run(dir, "adapter", model, c.OutputDir, filepath.Join(dir, "in.json"), filepath.Join(dir, "out.safetensors")); err != nil {
		t.Fatal(err)
	}
	ref, err := safetensors.Open(filepath.Join(dir, "out.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	lt, _ := ref.Tensor("logits")
	all, _ := lt.Float32(nil)
	v := m.Config.VocabSize
	if d := updateDiff(make([]float32, v), got, all[(len(ids)-1)*v:]); d > 1e-5 {
		t.Errorf("PyTorch's logits with the adapter differ by %.2g", d)
	}
}

// QLoRA: the projections are NF4 (or int8) and frozen; the adapters train,
// and the loss falls.
func TestQLoRA(t *testing.T) {
	model := tinyModel(t)
	for _, bits := range []string{"4", "8"} {
		tr := newTrainer(t, sftConfig(t, model, "--finetuning_type", "lora", "--quantization_bit", bits, "--max_steps", "6",
			"--learning_rate", "5e-3", "--lora_rank", "8", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--max_samples", "4"))
		if tr.Model.Layers[0].Q.Compact == nil || tr.Model.Layers[0].Q.W != nil {
			t.Fatal("projections not quantized")
		}
		first := tr.TrainStep().Loss
		var last float64
		for range 5 {
			last = tr.TrainStep().Loss
		}
		if !(last < first) {
			t.Errorf("%s bits: loss %g -> %g", bits, first, last)
		}
	}
}

// An interruption saves a checkpoint and stops; save_total_limit keeps the
// newest checkpoints only.
func TestInterruptAndSaveLimit(t *testing.T) {
	model := tinyModel(t)
	c := sftConfig(t, model, "--max_steps", "8", "--save_steps", "2", "--save_total_limit", "2")
	tr := newTrainer(t, c)
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	cks, _ := checkpoints(c.OutputDir)
	if len(cks) != 2 || cks[0].step != 4 || cks[1].step != 6 {
		t.Errorf("checkpoints %+v, want steps 4 and 6", cks)
	}
	c2 := sftConfig(t, model, "--max_steps", "8")
	tr2 := newTrainer(t, c2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // as Ctrl-C during the first step
	if err := tr2.Run(ctx); !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "checkpoint-1") {
		t.Fatalf("interrupted run: %v", err)
	}
	if cks, _ := checkpoints(c2.OutputDir); len(cks) != 1 || cks[0].step != 1 {
		t.Errorf("after the interruption: %+v", cks)
	}
}

// Non-finite losses skip the step and say so; five in a row stop the run.
func TestNaNGuard(t *testing.T) {
	model := tinyModel(t)
	tr := newTrainer(t, sftConfig(t, model, "--max_steps", "8"))
	for i := range tr.Model.Norm {
		tr.Model.Norm[i] = float32(math.NaN())
	}
	var log strings.Builder
	tr.Log = &log
	err := tr.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "5 steps in a row") || !strings.Contains(log.String(), "step skipped") {
		t.Errorf("err %v, log %s", err, log.String())
	}
}

// gradient_checkpointing changes the memory, not the result.
func TestGradientCheckpointingKey(t *testing.T) {
	model := tinyModel(t)
	a := newTrainer(t, sftConfig(t, model, "--max_steps", "2"))
	b := newTrainer(t, sftConfig(t, model, "--max_steps", "2", "--gradient_checkpointing", "true"))
	a.TrainStep()
	b.TrainStep()
	for i, p := range a.Params {
		if d := updateDiff(make([]float32, len(p.Data)), b.Params[i].Data, p.Data); d != 0 {
			t.Fatalf("%s differs by %g", p.Name, d)
		}
	}
}

// An epoch is every example once; its last step takes the micro-batches
// that are left, as transformers counts them.
func TestEpochs(t *testing.T) {
	tr := newTrainer(t, sftConfig(t, tinyModel(t), "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "3", "--num_train_epochs", "2"))
	if tr.Total != 6 {
		t.Fatalf("%d steps for 2 epochs of 8 micro-batches in steps of 3", tr.Total)
	}
	for epoch := 0; epoch < 2; epoch++ {
		seen := map[int]bool{}
		var sizes []int
		for s := 3 * epoch; s < 3*epoch+3; s++ {
			micro := tr.stepBatches(s)
			sizes = append(sizes, len(micro))
			for _, idx := range micro {
				for _, i := range idx {
					seen[i] = true
				}
			}
		}
		if len(seen) != tr.Train.Len() || !slices.Equal(sizes, []int{3, 3, 2}) {
			t.Errorf("epoch %d: %d of %d examples, micro-batches per step %v", epoch, len(seen), tr.Train.Len(), sizes)
		}
	}
	tr.Step = 3
	if tr.epoch() != 1 {
		t.Errorf("epoch %g after one epoch's steps", tr.epoch())
	}
}

// Pretraining from a data pack reads its blocks from the mapped shards:
// the same blocks as packing the text in memory, none of them copied up
// front.
func TestPackedSource(t *testing.T) {
	model := tinyModel(t)
	text := testenv.Path(t, "pretrain/wiki_demo.txt")
	pack := filepath.Join(t.TempDir(), "pack")
	if _, err := corpus.Pack(corpus.PackOptions{Tokenizer: filepath.Join(model, "tokenizer.model"), Inputs: []string{text},
		OutputDir: pack, CutoffLen: 64, Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	args := []string{"--model_name_or_path", model, "--stage", "pt", "--cutoff_len", "64", "--output_dir", t.TempDir(), "--max_steps", "1"}
	packed, _, err := Parse("", append(args, "--dataset", pack))
	if err != nil {
		t.Fatal(err)
	}
	inMemory, _, _ := Parse("", append(args, "--dataset", text))
	a, b := newTrainer(t, packed), newTrainer(t, inMemory)
	defer a.Close()
	if _, ok := a.Train.(*packedSource); !ok {
		t.Fatalf("a pack trains from %T", a.Train)
	}
	if a.Train.Len() != b.Train.Len() || a.Train.Len() < 10 {
		t.Fatalf("%d blocks packed, %d in memory", a.Train.Len(), b.Train.Len())
	}
	for _, i := range []int{0, 7, a.Train.Len() - 1} {
		if !slices.Equal(a.Train.Example(i).IDs, b.Train.Example(i).IDs) {
			t.Errorf("block %d differs", i)
		}
	}
	// A folder left by a failed pack is named as such.
	stub := t.TempDir()
	testenv.WriteFile(t, filepath.Join(stub, "tokenizer.model"), []byte("x"))
	c, _, _ := Parse("", append(args, "--dataset", stub))
	if _, err := New(c, io.Discard); err == nil || !strings.Contains(err.Error(), "without index.json") {
		t.Errorf("a stub pack folder: %v", err)
	}
}

// Resume checks what the checkpoint trained by name: optimizer state of
// the numbered layout loads by position, and a checkpoint of other tensors
// is refused with the tensor named.
func TestResumeChecksNames(t *testing.T) {
	model := tinyModel(t)
	extra := []string{"--max_steps", "4", "--finetuning_type", "lora", "--lora_rank", "2"}
	c := sftConfig(t, model, extra...)
	a := newTrainer(t, c)
	if err := a.prepareOutput(); err != nil {
		t.Fatal(err)
	}
	a.TrainStep()
	if err := a.SaveCheckpoint(); err != nil {
		t.Fatal(err)
	}
	other := newTrainer(t, sftConfig(t, model, "--max_steps", "4", "--finetuning_type", "lora", "--lora_rank", "2", "--lora_target", "q_proj", "--output_dir", c.OutputDir))
	if err := other.Resume("true"); err == nil || !strings.Contains(err.Error(), "lora_A") {
		t.Errorf("checkpoint of other tensors: %v", err)
	}
	// Rewrite the optimizer state as numbered tensors, as older checkpoints have it.
	optPath := filepath.Join(c.OutputDir, "checkpoint-1", optimizerFile)
	f, err := safetensors.Open(optPath)
	if err != nil {
		t.Fatal(err)
	}
	var srcs []safetensors.Source
	for i, p := range a.Params {
		for _, kind := range []string{"exp_avg", "exp_avg_sq"} {
			tn, _ := f.Tensor(kind + "." + p.Name)
			v, _ := tn.Float32(nil)
			srcs = append(srcs, safetensors.FromFloat32(kind+"."+strconv.Itoa(i), safetensors.F32, []int{len(v)}, v))
		}
	}
	meta := f.Metadata
	f.Close()
	if err := safetensors.Write(optPath, meta, srcs); err != nil {
		t.Fatal(err)
	}
	b := newTrainer(t, c)
	if err := b.Resume("true"); err != nil {
		t.Fatalf("numbered optimizer state: %v", err)
	}
	ra, rb := a.TrainStep(), b.TrainStep()
	if ra.Loss != rb.Loss || !slices.Equal(a.Params[0].Data, b.Params[0].Data) {
		t.Errorf("resumed from numbered state: loss %g, straight %g", rb.Loss, ra.Loss)
	}
}

// A dataset_info.json whose formatting contradicts its file is named as
// the cause, instead of every record failing on its own.
func TestDeclaredFormattingMismatch(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "alpaca.json"), []byte(`[{"instruction":"介绍一下长城。","input":"","output":"长城是中国古代的军事防御工程。"}]`))
	testenv.WriteFile(t, filepath.Join(dir, "dataset_info.json"), []byte(`{"d": {"file_name": "alpaca.json", "formatting": "sharegpt"}}`))
	c := sftConfig(t, tinyModel(t), "--dataset", "d", "--dataset_dir", dir)
	if _, err := New(c, io.Discard); err == nil || !strings.Contains(err.Error(), "declares formatting sharegpt, but its records look like alpaca") {
		t.Errorf("mismatch: %v", err)
	}
}

func rmConfig(t *testing.T, model string, extra ...string) Config {
	t.Helper()
	args := append([]string{"--stage", "rm", "--model_name_or_path", model, "--dataset", testenv.Path(t, "preference/dpo_zh_demo.json"),
		"--template", "llama2", "--cutoff_len", "64", "--max_samples", "12", "--finetuning_type", "lora", "--lora_rank", "4",
		"--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--output_dir", filepath.Join(t.TempDir(), "out"),
		"--learning_rate", "1e-3", "--logging_steps", "1", "--val_size", "4"}, extra...)
	c, _, err := Parse("", args)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The reward model's gradients (value head and adapters) against central
// differences of its pairwise loss.
func TestRewardModelGradients(t *testing.T) {
	tr := newTrainer(t, rmConfig(t, tinyModel(t)))
	o := tr.RM
	batch := []int{0, 1}
	// Without and with the value head's dropout (its mask is the same for
	// the same seed, which is what Accumulate draws for micro-batch 0).
	for _, drop := range []float64{0, 0.3} {
		o.HeadDropout = drop
		seed := o.cfg.Seed | 1
		for _, p := range o.Trained() {
			clear(p.Grad)
		}
		o.Accumulate(batch, len(batch), 0)
		loss := func() float64 {
			c, r, _, _ := o.scores(o.Pairs, batch, seed)
			l, _, _, _ := rlhf.RankLoss(c, r)
			return l
		}
		for _, p := range o.Trained() {
			if !strings.HasPrefix(p.Name, "v_head") && !strings.Contains(p.Name, "layers.1.self_attn.q_proj.lora_B") {
				continue
			}
			for _, i := range []int{0, len(p.Data) - 1} {
				num := testenv.NumericGrad(loss, p.Data, []int{i}, 1e-2)[0]
				if math.Abs(num-float64(p.Grad[i])) > 2e-2*math.Max(0.05, math.Abs(num)) {
					t.Errorf("dropout %g: %s[%d]: gradient %g, numeric %g", drop, p.Name, i, p.Grad[i], num)
				}
			}
		}
	}
}

// A LoRA reward model trains, evaluates pair accuracy, saves its value head
// beside the adapter, and resumes bit for bit.
func TestRewardModelRun(t *testing.T) {
	model := tinyModel(t)
	a := newTrainer(t, rmConfig(t, model, "--max_steps", "4", "--save_steps", "2"))
	var log strings.Builder
	a.Log = &log
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "accuracy") {
		t.Errorf("no pair accuracy in the log:\n%s", log.String())
	}
	v, err := hfdir.LoadValueHead(a.Cfg.OutputDir, a.Model.Config.HiddenSize)
	if err != nil || !slices.Equal(v.W, a.RM.Head.W) {
		t.Fatalf("value head: %v", err)
	}
	b := newTrainer(t, rmConfig(t, model, "--max_steps", "4", "--output_dir", a.Cfg.OutputDir))
	if err := b.Resume(filepath.Join(a.Cfg.OutputDir, "checkpoint-2")); err != nil {
		t.Fatal(err)
	}
	b.TrainStep()
	b.TrainStep()
	for i, p := range a.Params {
		if !slices.Equal(p.Data, b.Params[i].Data) {
			t.Fatalf("%s differs after resuming", p.Name)
		}
	}
}

// DPO with LoRA: the reference is the policy with its adapters off, so the
// first step's loss is ln 2 (§6.11c); the gradients of the sigmoid loss
// with an SFT term, and of SimPO (averaged log-probabilities, no
// reference), match central differences.
func TestDPO(t *testing.T) {
	model := tinyModel(t)
	cfg := func(extra ...string) Config {
		c := rmConfig(t, model, append([]string{"--stage", "dpo"}, extra...)...)
		return c
	}
	tr := newTrainer(t, cfg("--max_steps", "3"))
	r := tr.TrainStep()
	if math.Abs(r.Loss-math.Ln2) > 1e-6 || r.Metrics["rewards/accuracies"] != 0 {
		t.Errorf("first step: loss %g, metrics %v", r.Loss, r.Metrics)
	}
	for _, extra := range [][]string{{"--pref_ftx", "0.5"}, {"--pref_loss", "simpo", "--pref_beta", "2"}} {
		tr := newTrainer(t, cfg(extra...))
		o := tr.DPO
		for _, ad := range tr.Model.Adapters("") {
			for i := range ad.LoRA.B {
				ad.LoRA.B[i] = 0.05 * float32(i%5-2)
			}
		}
		batch := []int{0, 1}
		for _, p := range o.Trained() {
			clear(p.Grad)
		}
		o.Accumulate(batch, len(batch), 0)
		loss := func() float64 {
			_, res, _, _, _, _, _ := o.pass(o.Pairs, batch)
			return res.Loss
		}
		checked := 0
		for _, p := range o.Trained() {
			if !strings.Contains(p.Name, "layers.1.self_attn.v_proj") && !strings.Contains(p.Name, "layers.0.mlp.down_proj") {
				continue
			}
			for _, i := range []int{0, len(p.Data) / 2} {
				num := testenv.NumericGrad(loss, p.Data, []int{i}, 1e-2)[0]
				if math.Abs(num-float64(p.Grad[i])) > 3e-2*math.Max(0.02, math.Abs(num)) {
					t.Errorf("%v %s[%d]: gradient %g, numeric %g", extra, p.Name, i, p.Grad[i], num)
				}
				checked++
			}
		}
		if checked == 0 {
			t.Fatal("nothing checked")
		}
	}
}

// Evaluate (what zhllama eval rm runs) scores the validation pairs as the
// training forward does with dropout off, and sums them up as RankLoss.
func TestRewardModelEvaluate(t *testing.T) {
	tr := newTrainer(t, rmConfig(t, tinyModel(t), "--val_size", "3", "--per_device_train_batch_size", "2"))
	o := tr.RM
	got, ok := o.Evaluate()
	if !ok {
		t.Fatal("no validation pairs")
	}
	o.acts.Dropout = false
	c, r, _, _ := o.scores(o.ValPairs, []int{0, 1}, 0)
	c2, r2, _, _ := o.scores(o.ValPairs, []int{2}, 0)
	c, r = append(c, c2...), append(r, r2...)
	loss, _, _, acc := rlhf.RankLoss(c, r)
	if math.Abs(got["loss"]-loss) > 1e-5 || got["accuracy"] != acc {
		t.Errorf("Evaluate %v, training forward: loss %g accuracy %g", got, loss, acc)
	}
}
