package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"zhllama/llama"
	"zhllama/spm"
)

// loadModel loads a model directory and its tokenizer.
func loadModel(dir string) (*llama.Model, *spm.Processor, error) {
	if dir == "" {
		return nil, nil, usagef("--model is required")
	}
	m, err := llama.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	p, err := loadProcessor(filepath.Join(dir, "tokenizer.model"))
	if err != nil {
		return nil, nil, err
	}
	return m, p, nil
}

func generateCommand() *command {
	return &command{name: "generate", summary: "continue a prompt with a model (KV cache; greedy or sampled)",
		usage: "--model D --prompt TEXT [--max_new_tokens N --temperature T --top_p P --top_k K --repetition_penalty R --seed S --stop S]", run: generate}
}

func generate(args []string) error {
	fs := flagSet("generate")
	dir := fs.String("model", "", "model directory")
	prompt := fs.String("prompt", "", "text to continue")
	maxNew := fs.Int("max_new_tokens", 128, "tokens to generate at most")
	temp := fs.Float64("temperature", 0, "0: greedy")
	topP := fs.Float64("top_p", 1, "nucleus sampling mass")
	topK := fs.Int("top_k", 0, "sample among the K most likely (0: all)")
	rep := fs.Float64("repetition_penalty", 1, "divide the logits of seen tokens (1: off)")
	seed := fs.Uint64("seed", 0, "sampling seed")
	var stops listFlag
	fs.Var(&stops, "stop", "stop when the output ends with this text (repeatable)")
	if err := parseFlags(fs, args, "--model D --prompt TEXT [flags]"); err != nil {
		return err
	}
	m, p, err := loadModel(*dir)
	if err != nil {
		return err
	}
	ids := []int32{}
	if bos := p.SpecialID("bos"); bos >= 0 {
		ids = append(ids, int32(bos))
	}
	for _, id := range p.Encode(*prompt) {
		ids = append(ids, int32(id))
	}
	if len(ids)+*maxNew > m.Config.MaxPositionEmbeddings {
		fmt.Fprintf(os.Stderr, "note: %d prompt + %d new tokens pass max_position_embeddings %d\n", len(ids), *maxNew, m.Config.MaxPositionEmbeddings)
	}
	s := llama.Sampling{MaxNewTokens: *maxNew, Temperature: *temp, TopP: *topP, TopK: *topK, RepetitionPenalty: *rep, Seed: *seed}
	if eos := p.SpecialID("eos"); eos >= 0 {
		s.StopIDs = []int{eos}
	}
	var out []int
	printed := ""
	m.Generate(ids, s, func(id int) bool {
		out = append(out, id)
		// Decode the whole output each time so that multi-token characters print whole.
		text, _ := p.Decode(out)
		if strings.HasPrefix(text, printed) {
			fmt.Print(text[len(printed):])
			printed = text
		}
		for _, st := range stops {
			if st != "" && strings.HasSuffix(text, st) {
				return false
			}
		}
		return true
	})
	fmt.Println()
	return nil
}

func evalCommand() *command {
	return &command{name: "eval", summary: "evaluate models",
		sub: []*command{{name: "ppl", summary: "perplexity of a model on a text file, a document a line", usage: "--model D --input FILE [--cutoff_len N] [--batch N]", run: evalPPL}}}
}

func evalPPL(args []string) error {
	fs := flagSet("eval ppl")
	dir := fs.String("model", "", "model directory")
	input := fs.String("input", "", "text file: every non-empty line is a document")
	cutoff := fs.Int("cutoff_len", 1024, "tokens per document at most ([BOS] included)")
	batch := fs.Int("batch", 8, "documents per forward pass")
	if err := parseFlags(fs, args, "--model D --input FILE [flags]"); err != nil {
		return err
	}
	if *input == "" {
		return usagef("--input is required")
	}
	m, p, err := loadModel(*dir)
	if err != nil {
		return err
	}
	f, err := os.Open(*input)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := m.EvalPPL(f, p, *cutoff, *batch)
	if err != nil {
		return fmt.Errorf("%s: %w", *input, err)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}
