package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/spm"
)

func modelCommand() *command {
	var presets []string
	for p := range llama.Presets {
		presets = append(presets, p)
	}
	sort.Strings(presets)
	return &command{
		name:    "model",
		summary: "create and inspect LLaMA model directories (config.json + safetensors)",
		sub: []*command{
			{name: "init", summary: "write a randomly initialized model (presets: " + strings.Join(presets, ", ") + ")",
				usage: "--preset NAME | --config FILE --tokenizer T.model --output_dir D [--seed N] [--dtype float32|float16|bfloat16]", run: modelInit},
			{name: "inspect", summary: "print a model's config, parameter count, dtype and size, checking every tensor", usage: "DIR", run: modelInspect},
		},
	}
}

func modelInit(args []string) error {
	fs := flagSet("model init")
	preset := fs.String("preset", "", "a model shape by name")
	config := fs.String("config", "", "a config.json to take the shape from")
	tok := fs.String("tokenizer", "", "tokenizer.model: its size becomes vocab_size, its files are copied")
	out := fs.String("output_dir", "", "directory to write")
	seed := fs.Uint64("seed", 42, "random seed")
	dtype := fs.String("dtype", "", "float32, float16 or bfloat16 (default: the config's torch_dtype)")
	overwrite := fs.Bool("overwrite_output_dir", false, "write over a directory that holds files")
	if err := parseFlags(fs, args, "--preset NAME | --config FILE --tokenizer T.model --output_dir D [flags]"); err != nil {
		return err
	}
	if (*preset == "") == (*config == "") || *tok == "" || *out == "" {
		return usagef("give one of --preset and --config, and --tokenizer and --output_dir")
	}
	var c llama.Config
	var err error
	if *preset != "" {
		c, err = llama.Preset(*preset)
	} else {
		c, err = hfdir.LoadConfig(*config)
	}
	if err != nil {
		return err
	}
	m, err := spm.Load(*tok)
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(*out); err == nil && len(entries) > 0 && !*overwrite {
		return fmt.Errorf("--output_dir %s is not empty (it holds %s): a random model would replace what is there; choose another directory or pass --overwrite_output_dir", *out, entries[0].Name())
	}
	if err := hfdir.Init(c, m, *out, hfdir.InitOptions{Seed: *seed, DType: *dtype}); err != nil {
		return err
	}
	s, err := hfdir.Inspect(*out, false)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s\n%s", *out, s)
	return nil
}

func modelInspect(args []string) error {
	fs := flagSet("model inspect")
	pos, err := parseArgs(fs, args, "DIR", 1, 1)
	if err != nil {
		return err
	}
	s, err := hfdir.Inspect(pos[0], true)
	if err != nil {
		return err
	}
	fmt.Print(s)
	return nil
}
