package main

import (
	"fmt"
	"path/filepath"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/spm"
)

func exportCommand() *command {
	return &command{name: "export", summary: "merge a PEFT LoRA adapter into its base model and write a full Hugging Face checkpoint",
		usage: "--model BASE --adapter A --output_dir D [--dtype float32|float16|bfloat16]", run: exportRun}
}

func exportRun(args []string) error {
	fs := flagSet("export")
	base := fs.String("model", "", "base model directory")
	adapter := fs.String("adapter", "", "PEFT adapter directory (adapter_config.json, adapter_model.safetensors)")
	out := fs.String("output_dir", "", "where to write the merged model")
	dtype := fs.String("dtype", "", "float32, float16 or bfloat16 (default: the base's torch_dtype)")
	if err := parseFlags(fs, args, "--model BASE --adapter A --output_dir D"); err != nil {
		return err
	}
	if *base == "" || *adapter == "" || *out == "" {
		return usagef("--model, --adapter and --output_dir are required")
	}
	if err := refuseOverwrite("--output_dir", *out, nil, *base, *adapter); err != nil {
		return err
	}
	m, err := hfdir.Load(*base)
	if err != nil {
		return err
	}
	cfg, replaced, err := hfdir.LoadAdapter(m, *adapter, llama.DefaultAdapter)
	if err != nil {
		return err
	}
	n := len(m.Adapters(""))
	if err := m.MergeLoRA(); err != nil {
		return err
	}
	if *dtype == "" {
		*dtype = m.Config.TorchDType
	}
	if err := hfdir.Save(m, *out, *dtype, 0); err != nil {
		return err
	}
	tokPath := filepath.Join(hfdir.TokenizerDir(*adapter, *base), "tokenizer.model")
	p, err := spm.LoadProcessor(tokPath)
	if err != nil {
		return err
	}
	if p.Size() != m.Config.VocabSize {
		return fmt.Errorf("%s has %d pieces but the merged model's vocab_size is %d", tokPath, p.Size(), m.Config.VocabSize)
	}
	// The adapter's chat template (that of its SFT), else the base's.
	chat, err := hfdir.ChatTemplate(*adapter)
	if err == nil && chat == "" {
		chat, err = hfdir.ChatTemplate(*base)
	}
	if err != nil {
		return err
	}
	if err := hfdir.SaveTokenizer(*out, p, chat); err != nil {
		return err
	}
	fmt.Printf("merged %d LoRA modules (r %d, scale %g) and %d whole tensors into %s (%s)\n", n, cfg.R, cfg.Scale(), len(replaced), *out, *dtype)
	return nil
}
