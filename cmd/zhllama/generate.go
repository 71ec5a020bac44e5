package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"zhllama/eval"
	"zhllama/gguf"
	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/spm"
)

// modelFlags are the flags that choose a model to run: the directory, how
// its weights are held, and an adapter to merge in.
type modelFlags struct{ dir, dtype, adapter *string }

func addModelFlags(fs *flag.FlagSet) modelFlags {
	return modelFlags{
		fs.String("model", "", "model directory, or a .gguf file"),
		fs.String("dtype", "auto", "weights in memory: auto (bfloat16 if the checkpoint is), float32 or bfloat16"),
		fs.String("adapter", "", "a PEFT LoRA adapter directory to merge in"),
	}
}

// load loads a model directory and its tokenizer. dtype says how the
// weights are held: float32; bfloat16 (rounded if the checkpoint is wider);
// or auto, bfloat16 when the checkpoint is, float32 otherwise. A LoRA
// adapter directory, if given, is merged in (in float32), and its
// tokenizer used.
func (f modelFlags) load() (*llama.Model, *spm.Processor, error) {
	dir, dtype, adapter := *f.dir, *f.dtype, *f.adapter
	if dir == "" {
		return nil, nil, usagef("--model is required")
	}
	if dtype != "auto" && dtype != "float32" && dtype != "bfloat16" {
		return nil, nil, usagef("--dtype %q: use auto, float32 or bfloat16", dtype)
	}
	if isGGUF(dir) {
		return loadGGUF(dir, dtype, adapter)
	}
	m, err := hfdir.LoadWith(dir, llama.LoadOptions{KeepBF16: dtype != "float32" && adapter == ""})
	if err != nil {
		return nil, nil, err
	}
	tokDir := dir
	if adapter != "" {
		if _, _, err := hfdir.LoadAdapter(m, adapter, llama.DefaultAdapter); err != nil {
			return nil, nil, err
		}
		if err := m.MergeLoRA(); err != nil {
			return nil, nil, err
		}
		tokDir = hfdir.TokenizerDir(adapter, dir)
	}
	if dtype == "bfloat16" {
		m.CompactBF16()
	}
	tokPath := filepath.Join(tokDir, "tokenizer.model")
	p, err := loadProcessor(tokPath)
	if err != nil {
		return nil, nil, err
	}
	note, err := hfdir.CheckTokenizer(tokPath, p.Size(), m.Config.VocabSize)
	if err != nil {
		return nil, nil, err
	}
	if note != "" {
		fmt.Fprintln(os.Stderr, "note:", note)
	}
	return m, p, nil
}

// loadGGUF loads a GGUF model file with its own vocabulary. With dtype
// auto its F16, BF16, Q8_0 and Q4_0 matrices stay in their type, read from
// the mapped file; float32 widens them, bfloat16 rounds them to bfloat16.
// An adapter is merged in float32.
func loadGGUF(path, dtype, adapter string) (*llama.Model, *spm.Processor, error) {
	m, p, err := gguf.LoadModel(path, dtype == "auto" && adapter == "")
	if err != nil {
		return nil, nil, err
	}
	if adapter != "" {
		if _, _, err := hfdir.LoadAdapter(m, adapter, llama.DefaultAdapter); err != nil {
			return nil, nil, err
		}
		if err := m.MergeLoRA(); err != nil {
			return nil, nil, err
		}
		if tp := filepath.Join(adapter, "tokenizer.model"); fileThere(tp) {
			if p, err = loadProcessor(tp); err != nil {
				return nil, nil, err
			}
		}
	}
	if dtype == "bfloat16" {
		m.CompactBF16()
	}
	return m, p, nil
}

// isGGUF says whether --model names a GGUF file rather than a directory.
func isGGUF(path string) bool { return strings.HasSuffix(strings.ToLower(path), ".gguf") }

func fileThere(p string) bool { _, err := os.Stat(p); return err == nil }

// samplingFlags are the flags that say how to sample, with a command's
// defaults.
type samplingFlags struct {
	maxNew, topK    *int
	temp, topP, rep *float64
	seed            *uint64
	kvCache         *string
}

func addSamplingFlags(fs *flag.FlagSet, def llama.Sampling) samplingFlags {
	return samplingFlags{
		maxNew:  fs.Int("max_new_tokens", def.MaxNewTokens, "tokens to generate at most"),
		temp:    fs.Float64("temperature", def.Temperature, "0: greedy"),
		topP:    fs.Float64("top_p", def.TopP, "nucleus sampling mass"),
		topK:    fs.Int("top_k", def.TopK, "sample among the K most likely (0: all)"),
		rep:     fs.Float64("repetition_penalty", 1, "divide the logits of seen tokens (1: off)"),
		seed:    fs.Uint64("seed", 0, "sampling seed"),
		kvCache: kvCacheFlag(fs),
	}
}

