package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"zhllama/llama"
	"zhllama/llama/torchref"
	"zhllama/optim"
	"zhllama/tensor"
)

// peakRSS reads the process's peak resident memory from /proc, in MB.
func peakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// stepPhases names the parts of a training step bench train times: the
// trunk's forward pass, the LM head with the loss and its backward pass
// (chunk by chunk), the trunk's backward pass, and clipping with AdamW.
var stepPhases = [...]string{"forward", "lm_head", "backward", "optimizer"}

func benchModelTrain(args []string) error {
	fs := flagSet("bench train")
	preset := fs.String("preset", "stories15M", "model shape")
	batch := fs.Int("batch", 8, "sequences per step")
	seq := fs.Int("seq_len", 256, "tokens per sequence")
	steps := fs.Int("steps", 5, "timed steps (after one warm-up); the median is reported")
	withTorch := fs.Bool("torch", true, "also run PyTorch eager on the same shapes and threads")
	ft := fs.String("finetuning_type", "full", "full, or lora (adapters on every projection, the base frozen)")
	rank := fs.Int("lora_rank", 8, "with lora: the adapters' rank")
	qbits := fs.Int("quantization_bit", 0, "with lora: store the frozen projections as NF4 (4) or int8 (8)")
	if err := parseFlags(fs, args, "[flags]"); err != nil {
		return err
	}
	c, err := llama.Preset(*preset)
	if err != nil {
		return usageError{err.Error()}
	}
	if *ft != "full" && *ft != "lora" {
		return usagef("--finetuning_type %q: use full or lora", *ft)
	}
	pb, ab := c.MemoryEstimate(*batch, *seq)
	fmt.Printf("%s: %.1fM parameters; estimated %.2f GB for weights, gradients and AdamW, %.2f GB activations\n",
		*preset, float64(c.NumParams())/1e6, float64(pb)/1e9, float64(ab)/1e9)
	m := llama.NewModel(c)
	m.Randomize(1)
	rng := rand.New(rand.NewPCG(1, 2))
	var params []optim.Param
	var grads *llama.Model
	if *ft == "lora" {
		if grads, params, err = benchLoRA(m, *rank, *qbits); err != nil {
			return err
		}
	} else {
		grads = llama.NewModel(c)
		for i, p := range m.Named() {
			params = append(params, optim.Param{Name: p.Name, Data: p.Data, Grad: grads.Named()[i].Data})
		}
	}
	opt := optim.NewAdamW(params, []optim.Group{{WeightDecay: 0.01}})
	ids := make([]int32, *batch**seq)
	for i := range ids {
		ids[i] = int32(rng.IntN(c.VocabSize))
	}
	acts := m.NewActs(*batch, *seq)
	times := make([]time.Duration, 0, *steps)
	var phases [len(stepPhases)][]time.Duration
	var loss float64
	var steal stealReport
	sm := readSteal()
	for s := 0; s <= *steps; s++ {
		var at [len(stepPhases) + 1]time.Time
		at[0] = time.Now()
		for _, p := range params {
			clear(p.Grad)
		}
		m.Forward(acts, ids, nil)
		at[1] = time.Now()
		l, _, dHidden := m.LMLoss(acts, ids, 0, grads)
		at[2] = time.Now()
		m.Backward(acts, dHidden, grads)
		at[3] = time.Now()
		optim.ClipGradNorm(params, 1)
		opt.Step(1e-4)
		at[4] = time.Now()
		if s > 0 {
			times = append(times, at[4].Sub(at[0]))
			for i := range phases {
				phases[i] = append(phases[i], at[i+1].Sub(at[i]))
			}
		}
		loss = l
	}
	steal.add("zhllama", sm)
	tokens := float64(*batch * *seq)
	ours := tokens / median(times).Seconds()
	phaseMS := map[string]float64{}
	var parts []string
	for i, name := range stepPhases {
		ms := float64(median(phases[i]).Microseconds()) / 1000
		phaseMS[name] = ms
		parts = append(parts, fmt.Sprintf("%s %.0f ms", name, ms))
	}
	trainable := 0
	for _, p := range params {
		trainable += len(p.Data)
	}
	res := map[string]any{"bench": "train", "finetuning_type": *ft, "preset": *preset, "batch": *batch, "seq_len": *seq, "threads": runtime.GOMAXPROCS(0),
		"kernel": tensor.KernelName, "tokens_per_s": ours, "peak_rss_mb": peakRSS(), "loss": loss, "trainable": trainable, "phases_ms": phaseMS}
	fmt.Printf("zhllama: %.0f tokens/s (median of %d steps), peak RSS %.0f MB, kernel %s\n", ours, *steps, peakRSS(), tensor.KernelName)
	fmt.Printf("zhllama's step, median of each part: %s\n", strings.Join(parts, ", "))
	if *ft == "lora" {
		res["lora_rank"], res["quantization_bit"], res["weights_mb"] = *rank, *qbits, float64(m.Bytes())/1e6
	}
	torchRank := 0 // full fine-tuning
	if *ft == "lora" {
		torchRank = *rank
	}
	switch {
	case *withTorch && *qbits != 0:
		fmt.Println("PyTorch eager: skipped (no NF4/int8 base in the reference; it runs full and LoRA)")
	case *withTorch && torchref.Available():
		sm := readSteal()
		t, err := torchBench(c, "bench", strconv.Itoa(*batch), strconv.Itoa(*seq), strconv.Itoa(*steps), strconv.Itoa(runtime.GOMAXPROCS(0)), strconv.Itoa(torchRank))
		if err != nil {
			return err
		}
		steal.add("torch", sm)
		fmt.Printf("PyTorch eager (%s): %.0f tokens/s, peak RSS %.0f MB -> zhllama %.2fx\n", t.BLAS, t.TokensPerS, t.PeakRSSMB, ours/t.TokensPerS)
		res["torch_tokens_per_s"], res["torch_peak_rss_mb"], res["torch_blas"], res["ratio"] = t.TokensPerS, t.PeakRSSMB, t.BLAS, ours/t.TokensPerS
		res["torch_trainable"] = t.Trainable
	}
	if note := steal.note(res); note != "" {
		fmt.Println(note)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}

// torchResult is what the reference's benchmark modes print.
type torchResult struct {
	TokensPerS float64 `json:"tokens_per_s"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	BLAS       string  `json:"blas"`
	// Trainable counts the values the optimizer updates (bench train).
	Trainable int `json:"trainable"`
}

// torchBench runs one of the PyTorch reference's benchmark modes on a
// model of config c.
func torchBench(c llama.Config, mode string, args ...string) (*torchResult, error) {
	dir, err := os.MkdirTemp("", "zhllama-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cb, _ := json.Marshal(c)
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, cb, 0o644); err != nil {
		return nil, err
	}
	out, err := torchref.RunFair(dir, append([]string{mode, cfgPath}, args...)...)
	if err != nil {
		return nil, err
	}
	var t torchResult
	if err := json.Unmarshal(out, &t); err != nil {
		return nil, fmt.Errorf("PyTorch benchmark output %q: %w", out, err)
	}
	if err := torchref.CheckBLAS(t.BLAS); err != nil {
		return nil, err
	}
	return &t, nil
}

func benchModelGenerate(args []string) error {
	fs := flagSet("bench generate")
	preset := fs.String("preset", "stories15M", "model shape")
	batch := fs.Int("batch", 1, "sequences decoded together")
	maxNew := fs.Int("max_new_tokens", 256, "tokens generated per sequence (greedy, no early stop)")
	dtype := fs.String("dtype", "float32", "weights in memory: float32, or bfloat16 (widened as the kernels read them)")
	withTorch := fs.Bool("torch", true, "also run PyTorch eager (KV cache, float32) on the same shapes and threads")
	vs := fs.String("vs", "torch", "the peer: torch (PyTorch eager, see --torch), or llamacpp (llama.cpp's llama-bench on the same GGUF file)")
	outtype := fs.String("outtype", "", "with --vs llamacpp: the GGUF's weights, f32, f16, bf16, q8_0 or q4_0 (default: --dtype's, f32 or bf16)")
	threads := fs.String("threads", "1,2", "with --vs llamacpp: thread counts, comma-separated")
	promptLen := fs.Int("prompt", 256, "with --vs llamacpp: tokens of the prompt-processing test")
	depth := fs.Int("depth", 33, "with --vs llamacpp: tokens of context fed before the decoding test")
	runs := fs.Int("runs", 3, "with --vs llamacpp: repetitions of each test; the median is reported")
	llamaBench := fs.String("llama_bench", "", "with --vs llamacpp: a llama-bench binary (default: built once in the user cache folder, zhllama/llama-bench)")
	model := fs.String("model", "", "with --vs llamacpp: a GGUF file to measure instead of a random --preset model")
	bandwidth := fs.Bool("bandwidth", false, "with --vs llamacpp: measure memory read bandwidth and decoding's share of it even for weights under 1 GB")
	kvCache := fs.String("kv_cache_dtype", "float16", "with --vs llamacpp: zhllama's KV cache, float16 (as llama-bench's, which has no float32 cache) or float32")
	side := fs.String("side", "", "with --vs llamacpp --model F.gguf: run only zhllama's side, one process and GOMAXPROCS, printing JSON (what --vs llamacpp runs per thread count)")
	if err := parseFlags(fs, args, "[flags]"); err != nil {
		return err
	}
	switch *vs {
	case "torch":
	case "llamacpp":
		return benchGenerateVsLlamaCpp(fs, *preset, *dtype, *outtype, *threads, *model, *llamaBench, *side, *kvCache, *batch, *maxNew, *promptLen, *depth, *runs, *bandwidth)
	default:
		return usagef("--vs %q: use torch or llamacpp", *vs)
	}
	c, err := llama.Preset(*preset)
	if err != nil {
		return usageError{err.Error()}
	}
	if *dtype != "float32" && *dtype != "bfloat16" {
		return usagef("--dtype %q: use float32 or bfloat16", *dtype)
	}
	m := llama.NewModel(c)
	m.Randomize(1)
	if *dtype == "bfloat16" {
		m.CompactBF16()
	}
	fmt.Printf("%s: %.1fM parameters, %.0f MB of weights in memory (%s)\n", *preset, float64(c.NumParams())/1e6, float64(m.Bytes())/1e6, *dtype)
	prompts := make([][]int32, *batch)
	for b := range prompts {
		prompts[b] = []int32{int32(c.BOSTokenID)}
	}
	var steps []time.Duration
	last := time.Now()
	start := last
	_, err = m.GenerateBatch(prompts, llama.Sampling{MaxNewTokens: *maxNew}, func(b, id int) bool {
		if b == *batch-1 {
			now := time.Now()
			steps = append(steps, now.Sub(last))
			last = now
		}
		return true
	})
	if err != nil {
		return err
	}
	total := time.Since(start)
	ours := float64(*batch) / median(steps[1:]).Seconds()
	res := map[string]any{"bench": "generate", "preset": *preset, "batch": *batch, "max_new_tokens": *maxNew, "dtype": *dtype,
		"threads": runtime.GOMAXPROCS(0), "tokens_per_s": ours, "total_s": total.Seconds(), "weights_mb": float64(m.Bytes()) / 1e6, "peak_rss_mb": peakRSS()}
	fmt.Printf("zhllama: %.0f tokens/s (median step), %d tokens in %.2fs\n", ours, *batch**maxNew, total.Seconds())
	if *withTorch && torchref.Available() {
		t, err := torchBench(c, "bench-generate", strconv.Itoa(*batch), strconv.Itoa(*maxNew), strconv.Itoa(runtime.GOMAXPROCS(0)))
		if err != nil {
			return err
		}
		fmt.Printf("PyTorch eager (%s): %.0f tokens/s -> zhllama %.2fx\n", t.BLAS, t.TokensPerS, ours/t.TokensPerS)
		res["torch_tokens_per_s"], res["torch_blas"], res["ratio"] = t.TokensPerS, t.BLAS, ours/t.TokensPerS
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}

// benchLoRA freezes m (quantizing its projections if bits is 4 or 8) and
// puts rank-r adapters on every projection; it returns the gradient holder
// and the trained tensors with their gradients.
func benchLoRA(m *llama.Model, r, bits int) (*llama.Model, []optim.Param, error) {
	if bits != 0 {
		if err := m.Quantize(bits); err != nil {
			return nil, nil, usageError{err.Error()}
		}
	}
	m.AddLoRA(llama.DefaultAdapter, llama.LoRAModules, r, 2, 0, 1)
	grads := m.LoRAGrads()
	var params []optim.Param
	for _, a := range m.Adapters(llama.DefaultAdapter) {
		ref, _ := grads.Tensor(a.Name)
		g := ref.Weight.Adapter(llama.DefaultAdapter)
		params = append(params, optim.Param{Name: a.Name + ".A", Data: a.LoRA.A, Grad: g.A}, optim.Param{Name: a.Name + ".B", Data: a.LoRA.B, Grad: g.B})
	}
	return grads, params, nil
}
