package train

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"zhllama/internal/testenv"
)

// prefPairs are a tiny preference dataset in alpaca's ranking layout:
// answers of different lengths, so that rows are padded.
var prefPairs = []map[string]string{
	{"instruction": "介绍一下长城。", "input": "", "chosen": "长城是中国古代的军事防御工程，绵延上万里。", "rejected": "不知道。"},
	{"instruction": "1 + 1 等于几？", "input": "", "chosen": "等于 2。", "rejected": "等于 3，因为一加一再加一。"},
	{"instruction": "Translate to English:", "input": "你好，世界", "chosen": "Hello, world.", "rejected": "Goodbye."},
	{"instruction": "写一句关于春天的诗。", "input": "", "chosen": "春风又绿江南岸。", "rejected": "冬天很冷。"},
	{"instruction": "What is the capital of France?", "input": "", "chosen": "Paris is the capital of France.", "rejected": "London."},
	{"instruction": "用一个词形容大海。", "input": "", "chosen": "辽阔。", "rejected": "大海是一种由咸水组成的很大的水体，覆盖地球表面的大部分。"},
	{"instruction": "Name a prime number.", "input": "", "chosen": "7", "rejected": "9"},
	{"instruction": "推荐一本书。", "input": "", "chosen": "《红楼梦》，中国古典小说的巅峰之作。", "rejected": "随便。"},
}

// prefConfig is a run of stage over prefPairs, written to a file in a
// temporary directory: two micro-batches of two pairs a step, no dropout.
func prefConfig(t *testing.T, model, stage string, extra ...string) Config {
	t.Helper()
	data := filepath.Join(t.TempDir(), "pairs.json")
	b, err := json.Marshal(prefPairs)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, data, b)
	args := append([]string{"--stage", stage, "--model_name_or_path", model, "--dataset", data,
		"--template", "llama2", "--cutoff_len", "64", "--finetuning_type", "lora", "--lora_rank", "4", "--lora_dropout", "0",
		"--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--output_dir", filepath.Join(t.TempDir(), "out"),
		"--learning_rate", "1e-3", "--logging_steps", "1", "--max_steps", "2"}, extra...)
	c, _, err := Parse("", args)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pairSteps are the micro-batches of pairs of the first steps as the
// objective lays them out (rows 0..n−1 chosen, n..2n−1 rejected, padded
// with pad), for the reference.
func pairSteps(tr *Trainer, src *Pairs, pad int32, steps int) [][]map[string]any {
	var out [][]map[string]any
	for s := 0; s < steps; s++ {
		var micro []map[string]any
		for _, idx := range tr.stepBatches(s) {
			n := len(idx)
			exs := make([]Example, 2*n)
			for i, k := range idx {
				exs[i], exs[n+i] = src.Pair(k)
			}
			micro = append(micro, batchJSON(MakeBatch(exs, pad)))
		}
		out = append(out, micro)
	}
	return out
}

// Whole optimizer steps of the reward model (value head on the final
// norm's output, score at each sequence's last real token, loss
// mean −log σ(c − r)) move the adapters or the weights, and the head, as
// PyTorch moves them; the untied LM head, which the loss does not reach,
// stays as it was.
func TestRewardModelParityWithPyTorch(t *testing.T) {
	testenv.RequireTorch(t)
	model := tinyModel(t)
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"lora-sgd", []string{"--optim", "sgd", "--learning_rate", "0.5", "--weight_decay", "0.01", "--lora_target", "all"}},
		{"lora-adamw", []string{"--lora_target", "q_proj,v_proj,down_proj", "--weight_decay", "0.01", "--max_grad_norm", "0.5", "--lr_scheduler_type", "cosine", "--warmup_steps", "1"}},
		{"full-adamw", []string{"--finetuning_type", "full", "--weight_decay", "0.01"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := prefConfig(t, model, "rm", tc.extra...)
			tr := newTrainer(t, c)
			o := tr.RM
			o.HeadDropout = 0 // TRL's 0.1 draws its own masks: off on both sides
			in, before := torchTrainInput(tr, c)
			in["objective"] = "rm"
			in["v_head"] = map[string]any{"weight": slices.Clone(o.Head.W), "bias": slices.Clone(o.Head.B)}
			in["steps"] = pairSteps(tr, o.Pairs, o.pad, 2)
			lmHead := slices.Clone(tr.Model.LMHead.W)
			var losses []float64
			for s := range 2 {
				r := tr.TrainStep()
				if r.Skipped {
					t.Fatalf("step %d skipped: %+v", s, r)
				}
				losses = append(losses, r.Loss)
			}
			if !slices.Equal(lmHead, tr.Model.LMHead.W) {
				t.Error("the LM head moved: the reward model's loss does not reach it")
			}
			worst := compareTrained(t, tr, model, in, before)
			t.Logf("%s: 2 steps (losses %.6f, %.6f), worst relative update difference %.2g", tc.name, losses[0], losses[1], worst)
		})
	}
}

