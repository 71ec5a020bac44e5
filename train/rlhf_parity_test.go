package train

import (
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/llama"
	"zhllama/optim"
	"zhllama/safetensors"
	"zhllama/tensor"
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

// feedback is a tiny KTO dataset in the sharegpt layout: a conversation
// (one turn or two) and a boolean label, answers of different lengths.
var feedback = []map[string]any{
	{"messages": []map[string]string{{"role": "user", "content": "介绍一下长城。"}, {"role": "assistant", "content": "长城是中国古代的军事防御工程，绵延上万里。"}}, "label": true},
	{"messages": []map[string]string{{"role": "user", "content": "1 + 1 等于几？"}, {"role": "assistant", "content": "等于 3，因为一加一再加一。"}}, "label": false},
	{"messages": []map[string]string{{"role": "user", "content": "Translate to English: 你好，世界"}, {"role": "assistant", "content": "Hello, world."}}, "label": true},
	{"messages": []map[string]string{{"role": "user", "content": "写一句关于春天的诗。"}, {"role": "assistant", "content": "冬天很冷。"}}, "label": false},
	{"messages": []map[string]string{{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."},
		{"role": "user", "content": "And of Italy?"}, {"role": "assistant", "content": "Rome is the capital of Italy."}}, "label": true},
	{"messages": []map[string]string{{"role": "user", "content": "用一个词形容大海。"}, {"role": "assistant", "content": "大海是一种由咸水组成的很大的水体。"}}, "label": false},
	{"messages": []map[string]string{{"role": "user", "content": "Name a prime number."}, {"role": "assistant", "content": "7"}}, "label": true},
	{"messages": []map[string]string{{"role": "user", "content": "推荐一本书。"}, {"role": "assistant", "content": "《红楼梦》，中国古典小说的巅峰之作。"}}, "label": true},
}

// prefConfig is a run of stage over prefPairs, written to a file in a
// temporary directory: two micro-batches of two pairs a step, no dropout.
func prefConfig(t *testing.T, model, stage string, extra ...string) Config {
	t.Helper()
	return dataConfig(t, model, stage, prefPairs, extra...)
}

// dataConfig is a run of stage over records, written to a file in a
// temporary directory: two micro-batches of two examples a step, no
// dropout.
func dataConfig(t *testing.T, model, stage string, records any, extra ...string) Config {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data.json")
	b, err := json.Marshal(records)
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

// feedbackSteps are the micro-batches of the first steps as KTO lays them
// out (the answer rows, their KL rows and the labels, padded with pad),
// for the reference, and whether one of them holds both labels.
func feedbackSteps(tr *Trainer, f *Feedback, pad int32, steps int) (out [][]map[string]any, mixed bool) {
	for s := 0; s < steps; s++ {
		var micro []map[string]any
		for _, idx := range tr.stepBatches(s) {
			targets, kls := make([]Example, len(idx)), make([]Example, len(idx))
			for i, k := range idx {
				targets[i], kls[i] = f.target.Example(f.base(k)), f.kl.Example(f.base(k))
			}
			labels := f.labels(idx)
			mixed = mixed || slices.Contains(labels, true) && slices.Contains(labels, false)
			b := batchJSON(MakeBatch(targets, pad))
			b["kl"], b["desirable"] = batchJSON(MakeBatch(kls, pad)), labels
			micro = append(micro, b)
		}
		out = append(out, micro)
	}
	return out, mixed
}

// checkKLRows fails t unless each example's KL row is its own prompt with
// the previous example's answer (the first with the last's), as
// LLaMA-Factory builds it: the reference takes the rows as given.
func checkKLRows(t *testing.T, f *Feedback) {
	t.Helper()
	split := func(e Example) (prompt, answer []int32) {
		n := 0
		for n < len(e.Labels) && e.Labels[n] == tensor.IgnoreIndex {
			n++
		}
		return e.IDs[:n], e.IDs[n:]
	}
	n := f.target.Len()
	for j := range n {
		p, _ := split(f.target.Example(j))
		_, prev := split(f.target.Example((j + n - 1) % n))
		kp, ka := split(f.kl.Example(j))
		if !slices.Equal(p, kp) || !slices.Equal(prev, ka) {
			t.Fatalf("example %d: KL row %v + %v, want its prompt %v + the previous answer %v", j, kp, ka, p, prev)
		}
	}
}

// Whole KTO steps: the desirable and undesirable answers against the
// reference (the policy with its adapters off, or a frozen copy of the
// starting weights), the reference point from the KL rows (each prompt
// with the previous example's answer), the weights of either label and
// the pref_ftx term, move the trained tensors as PyTorch moves them. On
// the second step the policy differs from its reference.
//
// As for DPO, AdamW's step for a gradient entry near its epsilon (1e-8)
// follows that entry's float32 rounding: with pref_ftx 0.3 and the
// adapters of q_proj, v_proj and down_proj under AdamW, one
// layers.0.mlp.down_proj.lora_B entry's first gradient is −2.1e−9 here and
// −1.6e−9 in PyTorch (whose own float32 and float64 runs differ by 1e-4 on
// that tensor), and the second step's lora_A updates then differ by 8%.
// SGD carries pref_ftx.
func TestKTOParityWithPyTorch(t *testing.T) {
	testenv.RequireTorch(t)
	model := tinyModel(t)
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"lora-sgd-weights-ftx", []string{"--lora_target", "all", "--optim", "sgd", "--learning_rate", "0.5", "--weight_decay", "0.01",
			"--kto_chosen_weight", "1.5", "--kto_rejected_weight", "0.7", "--pref_ftx", "0.3", "--pref_beta", "0.5"}},
		{"lora-adamw-weights", []string{"--lora_target", "q_proj,v_proj,down_proj", "--weight_decay", "0.01", "--learning_rate", "5e-3",
			"--kto_chosen_weight", "1.5", "--kto_rejected_weight", "0.7", "--pref_beta", "0.5"}},
		{"full-sgd-ftx", []string{"--finetuning_type", "full", "--optim", "sgd", "--learning_rate", "0.5", "--pref_ftx", "0.2", "--pref_beta", "0.5",
			"--max_grad_norm", "0.5"}},
		{"full-adamw-weights", []string{"--finetuning_type", "full", "--weight_decay", "0.01", "--kto_chosen_weight", "0.8", "--kto_rejected_weight", "1.3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dataConfig(t, model, "kto", feedback, tc.extra...)
			tr := newTrainer(t, c)
			o := tr.KTO
			in, before := torchTrainInput(tr, c)
			in["objective"] = "kto"
			in["kto"] = map[string]any{"beta": c.PrefBeta, "chosen_weight": c.KTOChosenWeight, "rejected_weight": c.KTORejectedWeight,
				"ftx": c.PrefFTX}
			checkKLRows(t, o.Data)
			steps, mixed := feedbackSteps(tr, o.Data, o.pad, 2)
			if !mixed {
				t.Fatal("no micro-batch holds both labels: change the data or the seed")
			}
			in["steps"] = steps
			var losses []float64
			var r StepResult
			for s := range 2 {
				if r = tr.TrainStep(); r.Skipped {
					t.Fatalf("step %d skipped: %+v", s, r)
				}
				losses = append(losses, r.Loss)
			}
			worst := compareTrained(t, tr, model, in, before)
			t.Logf("%s: 2 steps (losses %.6f, %.6f; second step's kl %.3g, gradient norm %.3g), worst relative update difference %.2g",
				tc.name, losses[0], losses[1], r.Metrics["kl"], r.GradNorm, worst)
		})
	}
}

// ppoParityConfig is a PPO run on a few alpaca prompts with short sampled
// responses and no dropout; the reward service is never called (the
// tests score the rollouts themselves).
func ppoParityConfig(t *testing.T, model string, extra ...string) Config {
	t.Helper()
	args := append([]string{"--stage", "ppo", "--model_name_or_path", model, "--reward_model", "http://127.0.0.1:9", "--reward_model_type", "api",
		"--dataset", testenv.Path(t, "sft/alpaca_zh_demo.json"), "--template", "llama2", "--cutoff_len", "40", "--max_samples", "16",
		"--finetuning_type", "lora", "--lora_rank", "4", "--lora_dropout", "0", "--per_device_train_batch_size", "2",
		"--gradient_accumulation_steps", "1", "--ppo_buffer_size", "2", "--ppo_epochs", "1", "--max_new_tokens", "6",
		"--top_k", "0", "--top_p", "1", "--temperature", "1", "--output_dir", filepath.Join(t.TempDir(), "out"),
		"--learning_rate", "1e-3", "--logging_steps", "1", "--max_steps", "2"}, extra...)
	c, _, err := Parse("", args)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// compareExperience fails t where a rollout's old log-probabilities,
// values, reference log-probabilities, advantages or returns differ from
// the reference's ("exp." + name, TRL's padded [B, L−1] layout) by more
// than 1e-5 (relative above 1); it returns the worst difference.
func compareExperience(t *testing.T, rolls []*rollout, ref *safetensors.File) float64 {
	t.Helper()
	worst := 0.0
	for _, f := range []struct {
		name string
		get  func(*rollout) []float64
	}{
		{"logprobs", func(ro *rollout) []float64 { return ro.logp }},
		{"values", func(ro *rollout) []float64 { return ro.values }},
		{"ref_logprobs", func(ro *rollout) []float64 { return ro.ref }},
		{"advantages", func(ro *rollout) []float64 { return ro.adv }},
		{"returns", func(ro *rollout) []float64 { return ro.ret }},
	} {
		rt, ok := ref.Tensor("exp." + f.name)
		if !ok {
			t.Fatalf("reference lacks exp.%s", f.name)
		}
		want, _ := rt.Float32(nil)
		T := len(want) / len(rolls)
		for i, ro := range rolls {
			got := f.get(ro)
			if len(got) != len(ro.seq)-ro.qlen {
				t.Fatalf("rollout %d: %d %s for %d response tokens", i, len(got), f.name, len(ro.seq)-ro.qlen)
			}
			for k, g := range got {
				w := float64(want[i*T+ro.qlen-1+k])
				d := math.Abs(g-w) / math.Max(1, math.Abs(w))
				worst = math.Max(worst, d)
				if d > 1e-5 {
					t.Errorf("rollout %d, response token %d: %s %g, PyTorch %g", i, k, f.name, g, w)
				}
			}
		}
	}
	return worst
}

// moveAway starts the policy away from its reference, as after earlier
// steps (on the first, the penalties are all 0): the adapters' B (LoRA), or
// the norms' weights (full; the final norm's scaled up, for sharper
// next-token distributions), which it returns for the reference.
func moveAway(tr *Trainer) map[string][]float32 {
	for _, ad := range tr.Model.Adapters(llama.DefaultAdapter) {
		for i := range ad.LoRA.B {
			ad.LoRA.B[i] = 0.03 * float32(i%5-2)
		}
	}
	start := map[string][]float32{}
	if tr.Cfg.FinetuningType == "full" {
		for _, p := range tr.Params {
			if strings.HasSuffix(p.Name, "norm.weight") {
				scale := float32(1)
				if p.Name == "model.norm.weight" {
					scale = 3
				}
				for i := range p.Data {
					p.Data[i] *= scale * (1 + 0.1*float32(i%7-3))
				}
				start[p.Name] = slices.Clone(p.Data)
			}
		}
	}
	return start
}

// One whole PPO step on fixed rollouts (the policy's own samples, some cut
// short as an EOS would, scored by fixed numbers), dropout off: the old
// log-probabilities and values, the reference's log-probabilities (the
// adapters off, or a frozen copy of the starting weights), the KL-penalised
// rewards, GAE (with reward whitening on TRL's padded layout) and the
// whitened advantages match PyTorch's, and ppo_epochs passes of clipped
// updates in the same mini-batch order, with accumulation and clipping,
// move the policy and the critic's head as PyTorch moves them.
func TestPPOParityWithPyTorch(t *testing.T) {
	testenv.RequireTorch(t)
	model := tinyModel(t)
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"lora-sgd", []string{"--lora_target", "all", "--optim", "sgd", "--learning_rate", "0.5", "--weight_decay", "0.01", "--ppo_epochs", "2"}},
		{"full-adamw-ga", []string{"--finetuning_type", "full", "--weight_decay", "0.01", "--ppo_epochs", "2", "--gradient_accumulation_steps", "2",
			"--max_grad_norm", "0.5", "--kl_penalty", "mse", "--init_kl_coef", "0.3"}},
		{"lora-adamw-whiten-abs", []string{"--lora_target", "q_proj,v_proj,down_proj", "--learning_rate", "5e-3", "--ppo_epochs", "2",
			"--ppo_whiten_rewards", "--kl_penalty", "abs", "--init_kl_coef", "0.5", "--gamma", "0.9", "--lam", "0.8", "--cliprange", "0.1",
			"--cliprange_value", "0.05", "--vf_coef", "0.5"}},
		{"full-sgd-fullkl", []string{"--finetuning_type", "full", "--optim", "sgd", "--learning_rate", "0.1", "--kl_penalty", "full",
			"--ppo_whiten_rewards", "--gradient_accumulation_steps", "2", "--ppo_buffer_size", "1", "--max_grad_norm", "0", "--ppo_epochs", "3",
			"--ratio_threshold", "1.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ppoParityConfig(t, model, tc.extra...)
			tr := newTrainer(t, c)
			o := tr.PPO
			o.drop.p = 0 // TRL's value head dropout draws its own masks: off on both sides
			start := moveAway(tr)
			in, before := torchTrainInput(tr, c)
			in["start"] = start
			seed := o.stepSeed(0)
			rolls, err := o.generate(o.prompts(0), seed)
			if err != nil {
				t.Fatal(err)
			}
			// Responses of different lengths (down to one token), as stopping at
			// an EOS leaves them.
			seqs, qlens, scores := make([][]int32, len(rolls)), make([]int, len(rolls)), make([]float64, len(rolls))
			for i, ro := range rolls {
				ro.seq = ro.seq[:ro.qlen+max(1, len(ro.seq)-ro.qlen-3*(i%3))]
				seqs[i], qlens[i], scores[i] = ro.seq, ro.qlen, 1.5*math.Sin(float64(3*i+1))
			}
			m, err := o.experience(rolls, scores)
			if err != nil {
				t.Fatal(err)
			}
			r := StepResult{LR: optim.LR(c.LRSchedulerType, c.LearningRate, 0, tr.Warmup, tr.Total)}
			stats, err := o.optimize(tr.Loop, rolls, seed, &r)
			if err != nil {
				t.Fatal(err)
			}
			if r.Skipped {
				t.Fatalf("an update skipped: %+v", r)
			}
			var orders [][]int
			for e := range c.PPOEpochs {
				orders = append(orders, epochOrder(seed, e, len(rolls)))
			}
			in["objective"], in["lr"] = "ppo", r.LR
			in["v_head"] = map[string]any{"weight": before[llama.ValueHeadWeight], "bias": before[llama.ValueHeadBias]}
			in["ppo"] = map[string]any{"sequences": seqs, "query_lens": qlens, "scores": scores, "pad": o.pad,
				"mini_batch_size": c.BatchSize, "gradient_accumulation_steps": c.GradAccum, "orders": orders,
				"kl_coef": c.InitKLCoef, "kl_penalty": c.KLPenalty, "gamma": c.Gamma, "lam": c.Lam, "whiten_rewards": c.PPOWhitenRewards,
				"cliprange": c.ClipRange, "cliprange_value": c.ClipRangeValue, "vf_coef": c.VFCoef, "ratio_threshold": c.RatioThreshold}
			ref := torchTrain(t, model, in)
			exp := compareExperience(t, rolls, ref)
			worst := compareParams(t, tr, ref, before)
			t.Logf("%s: %d rollouts (objective/kl %.3g), %d updates (loss %.4g, clipfrac %.3g, value clipfrac %.3g, %g mini-batches skipped, last gradient norm %.3g); worst experience difference %.2g, worst relative update difference %.2g",
				tc.name, len(rolls), m["objective/kl"], c.PPOEpochs*len(rolls)/(c.BatchSize*c.GradAccum), stats["ppo/loss/total"], stats["ppo/policy/clipfrac"],
				stats["ppo/val/clipfrac"], stats["ppo/skipped_batches"], r.GradNorm, exp, worst)
		})
	}
}
