package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/llama/torchref"
	"zhllama/spm"
	"zhllama/train"
)

// rlhfBench is the setup both preference benchmarks share: a random model
// of a preset written with the tokenizer, and synthetic data of the asked
// lengths, trained through the real trainer.
type rlhfBench struct {
	dir   string
	tok   *spm.Processor
	cfg   llama.Config
	chars []string // pieces that are one CJK character each: one token
	rng   *rand.Rand
	steps int
}

// setupRLHFBench writes the base model for the shared flags.
func setupRLHFBench(preset, tokPath string, steps int) (*rlhfBench, error) {
	c, err := llama.Preset(preset)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	if tokPath == "" {
		return nil, usagef("--tokenizer is required: a tokenizer.model (e.g. LLaMA-2's)")
	}
	tok, err := spm.LoadProcessor(tokPath)
	if err != nil {
		return nil, err
	}
	b := &rlhfBench{tok: tok, cfg: c, rng: rand.New(rand.NewPCG(1, 2)), steps: steps}
	for id := range tok.Size() {
		p := []rune(tok.IDToPiece(id))
		if len(p) == 1 && p[0] >= 0x4e00 && p[0] <= 0x9fff {
			b.chars = append(b.chars, string(p))
		}
	}
	if len(b.chars) < 50 {
		return nil, fmt.Errorf("%s has %d single-character Chinese pieces; the benchmark writes its data from them: use LLaMA-2's tokenizer or a Chinese one", tokPath, len(b.chars))
	}
	if b.dir, err = os.MkdirTemp("", "zhllama-bench-"); err != nil {
		return nil, err
	}
	if err := hfdir.Init(c, tok.Model(), filepath.Join(b.dir, "base"), hfdir.InitOptions{Seed: 1, DType: "float32"}); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *rlhfBench) close() { os.RemoveAll(b.dir) }

// text is n random one-token Chinese characters.
func (b *rlhfBench) text(n int) string {
	var s strings.Builder
	for range n {
		s.WriteString(b.chars[b.rng.IntN(len(b.chars))])
	}
	return s.String()
}

// writeJSONL writes records to name in the bench's directory.
func (b *rlhfBench) writeJSONL(name string, recs []map[string]any) (string, error) {
	var s strings.Builder
	for _, r := range recs {
		j, _ := json.Marshal(r)
		s.Write(j)
		s.WriteByte('\n')
	}
	path := filepath.Join(b.dir, name)
	return path, os.WriteFile(path, []byte(s.String()), 0o644)
}

// run builds the real trainer for args and times steps+1 steps
// (the first a warm-up); it returns the median step and the last result.
func (b *rlhfBench) run(args []string) (*train.Trainer, time.Duration, train.StepResult, error) {
	c, _, err := train.Parse("", append([]string{"--model_name_or_path", filepath.Join(b.dir, "base"), "--output_dir", filepath.Join(b.dir, "out"),
		"--template", "llama2", "--finetuning_type", "full", "--learning_rate", "1e-6", "--max_steps", strconv.Itoa(b.steps + 1)}, args...))
	if err != nil {
		return nil, 0, train.StepResult{}, err
	}
	tr, err := train.New(c, io.Discard)
	if err != nil {
		return nil, 0, train.StepResult{}, err
	}
	var times []time.Duration
	var last train.StepResult
	for s := 0; s <= b.steps; s++ {
		start := time.Now()
		last = tr.TrainStep()
		if last.Err != nil {
			return nil, 0, last, last.Err
		}
		if s > 0 {
			times = append(times, time.Since(start))
		}
	}
	return tr, median(times), last, nil
}