// kvCacheFlag is --kv_cache_dtype, what the KV cache keeps keys and
// values as.
func kvCacheFlag(fs *flag.FlagSet) *string {
	return fs.String("kv_cache_dtype", "float32", "the KV cache's keys and values: float32, or float16 (half the memory; llama.cpp's default)")
}

// halfCache reads --kv_cache_dtype.
func halfCache(v string) (bool, error) {
	switch v {
	case "float32":
		return false, nil
	case "float16":
		return true, nil
	}
	return false, usagef("--kv_cache_dtype %q: use float32 or float16", v)
}

// load checks the sampling flags, then loads the model, and returns the
// settings with the tokenizer's EOS to stop at.
func (f samplingFlags) load(mf modelFlags) (*llama.Model, *spm.Processor, llama.Sampling, error) {
	s := llama.Sampling{MaxNewTokens: *f.maxNew, Temperature: *f.temp, TopP: *f.topP, TopK: *f.topK, RepetitionPenalty: *f.rep, Seed: *f.seed}
	if err := checkSampling(s); err != nil {
		return nil, nil, s, err
	}
	var err error
	if s.HalfCache, err = halfCache(*f.kvCache); err != nil {
		return nil, nil, s, err
	}
	m, p, err := mf.load()
	if err != nil {
		return nil, nil, s, err
	}
	if eos := p.SpecialID("eos"); eos >= 0 {
		s.StopIDs = []int{eos}
	}
	return m, p, s, nil
}

func generateCommand() *command {
	return &command{name: "generate", summary: "continue a prompt with a model (KV cache; greedy or sampled)",
		usage: "--model D (--prompt TEXT | --input FILE [--batch N]) [--max_new_tokens N --temperature T --top_p P --top_k K --repetition_penalty R --seed S --stop S --dtype auto|float32|bfloat16 --kv_cache_dtype float32|float16]", run: generate}
}

func generate(args []string) error {
	fs := flagSet("generate")
	mf := addModelFlags(fs)
	prompt := fs.String("prompt", "", "text to continue")
	sf := addSamplingFlags(fs, llama.Sampling{MaxNewTokens: 128, TopP: 1})
	input := fs.String("input", "", "file of prompts, one a line, decoded together; writes JSON lines {\"prompt\", \"output\"}")
	batch := fs.Int("batch", 8, "with --input: prompts decoded together")
	var stops listFlag
	fs.Var(&stops, "stop", "stop when the output ends with this text (repeatable)")
	if err := parseFlags(fs, args, "--model D --prompt TEXT [flags]"); err != nil {
		return err
	}
	if *batch < 1 {
		return usagef("--batch must be at least 1")
	}
	m, p, s, err := sf.load(mf)
	if err != nil {
		return err
	}
	if *input != "" {
		return generateFile(m, p, *input, *batch, s, stops)
	}
	ids, err := promptIDs(m, p, *prompt, s.MaxNewTokens)
	if err != nil {
		return err
	}
	var out []int
	var text strings.Builder
	d := p.NewDetokenizer()
	start := time.Now()
	var first time.Duration
	_, err = m.Generate(ids, s, func(id int) bool {
		if len(out) == 0 {
			first = time.Since(start)
		}
		out = append(out, id)
		// Characters print whole: the detokenizer holds a partial one back.
		piece := d.Add(id)
		fmt.Print(piece)
		text.WriteString(piece)
		return !endsWithStop(text.String(), stops)
	})
	fmt.Println(d.Flush())
	if err != nil {
		return err
	}
	if n := len(out); n > 1 {
		rest := time.Since(start) - first
		fmt.Fprintf(os.Stderr, "%d prompt tokens in %.2fs, %d new tokens at %.2f tokens/s, weights %.0f MB\n",
			len(ids), first.Seconds(), n, float64(n-1)/rest.Seconds(), float64(m.Bytes())/1e6)
	}
	return nil
}

func endsWithStop(text string, stops []string) bool {
	for _, st := range stops {
		if st != "" && strings.HasSuffix(text, st) {
			return true
		}
	}
	return false
}