// Whole DPO steps: the sigmoid loss (with label smoothing and pref_ftx)
// and the averaged IPO and SimPO, the reference being the policy with its
// adapters off (LoRA) or a frozen copy of the starting weights (full). The
// second step is where the policy differs from its reference.
//
// AdamW turns gradient entries near its epsilon into steps whose size
// follows their float32 rounding, and DPO's chosen-minus-rejected
// gradients have many: on some configurations PyTorch's own float32 and
// float64 runs differ by 1e-4 to 1e-3 (updateDiff). The AdamW cases here
// are ones where that noise stays under the tolerance; SGD, whose update
// is the gradient itself, carries the rest.
func TestDPOParityWithPyTorch(t *testing.T) {
	testenv.RequireTorch(t)
	model := tinyModel(t)
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"sigmoid-lora-sgd", []string{"--lora_target", "all", "--optim", "sgd", "--learning_rate", "0.5", "--dpo_label_smoothing", "0.1", "--weight_decay", "0.01"}},
		{"sigmoid-lora-adamw", []string{"--lora_target", "q_proj,v_proj", "--weight_decay", "0.01", "--learning_rate", "5e-3"}},
		{"sigmoid-full-sgd", []string{"--finetuning_type", "full", "--optim", "sgd", "--learning_rate", "0.5", "--dpo_label_smoothing", "0.1", "--pref_ftx", "0.3", "--pref_beta", "0.5"}},
		{"sigmoid-full-adamw", []string{"--finetuning_type", "full", "--weight_decay", "0.01"}},
		{"ipo-lora-sgd", []string{"--pref_loss", "ipo", "--optim", "sgd", "--learning_rate", "0.5", "--lora_target", "q_proj,v_proj,up_proj", "--pref_ftx", "0.2"}},
		{"ipo-full-sgd", []string{"--finetuning_type", "full", "--pref_loss", "ipo", "--pref_beta", "0.5", "--optim", "sgd", "--learning_rate", "0.5"}},
		{"simpo-full-sgd", []string{"--finetuning_type", "full", "--pref_loss", "simpo", "--pref_beta", "2", "--simpo_gamma", "0.3", "--optim", "sgd", "--learning_rate", "0.5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := prefConfig(t, model, "dpo", tc.extra...)
			tr := newTrainer(t, c)
			o := tr.DPO
			in, before := torchTrainInput(tr, c)
			in["objective"] = "dpo"
			in["pref"] = map[string]any{"loss": o.Pref.Loss, "beta": o.Pref.Beta, "label_smoothing": o.Pref.LabelSmoothing,
				"simpo_gamma": o.Pref.SimPOGamma, "ftx": o.Pref.FTX}
			in["steps"] = pairSteps(tr, o.Pairs, o.pad, 2)
			var losses []float64
			for s := range 2 {
				r := tr.TrainStep()
				if r.Skipped {
					t.Fatalf("step %d skipped: %+v", s, r)
				}
				losses = append(losses, r.Loss)
			}
			worst := compareTrained(t, tr, model, in, before)
			t.Logf("%s: 2 steps (losses %.6f, %.6f), worst relative update difference %.2g", tc.name, losses[0], losses[1], worst)
		})
	}
}
