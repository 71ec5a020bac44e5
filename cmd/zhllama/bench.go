package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"zhllama/spm"
)

func benchCommand() *command {
	return &command{
		name:    "bench",
		summary: "measure zhllama side by side with the reference tools",
		sub: []*command{
			{name: "tokenizer", summary: "encoding speed against spm_encode on the same model and file", usage: "--model M --input F [--threads 1,2] [--runs 5]", run: benchTokenizer},
			{name: "gemm", summary: "matrix multiplication GFLOP/s against PyTorch's torch.mm on the same threads", usage: "[--sizes 256,512,1024] [--runs 7]", run: benchGemm},
			{name: "tokenizer-train", summary: "BPE training speed and compression against spm_train with the same flags", usage: "--input F --eval G [--runs 3] [-- spm_train flags...]", run: benchTrain},
			{name: "train", summary: "model training steps (forward, backward, clipping, AdamW) against PyTorch eager", usage: "[--preset stories15M] [--batch 8] [--seq_len 256] [--steps 5] [--finetuning_type full|lora --lora_rank 8 --quantization_bit 4|8]", run: benchModelTrain},
			{name: "generate", summary: "greedy KV-cache decoding tokens/s against PyTorch eager, or decoding and prompt tokens/s against llama.cpp's llama-bench on the same GGUF", usage: "[--preset stories15M] [--batch 1] [--max_new_tokens 256] [--dtype float32|bfloat16] | --vs llamacpp [--preset stories15M | --model F.gguf] [--outtype f32|f16|bf16|q8_0|q4_0] [--threads 1,2] [--max_new_tokens 256] [--depth 33] [--prompt 256] [--runs 3] [--llama_bench PATH]", run: benchModelGenerate},
			{name: "serve", summary: "the server engine's aggregate decode tokens/s with N requests at once against one (continuous batching)", usage: "--tokenizer T.model [--preset stories15M] | --model D; [--streams 1,8] [--max_tokens 128] [--prompt_len 16]", run: benchServe},
			{name: "dpo", summary: "full-parameter DPO steps through the trainer against the same step in PyTorch eager", usage: "--tokenizer T.model [--preset stories15M] [--batch 4] [--seq_len 256] [--prompt_len 64] [--steps 5]", run: benchDPO},
			{name: "ppo", summary: "full-parameter PPO steps (generate, score, update) through the trainer against PyTorch eager", usage: "--tokenizer T.model [--preset stories15M] [--batch 8] [--mini_batch 4] [--prompt_len 64] [--max_new_tokens 64] [--ppo_epochs 1] [--steps 3]", run: benchPPO},
		},
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install Debian's sentencepiece package (apt-get install sentencepiece)", name)
	}
	return p, nil
}

// timeCommand runs bin with args, stdin from the file in (if any), output discarded.
func timeCommand(in string, bin string, args ...string) (time.Duration, error) {
	cmd := exec.Command(bin, args...)
	if in != "" {
		f, err := os.Open(in)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s: %v\n%s", filepath.Base(bin), err, stderr.String())
	}
	return time.Since(start), nil
}

