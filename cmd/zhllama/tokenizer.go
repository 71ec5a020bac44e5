package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"zhllama/hfdir"
	"zhllama/internal/atomicfile"
	"zhllama/spm"
)

func tokenizerCommand() *command {
	return &command{
		name:    "tokenizer",
		summary: "train, merge, inspect and run SentencePiece tokenizers",
		sub: []*command{
			{name: "train", summary: "train a BPE tokenizer with spm_train's flags", usage: "--input=FILES --model_prefix=PREFIX --vocab_size=N --model_type=bpe [flags]",
				help: "Flags are spm_train's, as --flag=value or --flag value:\n" + spm.TrainFlagHelp(), run: tokTrain},
			{name: "merge", summary: "append a tokenizer's new pieces to a base tokenizer (Chinese-LLaMA-Alpaca's rule)", usage: "--base B.model --add A.model [--add C.model ...] --output_dir DIR [--pad_token \"<pad>\"] [--eval_text FILE]", run: tokMerge},
			{name: "encode", summary: "encode text to pieces or ids, one line per line (spm_encode)", usage: "--model M [--output_format piece|id] [--add_bos] [--add_eos] [--num_threads N] [--output F] [files...]", run: tokEncode},
			{name: "decode", summary: "decode pieces or ids to text, one line per line (spm_decode)", usage: "--model M [--input_format piece|id] [--output F] [files...]", run: tokDecode},
			{name: "inspect", summary: "print a model's type, size, normalizer, trainer spec and special pieces", usage: "MODEL", run: tokInspect},
			{name: "stats", summary: "compare models on a corpus: tokens, characters per token, byte-fallback and unknown rates", usage: "--model A [--model B ...] --input F [--input G ...]", run: tokStats},
		},
	}
}

func tokTrain(args []string) error {
	for _, a := range args {
		if isHelp(a) {
			fmt.Printf("usage: zhllama tokenizer train --input=FILES --model_prefix=PREFIX --vocab_size=N --model_type=bpe [flags]\n\n%s", spm.TrainFlagHelp())
			return flag.ErrHelp
		}
	}
	c, err := spm.ParseTrainArgs(args)
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		return usageError{err.Error()}
	}
	c.Log = os.Stderr
	m, err := spm.TrainFiles(c)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s.model and %s.vocab (%d pieces)\n", c.ModelPrefix, c.ModelPrefix, len(m.Pieces))
	return nil
}

func loadProcessor(path string) (*spm.Processor, error) {
	if path == "" {
		return nil, usagef("--model is required")
	}
	return spm.LoadProcessor(path)
}

// openInputs concatenates the named files (stdin when none), ending each
// file's last line so that lines of adjacent files never run together.
func openInputs(names []string) (io.Reader, func(), error) {
	if len(names) == 0 {
		return os.Stdin, func() {}, nil
	}
	j := &joinedFiles{}
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, n := range names {
		if n == "-" {
			j.rs = append(j.rs, os.Stdin)
			continue
		}
		f, err := os.Open(n)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		files = append(files, f)
		j.rs = append(j.rs, f)
	}
	return j, closeAll, nil
}

type joinedFiles struct {
	rs        []io.Reader
	last      byte
	pendingNL bool
}

func (j *joinedFiles) Read(p []byte) (int, error) {
	for len(j.rs) > 0 && len(p) > 0 {
		if j.pendingNL {
			j.pendingNL, j.last, p[0] = false, '\n', '\n'
			return 1, nil
		}
		n, err := j.rs[0].Read(p)
		if n > 0 {
			j.last = p[n-1]
			return n, nil
		}
		if err == io.EOF {
			j.rs = j.rs[1:]
			j.pendingNL = j.last != 0 && j.last != '\n'
			j.last = 0
			continue
		}
		if err != nil {
			return 0, err
		}
	}
	if j.pendingNL && len(p) > 0 {
		j.pendingNL, p[0] = false, '\n'
		return 1, nil
	}
	return 0, io.EOF
}

