package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"zhllama/corpus"
	"zhllama/spm"
)

func dataCommand() *command {
	return &command{
		name:    "data",
		summary: "read, tokenize and pack training data",
		sub: []*command{
			{name: "pack", summary: "tokenize documents as [BOS] ids [EOS] and cut the stream into blocks of cutoff_len", usage: "--tokenizer T.model --input F [--input G ...] --output_dir D --cutoff_len N [flags]", run: dataPack},
			{name: "clean", summary: "normalize, filter and deduplicate text or instruction data, with a report", usage: "--input F --output OUT.jsonl [--report R.json] [--dedup none|exact|minhash] [flags]", run: dataClean},
			{name: "preview", summary: "render SFT or preference examples with a chat template, the masked part marked", usage: "--dataset F --template T --tokenizer M [--n 3] [--cutoff_len N] [--json]", run: dataPreview},
			{name: "inspect", summary: "print a packed directory's totals as JSON and decode a few blocks", usage: "DIR [--blocks N]", run: dataInspect},
		},
	}
}

func dataPack(args []string) error {
	fs := flagSet("data pack")
	tok := fs.String("tokenizer", "", "tokenizer.model")
	var inputs listFlag
	fs.Var(&inputs, "input", "text (.txt: a document a line), JSON array or JSON Lines file with text/completion/content; .gz read transparently (repeatable)")
	out := fs.String("output_dir", "", "output directory: index.json, tokenizer.model, tokens-NNNNN.bin")
	cutoff := fs.Int("cutoff_len", 1024, "tokens per block")
	shard := fs.Int("shard_tokens", 64<<20, "tokens per shard file")
	threads := fs.Int("num_threads", 0, "tokenizer threads (0: all CPUs)")
	strict := fs.Bool("strict", false, "stop at the first malformed record instead of skipping it")
	paragraphs := fs.Bool("paragraphs", false, "plain text: a blank-line-separated paragraph is one document (default: a line)")
	files, err := parseArgs(fs, args, "--tokenizer T.model --input F --output_dir D --cutoff_len N", 0, -1)
	if err != nil {
		return err
	}
	inputs = append(inputs, files...)
	if *tok == "" || len(inputs) == 0 || *out == "" {
		return usagef("--tokenizer, --input and --output_dir are required")
	}
	bad := 0
	idx, err := corpus.Pack(corpus.PackOptions{
		Tokenizer: *tok, Inputs: inputs, OutputDir: *out, CutoffLen: *cutoff, ShardTokens: *shard, Threads: *threads,
		Strict: *strict, Paragraphs: *paragraphs, Log: os.Stderr,
		Bad: func(loc corpus.Location, err error) {
			if bad++; bad <= 10 {
				fmt.Fprintf(os.Stderr, "skipped %s: %v\n", loc, err)
			}
		},
	})
	if err != nil {
		return err
	}
	fmt.Printf("%d documents -> %d blocks of %d tokens (%s) in %d shards, %d tokens of the last partial block dropped, %d malformed records skipped\n",
		idx.Documents, idx.Blocks, idx.CutoffLen, idx.DType, len(idx.Shards), idx.DroppedTokens, idx.Skipped)
	return nil
}

func dataInspect(args []string) error {
	fs := flagSet("data inspect")
	n := fs.Int("blocks", 2, "blocks to decode")
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		args = append(args[1:], args[0]) // the directory may come before the flags
	}
	pos, err := parseArgs(fs, args, "DIR [--blocks N]", 1, 1)
	if err != nil {
		return err
	}
	dir := pos[0]
	idx, err := corpus.ReadPackIndex(dir)
	if err != nil {
		return err
	}
	totals := map[string]any{
		"documents": idx.Documents, "tokens": idx.Tokens, "blocks": idx.Blocks, "cutoff_len": idx.CutoffLen,
		"dtype": idx.DType, "vocab_size": idx.VocabSize, "shards": len(idx.Shards), "complete": idx.Complete,
		"dropped_tokens": idx.DroppedTokens, "skipped_records": idx.Skipped,
	}
	b, _ := json.MarshalIndent(totals, "", "  ")
	fmt.Println(string(b))
	p, err := loadProcessor(filepath.Join(dir, idx.Tokenizer))
	if err != nil {
		return err
	}
	for i := int64(0); i < min(int64(*n), idx.Blocks); i++ {
		block, err := corpus.ReadBlock(dir, idx, i)
		if err != nil {
			return err
		}
		ids := make([]int, len(block))
		for k, id := range block {
			ids[k] = int(id)
		}
		text, err := p.Decode(ids)
		if err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
		fmt.Printf("--- block %d (%s ... %s) ---\n%s\n", i, pieceOf(p, ids[0]), pieceOf(p, ids[len(ids)-1]), text)
	}
	return nil
}

func pieceOf(p *spm.Processor, id int) string { return fmt.Sprintf("%d %q", id, p.IDToPiece(id)) }