func benchTokenizer(args []string) error {
	fs := flagSet("bench tokenizer")
	model := fs.String("model", "", "tokenizer.model")
	input := fs.String("input", "", "text file, one sentence a line")
	threadList := fs.String("threads", "1,"+strconv.Itoa(runtime.NumCPU()), "comma-separated thread counts for zhllama")
	runs := fs.Int("runs", 5, "runs of each; the median is reported")
	if err := parseFlags(fs, args, "--model M --input F [flags]"); err != nil {
		return err
	}
	if *model == "" || *input == "" {
		return usagef("--model and --input are required")
	}
	bin, err := lookTool("spm_encode")
	if err != nil {
		return err
	}
	p, err := loadProcessor(*model)
	if err != nil {
		return err
	}
	info, err := os.Stat(*input)
	if err != nil {
		return err
	}
	mb := float64(info.Size()) / (1 << 20)
	var threads []int
	for _, t := range strings.Split(*threadList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(t))
		if err != nil || n < 1 {
			return usagef("--threads: %q is not a thread count", t)
		}
		threads = append(threads, n)
	}
	ref := make([]time.Duration, 0, *runs)
	ours := make([][]time.Duration, len(threads))
	// Interleave the runs so that machine noise hits both sides alike.
	for range *runs {
		d, err := timeCommand(*input, bin, "--model", *model, "--output_format", "id")
		if err != nil {
			return err
		}
		ref = append(ref, d)
		for i, n := range threads {
			f, err := os.Open(*input)
			if err != nil {
				return err
			}
			start := time.Now()
			err = p.EncodeLines(f, io.Discard, spm.LineOptions{Format: "id", Threads: n})
			ours[i] = append(ours[i], time.Since(start))
			f.Close()
			if err != nil {
				return err
			}
		}
	}
	r := median(ref)
	fmt.Printf("encode %s (%.1f MiB) with %s, median of %d runs\n", *input, mb, *model, *runs)
	fmt.Printf("  %-22s %9s %10s %8s\n", "", "time", "MiB/s", "speedup")
	fmt.Printf("  %-22s %9s %10.2f %8s\n", "spm_encode (1 thread)", r.Round(time.Millisecond), mb/r.Seconds(), "1.00x")
	for i, n := range threads {
		d := median(ours[i])
		fmt.Printf("  %-22s %9s %10.2f %7.2fx\n", fmt.Sprintf("zhllama (%d thread%s)", n, plural(n)), d.Round(time.Millisecond), mb/d.Seconds(), r.Seconds()/d.Seconds())
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func benchTrain(args []string) error {
	fs := flagSet("bench tokenizer-train")
	input := fs.String("input", "", "training text")
	eval := fs.String("eval", "", "held-out text to compare compression on")
	runs := fs.Int("runs", 3, "runs of each; the median is reported")
	vocab := fs.Int("vocab_size", 8000, "vocabulary size")
	// Remaining arguments after -- are passed to both trainers.
	spmFlags, err := parseArgs(fs, args, "--input F --eval G [--vocab_size N] [--runs 3] [-- spm_train flags...]", 0, -1)
	if err != nil {
		return err
	}
	if *input == "" || *eval == "" {
		return usagef("--input and --eval are required")
	}
	bin, err := lookTool("spm_train")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "zhllama-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	flags := append([]string{"--input=" + *input, "--model_type=bpe", "--vocab_size=" + strconv.Itoa(*vocab), "--num_threads=" + strconv.Itoa(runtime.NumCPU())}, spmFlags...)
	cfgArgs := append(slices.Clone(flags), "--model_prefix="+filepath.Join(dir, "zh"))
	c, err := spm.ParseTrainArgs(cfgArgs)
	if err != nil {
		return usageError{err.Error()}
	}
	var ref, ours []time.Duration
	for range *runs {
		d, err := timeCommand("", bin, append(slices.Clone(flags), "--model_prefix="+filepath.Join(dir, "ref"), "--minloglevel=2")...)
		if err != nil {
			return err
		}
		ref = append(ref, d)
		start := time.Now()
		if _, err := spm.TrainFiles(c); err != nil {
			return err
		}
		ours = append(ours, time.Since(start))
	}
	r, o := median(ref), median(ours)
	fmt.Printf("train bpe on %s: %s\n", *input, strings.Join(flags[1:], " "))
	fmt.Printf("  spm_train  %9s\n  zhllama    %9s  %.2fx faster\n", r.Round(time.Millisecond), o.Round(time.Millisecond), r.Seconds()/o.Seconds())
	var tokens [2]int64
	for i, name := range []string{"ref", "zh"} {
		p, err := loadProcessor(filepath.Join(dir, name+".model"))
		if err != nil {
			return err
		}
		st, err := fileStats(p, *eval)
		if err != nil {
			return err
		}
		tokens[i] = st.Tokens
	}
	fmt.Printf("  held-out %s: spm_train's model %d tokens, zhllama's %d tokens (%+.2f%%)\n", *eval, tokens[0], tokens[1], 100*(float64(tokens[1])/float64(tokens[0])-1))
	return nil
}