// createOutput opens the output file (stdout when empty). The returned
// commit moves the file into place if err is nil, else drops it.
func createOutput(name string) (io.Writer, func(error) error, error) {
	if name == "" || name == "-" {
		return os.Stdout, func(err error) error { return err }, nil
	}
	f, err := atomicfile.Create(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func(err error) error {
		if err != nil {
			f.Abort()
			return err
		}
		return f.Commit()
	}, nil
}

// lineFlags are the flags encode and decode share.
type lineFlags struct {
	model, output *string
	threads       *int
	inputs        listFlag
}

func addLineFlags(fs *flag.FlagSet) *lineFlags {
	lf := &lineFlags{
		model:   fs.String("model", "", "tokenizer.model to use"),
		output:  fs.String("output", "", "output file (default stdout)"),
		threads: fs.Int("num_threads", 0, "worker threads (0: all CPUs); output order is kept"),
	}
	fs.Var(&lf.inputs, "input", "input file (repeatable; default: the arguments, or stdin)")
	return lf
}

// run loads the model, opens the inputs (flags and arguments) and the
// output, and calls f; the output file appears only if f succeeds.
func (lf *lineFlags) run(args []string, f func(p *spm.Processor, in io.Reader, out io.Writer) error) error {
	p, err := loadProcessor(*lf.model)
	if err != nil {
		return err
	}
	in, closeIn, err := openInputs(append(lf.inputs, args...))
	if err != nil {
		return err
	}
	defer closeIn()
	w, commit, err := createOutput(*lf.output)
	if err != nil {
		return err
	}
	return commit(f(p, in, w))
}

func tokEncode(args []string) error {
	fs := flagSet("tokenizer encode")
	lf := addLineFlags(fs)
	format := fs.String("output_format", "piece", "piece or id")
	addBOS := fs.Bool("add_bos", false, "prepend the bos id")
	addEOS := fs.Bool("add_eos", false, "append the eos id")
	files, err := parseArgs(fs, args, "--model M [flags] [files...]", 0, -1)
	if err != nil {
		return err
	}
	return lf.run(files, func(p *spm.Processor, in io.Reader, out io.Writer) error {
		return p.EncodeLines(in, out, spm.LineOptions{Format: *format, AddBOS: *addBOS, AddEOS: *addEOS, Threads: *lf.threads})
	})
}

func tokDecode(args []string) error {
	fs := flagSet("tokenizer decode")
	lf := addLineFlags(fs)
	format := fs.String("input_format", "piece", "piece or id")
	files, err := parseArgs(fs, args, "--model M [flags] [files...]", 0, -1)
	if err != nil {
		return err
	}
	return lf.run(files, func(p *spm.Processor, in io.Reader, out io.Writer) error {
		return p.DecodeLines(in, out, spm.LineOptions{Format: *format, Threads: *lf.threads})
	})
}

// fileStats encodes a file with p and returns its statistics.
func fileStats(p *spm.Processor, path string) (spm.CorpusStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return spm.CorpusStats{}, err
	}
	defer f.Close()
	st, err := p.Stats(f, 0)
	if err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

func tokMerge(args []string) error {
	fs := flagSet("tokenizer merge")
	base := fs.String("base", "", "base tokenizer.model (LLaMA's)")
	var adds listFlag
	fs.Var(&adds, "add", "tokenizer whose new pieces are appended (repeatable)")
	outDir := fs.String("output_dir", "", "directory for tokenizer.model, tokenizer_config.json, special_tokens_map.json")
	pad := fs.String("pad_token", "", "add this pad piece right after the base pieces (Chinese-LLaMA-2 uses \"<pad>\")")
	eval := fs.String("eval_text", "", "print tokens per character before and after on this text file")
	if err := parseFlags(fs, args, "--base B.model --add A.model [--add C.model ...] --output_dir DIR [flags]"); err != nil {
		return err
	}
	if *base == "" || len(adds) == 0 || *outDir == "" {
		return usagef("--base, --add and --output_dir are required")
	}
	if err := refuseOverwrite("--output_dir", *outDir, []string{"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}, append([]string{*base}, adds...)...); err != nil {
		return err
	}
	b, err := spm.Load(*base)
	if err != nil {
		return err
	}
	var addModels []*spm.Model
	for _, a := range adds {
		m, err := spm.Load(a)
		if err != nil {
			return err
		}
		addModels = append(addModels, m)
	}
	merged, rep, err := spm.Merge(b, addModels, *pad)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	if err := hfdir.WriteTokenizer(*outDir, merged, *pad, ""); err != nil {
		return err
	}
	fmt.Printf("base %s: %d pieces\n", *base, rep.BaseSize)
	if rep.PadID >= 0 {
		fmt.Printf("pad %q: id %d\n", *pad, rep.PadID)
	}
	for i, a := range adds {
		fmt.Printf("add %s: %d pieces, %d added, %d already present\n", a, len(addModels[i].Pieces), rep.Added[i], rep.Skipped[i])
	}
	fmt.Printf("merged: %d pieces -> %s\n", rep.MergedSize, filepath.Join(*outDir, "tokenizer.model"))
	if *eval == "" {
		return nil
	}
	for _, x := range []struct {
		name string
		m    *spm.Model
	}{{"before", b}, {"after", merged}} {
		p, err := spm.NewProcessor(x.m)
		if err != nil {
			return err
		}
		st, err := fileStats(p, *eval)
		if err != nil {
			return err
		}
		fmt.Printf("%-6s %d tokens for %d characters: %.4f tokens/char, %.3f chars/token, %.2f%% byte-fallback\n",
			x.name, st.Tokens, st.Chars, st.TokensPerChar(), st.CharsPerToken(), 100*float64(st.ByteTokens)/float64(max(st.Tokens, 1)))
	}
	return nil
}

func tokInspect(args []string) error {
	fs := flagSet("tokenizer inspect")
	pos, err := parseArgs(fs, args, "MODEL", 1, 1)
	if err != nil {
		return err
	}
	m, err := spm.Load(pos[0])
	if err != nil {
		return err
	}
	fmt.Print(spm.Describe(m))
	return nil
}

func tokStats(args []string) error {
	fs := flagSet("tokenizer stats")
	var models, inputs listFlag
	fs.Var(&models, "model", "model to compare (repeatable)")
	fs.Var(&inputs, "input", "text file, one sentence a line (repeatable)")
	threads := fs.Int("num_threads", 0, "worker threads (0: all CPUs)")
	files, err := parseArgs(fs, args, "--model A [--model B ...] --input F", 0, -1)
	if err != nil {
		return err
	}
	inputs = append(inputs, files...)
	if len(models) == 0 || len(inputs) == 0 {
		return usagef("--model and --input are required")
	}
	fmt.Printf("%-40s %8s %12s %12s %10s %10s %9s %9s\n", "model", "vocab", "characters", "tokens", "chars/tok", "tok/char", "bytes%", "unk%")
	var first int64
	for i, mp := range models {
		p, err := loadProcessor(mp)
		if err != nil {
			return err
		}
		in, closeIn, err := openInputs(inputs)
		if err != nil {
			return err
		}
		st, err := p.Stats(in, *threads)
		closeIn()
		if err != nil {
			return err
		}
		rel := ""
		if i == 0 {
			first = st.Tokens
		} else if first > 0 {
			rel = fmt.Sprintf("  (%+.1f%% tokens vs first)", 100*(float64(st.Tokens)/float64(first)-1))
		}
		fmt.Printf("%-40s %8d %12d %12d %10.3f %10.4f %9.3f %9.3f%s\n", trimPath(mp, 40), p.Size(), st.Chars, st.Tokens,
			st.CharsPerToken(), st.TokensPerChar(), 100*float64(st.ByteTokens)/float64(max(st.Tokens, 1)),
			100*float64(st.UnkTokens)/float64(max(st.Tokens, 1)), rel)
	}
	return nil
}

func trimPath(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n+3:]
}