// torchRLHF runs a PyTorch benchmark mode with shape and returns its JSON.
func (b *rlhfBench) torchRLHF(mode string, shape map[string]any) (map[string]any, error) {
	shape["threads"], shape["steps"] = runtime.GOMAXPROCS(0), b.steps
	cb, _ := json.Marshal(b.cfg)
	sb, _ := json.Marshal(shape)
	cfgPath, shapePath := filepath.Join(b.dir, "config.json"), filepath.Join(b.dir, "shape.json")
	if err := os.WriteFile(cfgPath, cb, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(shapePath, sb, 0o644); err != nil {
		return nil, err
	}
	out, err := torchref.RunFair(b.dir, mode, cfgPath, shapePath)
	if err != nil {
		return nil, err
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("PyTorch benchmark output %q: %w", out, err)
	}
	blas, _ := res["blas"].(string)
	return res, torchref.CheckBLAS(blas)
}

func benchDPO(args []string) error {
	fs := flagSet("bench dpo")
	preset := fs.String("preset", "stories15M", "model shape")
	tokPath := fs.String("tokenizer", "", "a tokenizer.model (the data is written from its Chinese pieces)")
	batch := fs.Int("batch", 4, "pairs per step")
	seq := fs.Int("seq_len", 256, "tokens per sequence (prompt + answer)")
	prompt := fs.Int("prompt_len", 64, "tokens of prompt")
	steps := fs.Int("steps", 5, "timed steps (after one warm-up); the median is reported")
	withTorch := fs.Bool("torch", true, "also run the same step in PyTorch eager on the same shapes and threads")
	if err := parseFlags(fs, args, "--tokenizer T.model [flags]"); err != nil {
		return err
	}
	if *prompt < 16 || *seq <= *prompt {
		return usagef("--prompt_len %d and --seq_len %d: the prompt needs at least 16 tokens and the answer some", *prompt, *seq)
	}
	b, err := setupRLHFBench(*preset, *tokPath, *steps)
	if err != nil {
		return err
	}
	defer b.close()
	var recs []map[string]any
	for range *batch * (*steps + 1) {
		// The llama2 template adds about 10 tokens around the prompt.
		recs = append(recs, map[string]any{"instruction": b.text(*prompt - 10), "chosen": b.text(*seq - *prompt), "rejected": b.text(*seq - *prompt)})
	}
	data, err := b.writeJSONL("pairs.jsonl", recs)
	if err != nil {
		return err
	}
	tr, step, _, err := b.run([]string{"--stage", "dpo", "--dataset", data, "--cutoff_len", strconv.Itoa(*seq + 8),
		"--per_device_train_batch_size", strconv.Itoa(*batch)})
	if err != nil {
		return err
	}
	// The sequences as the trainer built them, for the reference's shapes.
	tokens, promptTokens := 0, 0
	for i := range tr.DPO.Pairs.Len() {
		c, r := tr.DPO.Pairs.Pair(i)
		tokens += len(c.IDs) + len(r.IDs)
		promptTokens += 2 * (len(c.IDs) - c.Tokens())
	}
	n := 2 * tr.DPO.Pairs.Len()
	meanT, meanP := tokens/n, promptTokens/n
	ours := float64(2**batch*meanT) / step.Seconds()
	res := map[string]any{"bench": "dpo", "preset": *preset, "batch": *batch, "seq_len": meanT, "prompt_len": meanP,
		"threads": runtime.GOMAXPROCS(0), "step_s": step.Seconds(), "tokens_per_s": ours, "peak_rss_mb": peakRSS()}
	fmt.Printf("zhllama dpo (full, sigmoid, reference a frozen copy): %d pairs of %d tokens, %.3f s a step (median of %d), %.0f tokens/s, peak RSS %.0f MB\n",
		*batch, meanT, step.Seconds(), *steps, ours, peakRSS())
	if *withTorch && torchref.Available() {
		t, err := b.torchRLHF("bench-dpo", map[string]any{"batch": *batch, "seq_len": meanT, "prompt_len": meanP})
		if err != nil {
			return err
		}
		ts := t["step_s"].(float64)
		fmt.Printf("PyTorch eager (%s): %.3f s a step, peak RSS %.0f MB -> zhllama %.2fx\n", t["blas"], ts, t["peak_rss_mb"], ts/step.Seconds())
		res["torch_step_s"], res["torch_peak_rss_mb"], res["torch_blas"], res["ratio"] = ts, t["peak_rss_mb"], t["blas"], ts/step.Seconds()
	}
	j, _ := json.Marshal(res)
	fmt.Println(string(j))
	return nil
}

func benchPPO(args []string) error {
	fs := flagSet("bench ppo")
	preset := fs.String("preset", "stories15M", "model shape")
	tokPath := fs.String("tokenizer", "", "a tokenizer.model (the prompts are written from its Chinese pieces)")
	batch := fs.Int("batch", 8, "rollouts per step")
	mini := fs.Int("mini_batch", 4, "rollouts per update (per_device_train_batch_size)")
	prompt := fs.Int("prompt_len", 64, "tokens of prompt")
	newTokens := fs.Int("max_new_tokens", 64, "tokens generated per rollout (sampled, temperature 1)")
	epochs := fs.Int("ppo_epochs", 1, "passes over the rollouts")
	steps := fs.Int("steps", 3, "timed steps (after one warm-up); the median is reported")
	withTorch := fs.Bool("torch", true, "also run the same step in PyTorch eager on the same shapes and threads")
	if err := parseFlags(fs, args, "--tokenizer T.model [flags]"); err != nil {
		return err
	}
	if *prompt < 16 || *batch%*mini != 0 || *newTokens < 1 {
		return usagef("--prompt_len %d (16 or more), --batch %d (a multiple of --mini_batch %d), --max_new_tokens %d (1 or more)", *prompt, *batch, *mini, *newTokens)
	}
	b, err := setupRLHFBench(*preset, *tokPath, *steps)
	if err != nil {
		return err
	}
	defer b.close()
	// A separate reward model of the same shape (reward_model_type full).
	rm := filepath.Join(b.dir, "rm")
	if err := hfdir.Init(b.cfg, b.tok.Model(), rm, hfdir.InitOptions{Seed: 2, DType: "float32"}); err != nil {
		return err
	}
	head := llama.NewValueHead(b.cfg.HiddenSize)
	head.Init(rand.New(rand.NewPCG(3, 4)))
	if err := hfdir.SaveValueHead(rm, head); err != nil {
		return err
	}
	var recs []map[string]any
	for range *batch * (*steps + 1) {
		recs = append(recs, map[string]any{"instruction": b.text(*prompt - 10), "output": b.text(8)})
	}
	data, err := b.writeJSONL("prompts.jsonl", recs)
	if err != nil {
		return err
	}
	_, step, last, err := b.run([]string{"--stage", "ppo", "--dataset", data, "--cutoff_len", strconv.Itoa(*prompt + 16),
		"--reward_model", rm, "--reward_model_type", "full", "--per_device_train_batch_size", strconv.Itoa(*mini),
		"--ppo_buffer_size", strconv.Itoa(*batch / *mini), "--ppo_epochs", strconv.Itoa(*epochs),
		"--max_new_tokens", strconv.Itoa(*newTokens), "--top_k", "0", "--top_p", "1", "--temperature", "1"})
	if err != nil {
		return err
	}
	m := last.Metrics
	p, n := int(m["tokens/queries_len_mean"]+0.5), int(m["tokens/responses_len_mean"]+0.5)
	res := map[string]any{"bench": "ppo", "preset": *preset, "batch": *batch, "mini_batch": *mini, "prompt_len": p, "new_tokens": n,
		"ppo_epochs": *epochs, "threads": runtime.GOMAXPROCS(0), "step_s": step.Seconds(), "peak_rss_mb": peakRSS(),
		"generate_s": m["time/generate"], "score_s": m["time/score"], "train_s": m["time/train"]}
	fmt.Printf("zhllama ppo (full, separate reward model, reference a frozen copy): %d rollouts of %d+%d tokens, %d epoch(s) in mini-batches of %d\n",
		*batch, p, n, *epochs, *mini)
	fmt.Printf("zhllama: %.2f s a step (median of %d; last step: generate %.2f s, score %.2f s, train %.2f s), peak RSS %.0f MB\n",
		step.Seconds(), *steps, m["time/generate"], m["time/score"], m["time/train"], peakRSS())
	if *withTorch && torchref.Available() {
		t, err := b.torchRLHF("bench-ppo", map[string]any{"batch": *batch, "prompt_len": p, "new_tokens": n, "mini_batch": *mini, "ppo_epochs": *epochs})
		if err != nil {
			return err
		}
		ts := t["step_s"].(float64)
		fmt.Printf("PyTorch eager (%s): %.2f s a step (generate %.2f s, score %.2f s, train %.2f s), peak RSS %.0f MB -> zhllama %.2fx\n",
			t["blas"], ts, t["generate_s"], t["score_s"], t["train_s"], t["peak_rss_mb"], ts/step.Seconds())
		res["torch_step_s"], res["torch_split"], res["torch_blas"], res["ratio"] = ts, map[string]any{"generate_s": t["generate_s"], "score_s": t["score_s"], "train_s": t["train_s"]}, t["blas"], ts/step.Seconds()
	}
	j, _ := json.Marshal(res)
	fmt.Println(string(j))
	return nil
}