// checkSampling refuses sampling settings out of range, as transformers
// does (0 for top_p or repetition_penalty included, which the library
// reads as unset).
func checkSampling(s llama.Sampling) error {
	if s.TopP == 0 {
		return usagef("--top_p 0: use a number in (0, 1], 1 for off")
	}
	if s.RepetitionPenalty == 0 {
		return usagef("--repetition_penalty 0: use a positive number, 1 for off")
	}
	if err := s.Validate(); err != nil {
		return usagef("--%v", err)
	}
	return nil
}

// promptIDs is [BOS] + the prompt's ids. A prompt past the model's context
// is an error; an output that would pass it stops there, with a note.
func promptIDs(m *llama.Model, p *spm.Processor, prompt string, maxNew int) ([]int32, error) {
	ids := p.ModelInput(prompt)
	ctx := m.Config.MaxPositionEmbeddings
	if len(ids) >= ctx {
		return nil, fmt.Errorf("the prompt has %d tokens, and the model's context (max_position_embeddings) is %d: shorten it", len(ids), ctx)
	}
	if room := m.Room(len(ids)); maxNew > room {
		fmt.Fprintf(os.Stderr, "note: at most %d new tokens: %d prompt tokens and the output fill the context of %d (max_new_tokens %d)\n", room, len(ids), ctx, maxNew)
	}
	return ids, nil
}

// generateFile continues every non-empty line of path, batch lines decoded
// together, and prints a JSON line for each, in order.
func generateFile(m *llama.Model, p *spm.Processor, path string, batch int, s llama.Sampling, stops []string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var prompts []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimRight(l, "\r"); strings.TrimSpace(l) != "" {
			prompts = append(prompts, l)
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	for lo := 0; lo < len(prompts); lo += batch {
		group := prompts[lo:min(lo+batch, len(prompts))]
		ids := make([][]int32, len(group))
		for i, pr := range group {
			if ids[i], err = promptIDs(m, p, pr, s.MaxNewTokens); err != nil {
				return fmt.Errorf("%s: prompt %d: %w", path, lo+i+1, err)
			}
		}
		outs := make([][]int, len(group))
		_, err := m.GenerateBatch(ids, s, func(i, id int) bool {
			outs[i] = append(outs[i], id)
			if len(stops) == 0 {
				return true
			}
			text, _ := p.Decode(outs[i])
			return !endsWithStop(text, stops)
		})
		if err != nil {
			return err
		}
		for i, pr := range group {
			text, _ := p.Decode(outs[i])
			if err := enc.Encode(map[string]string{"prompt": pr, "output": text}); err != nil {
				return err
			}
		}
	}
	return nil
}

func evalCommand() *command {
	return &command{name: "eval", summary: "evaluate models",
		sub: []*command{
			{name: "ppl", summary: "perplexity of a model on a text file, a document a line", usage: "--model D --input FILE [--cutoff_len N] [--batch N]", run: evalPPL},
			{name: "mc", summary: "multiple-choice benchmarks (C-Eval, CMMLU, MMLU) as LLaMA-Factory's evaluator scores them", usage: evalMCUsage, run: evalMC},
			{name: "sft", summary: "answer a dataset's prompts and score the answers with BLEU-4 and ROUGE, as LLaMA-Factory's predict_with_generate", usage: evalSFTUsage, run: evalSFT},
			{name: "rm", summary: "a reward model's accuracy and margin on preference pairs", usage: evalRMUsage, run: evalRM},
		}}
}

func evalPPL(args []string) error {
	fs := flagSet("eval ppl")
	mf := addModelFlags(fs)
	input := fs.String("input", "", "text file: every non-empty line is a document")
	cutoff := fs.Int("cutoff_len", 1024, "tokens per document at most ([BOS] included)")
	batch := fs.Int("batch", 8, "documents per forward pass")
	if err := parseFlags(fs, args, "--model D --input FILE [flags]"); err != nil {
		return err
	}
	if *input == "" {
		return usagef("--input is required")
	}
	if *cutoff < 2 || *batch < 1 {
		return usagef("--cutoff_len must be at least 2 and --batch at least 1")
	}
	m, p, err := mf.load()
	if err != nil {
		return err
	}
	if ctx := m.Config.MaxPositionEmbeddings; *cutoff > ctx {
		fmt.Fprintf(os.Stderr, "note: --cutoff_len %d is past the model's context %d: documents are cut to %d tokens\n", *cutoff, ctx, ctx)
		*cutoff = ctx
	}
	f, err := os.Open(*input)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := eval.Perplexity(m, f, p, *cutoff, *batch)
	if err != nil {
		return fmt.Errorf("%s: %w", *input, err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}
