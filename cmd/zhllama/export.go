package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"zhllama/gguf"
	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/spm"
)

func exportCommand() *command {
	return &command{name: "export", summary: "merge a PEFT LoRA adapter into its base model and write a Hugging Face checkpoint, or write a model or adapter as GGUF for llama.cpp and ollama",
		usage: "--model BASE --adapter A --output_dir D [--dtype float32|float16|bfloat16] | --format gguf --model D [--adapter A [--adapter_only]] --output_dir D [--outtype f32|f16|bf16|q8_0|q4_0]", run: exportRun}
}

func exportRun(args []string) error {
	fs := flagSet("export")
	base := fs.String("model", "", "base model directory")
	adapter := fs.String("adapter", "", "PEFT adapter directory (adapter_config.json, adapter_model.safetensors)")
	out := fs.String("output_dir", "", "where to write the merged model (or the .gguf file)")
	dtype := fs.String("dtype", "", "hf: float32, float16 or bfloat16 (default: the base's torch_dtype)")
	format := fs.String("format", "hf", "hf (a Hugging Face directory) or gguf (one file for llama.cpp and ollama)")
	outtype := fs.String("outtype", "", "gguf: the weight matrices' type, f32, f16, bf16, q8_0 or q4_0 (default f16; f32 for --adapter_only)")
	adapterOnly := fs.Bool("adapter_only", false, "gguf: write the LoRA adapter alone as a GGUF adapter (llama.cpp --lora) instead of merging it")
	if err := parseFlags(fs, args, "--model BASE --adapter A --output_dir D | --format gguf --model D [--adapter A [--adapter_only]] --output_dir D [--outtype T]"); err != nil {
		return err
	}
	switch *format {
	case "gguf":
		if *dtype != "" {
			return usagef("--dtype goes with --format hf; a GGUF's weight type is --outtype")
		}
		return exportGGUF(*base, *adapter, *out, *outtype, *adapterOnly)
	case "hf":
	default:
		return usagef("--format %q: use hf or gguf", *format)
	}
	if *outtype != "" || *adapterOnly {
		return usagef("--outtype and --adapter_only go with --format gguf")
	}
	if *base == "" || *adapter == "" || *out == "" {
		return usagef("--model, --adapter and --output_dir are required")
	}
	if err := refuseOverwrite("--output_dir", *out, nil, *base, *adapter); err != nil {
		return err
	}
	if err := mergeFits(*base, *adapter); err != nil {
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

// mergeFits says, before a long load ends in the kernel's out-of-memory
// kill, when merging adapter into base would not fit: the merge holds the
// base in float32.
func mergeFits(base, adapter string) error {
	c, err := hfdir.LoadConfig(filepath.Join(base, "config.json"))
	if err != nil {
		return err
	}
	need := 4 * c.NumParams()
	if avail := meminfo("MemAvailable"); avail > 0 && need > avail {
		return fmt.Errorf("merging %s into %s holds the model in float32, %.1f GB, and this machine has %.1f GB available: merge on a machine with more memory, or export the adapter alone (--format gguf --adapter_only) for llama.cpp's --lora", adapter, base, float64(need)/1e9, float64(avail)/1e9)
	}
	return nil
}

// exportGGUF writes OUT/<name>-<outtype>.gguf: the model (with the
// adapter merged in, if any) or, with adapterOnly, the adapter alone.
func exportGGUF(base, adapter, out, outtype string, adapterOnly bool) error {
	if base == "" || out == "" {
		return usagef("--model and --output_dir are required")
	}
	if adapterOnly && adapter == "" {
		return usagef("--adapter_only needs --adapter")
	}
	if outtype == "" {
		outtype = "f16"
		if adapterOnly {
			outtype = "f32"
		}
	}
	typ, err := gguf.ParseOutType(outtype)
	if err != nil {
		return usagef("%v", err)
	}
	if err := refuseOverwrite("--output_dir", out, nil, base, adapter); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if adapterOnly {
		return exportGGUFAdapter(base, adapter, out, outtype, typ)
	}
	// Without an adapter to merge, 16-bit weights stay in the mapped
	// checkpoint and are widened a row at a time as the file is written
	// (a 7B in float32 would need 27 GB); merging needs them in float32.
	half := adapter == ""
	if !half {
		if err := mergeFits(base, adapter); err != nil {
			return err
		}
	}
	m, err := hfdir.LoadWith(base, llama.LoadOptions{KeepBF16: half, KeepF16: half})
	if err != nil {
		return err
	}
	defer m.Close()
	name := filepath.Base(filepath.Clean(base))
	tokDir := base
	if adapter != "" {
		if _, _, err := hfdir.LoadAdapter(m, adapter, llama.DefaultAdapter); err != nil {
			return err
		}
		if err := m.MergeLoRA(); err != nil {
			return err
		}
		name = filepath.Base(filepath.Clean(adapter))
		tokDir = hfdir.TokenizerDir(adapter, base)
	}
	p, err := spm.LoadProcessor(filepath.Join(tokDir, "tokenizer.model"))
	if err != nil {
		return err
	}
	if p.Model().ModelType() == spm.ModelUnigram {
		fmt.Fprintf(os.Stderr, "note: %s is a Unigram model; llama.cpp's tokenizer for GGUF vocabularies merges pieces by score, as BPE does, and may split some text differently than training did\n", filepath.Join(tokDir, "tokenizer.model"))
	}
	topts, err := hfdir.ReadTokenizerOptions(tokDir)
	if err != nil {
		return err
	}
	path := filepath.Join(out, name+"-"+outtype+".gguf")
	o := gguf.ModelOptions{Type: typ, Name: name, Tokenizer: p, AddBOS: topts.AddBOS, AddEOS: topts.AddEOS, ChatTemplate: topts.ChatTemplate}
	if err := gguf.WriteModel(path, m, o, progressLines(path)); err != nil {
		return err
	}
	st, _ := os.Stat(path)
	fmt.Printf("wrote %s (%s, %d tensors of %d layers, %.1f MB)\n", path, outtype, len(m.Config.Params()), m.Config.NumHiddenLayers, float64(st.Size())/1e6)
	return nil
}

// exportGGUFAdapter writes a PEFT LoRA adapter as a GGUF adapter. Only the
// base's config.json is read; adapters that train whole tensors are
// refused, since a GGUF adapter holds only LoRA pairs.
func exportGGUFAdapter(base, adapter, out, outtype string, typ gguf.Type) error {
	acfg, err := hfdir.ReadAdapterConfig(adapter)
	if err != nil {
		return err
	}
	if len(acfg.ModulesToSave) > 0 {
		return fmt.Errorf("%s trains whole modules (modules_to_save %s) beside its LoRA pairs; a GGUF adapter cannot carry them: export the merged model instead (drop --adapter_only)", adapter, strings.Join(acfg.ModulesToSave, ", "))
	}
	c, err := hfdir.LoadConfig(filepath.Join(base, "config.json"))
	if err != nil {
		return err
	}
	m := &llama.Model{Config: c} // shapes only: the adapter needs no base weights
	_, replaced, err := hfdir.LoadAdapter(m, adapter, llama.DefaultAdapter)
	if err != nil {
		return err
	}
	if len(replaced) > 0 {
		return fmt.Errorf("%s holds whole tensors (%s), e.g. embeddings resized for a new vocabulary; a GGUF adapter cannot carry them: export the merged model instead (drop --adapter_only)", adapter, strings.Join(replaced, ", "))
	}
	path := filepath.Join(out, filepath.Base(filepath.Clean(adapter))+"-lora-"+outtype+".gguf")
	if err := gguf.WriteAdapter(path, m, llama.DefaultAdapter, typ, progressLines(path)); err != nil {
		return err
	}
	fmt.Printf("wrote %s (LoRA adapter, %d modules, r %d, alpha %g, %s)\n", path, len(m.Adapters("")), acfg.R, acfg.Scale()*float32(acfg.R), outtype)
	return nil
}

// progressLines reports a big file's writing on stderr, a line at every
// tenth.
func progressLines(path string) func(done, total int64) {
	start, next := time.Now(), 0.1
	return func(done, total int64) {
		if total < 200e6 || float64(done) < next*float64(total) {
			return
		}
		next += 0.1
		el := time.Since(start).Seconds()
		fmt.Fprintf(os.Stderr, "writing %s: %.0f%% of %.1f GB, %.0f MB/s\n", path, 100*float64(done)/float64(total), float64(total)/1e9, float64(done)/1e6/max(el, 1e-3))
	}
}
