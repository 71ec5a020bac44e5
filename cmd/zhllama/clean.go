package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"zhllama/clean"
)

func dataClean(args []string) error {
	d := clean.DefaultOptions()
	fs := flagSet("data clean")
	var inputs listFlag
	fs.Var(&inputs, "input", "input file: text, JSON or JSON Lines, pretraining text or alpaca/sharegpt/preference data (repeatable)")
	output := fs.String("output", "", "cleaned records as JSON Lines, in the input's layout")
	report := fs.String("report", "", "write the report (counts and examples per rule) as JSON here")
	o := d
	fs.StringVar(&o.Dedup, "dedup", d.Dedup, "none, exact or minhash (near-duplicates over character shingles)")
	fs.Float64Var(&o.MinhashThreshold, "minhash_threshold", d.MinhashThreshold, "estimated Jaccard similarity that makes a near-duplicate")
	fs.IntVar(&o.ShingleSize, "shingle_size", d.ShingleSize, "characters per shingle")
	fs.IntVar(&o.MinChars, "min_chars", d.MinChars, "drop records with fewer characters")
	fs.IntVar(&o.MaxChars, "max_chars", d.MaxChars, "drop records with more characters (0: no limit)")
	fs.Float64Var(&o.MinChineseRatio, "min_chinese_ratio", d.MinChineseRatio, "drop records whose letters are less than this share Chinese (0: off)")
	fs.IntVar(&o.MaxCharRun, "max_char_run", d.MaxCharRun, "drop records with a character repeated more times in a row (0: off)")
	fs.Float64Var(&o.MaxDupLineShare, "max_dup_line_share", d.MaxDupLineShare, "drop records with a larger share of repeated lines (0: off)")
	fs.Float64Var(&o.MaxTopNgramShare, "max_top_ngram_share", d.MaxTopNgramShare, "drop records where one 3-gram covers more (0: off)")
	fs.IntVar(&o.MinAnswerChars, "min_answer_chars", d.MinAnswerChars, "SFT: drop answers shorter than this")
	boiler := fs.String("boilerplate", "", "file of boilerplate phrases, one a line (default: a built-in list)")
	refusals := fs.String("refusals", "", "file of refusal phrases, one a line (default: a built-in list)")
	fs.BoolVar(&o.TraditionalToSimplified, "t2s", false, "convert traditional Chinese to simplified (OpenCC's t2s tables)")
	fs.BoolVar(&o.Strict, "strict", false, "stop at the first malformed record")
	fs.BoolVar(&o.Paragraphs, "paragraphs", false, "plain text: a blank-line-separated paragraph is one document (default: a line)")
	fs.IntVar(&o.Threads, "num_threads", 0, "worker threads (0: all CPUs)")
	files, err := parseArgs(fs, args, "--input F [--input G ...] --output OUT.jsonl [--report R.json] [flags]", 0, -1)
	if err != nil {
		return err
	}
	inputs = append(inputs, files...)
	if len(inputs) == 0 || *output == "" {
		return usagef("--input and --output are required")
	}
	if err := refuseOverwrite("--output", *output, nil, inputs...); err != nil {
		return err
	}
	if isDir(*output) {
		return usagef("--output %s is a directory: give the file to write, e.g. %s", *output, filepath.Join(*output, "clean.jsonl"))
	}
	for _, l := range []struct {
		path string
		dst  *[]string
	}{{*boiler, &o.Boilerplate}, {*refusals, &o.Refusals}} {
		if l.path == "" {
			continue
		}
		b, err := os.ReadFile(l.path)
		if err != nil {
			return err
		}
		*l.dst = nil
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				*l.dst = append(*l.dst, line)
			}
		}
	}
	o.Log = os.Stderr
	rep, err := clean.Run(inputs, *output, o)
	if rep != nil {
		fmt.Print(rep.Summary())
		if *report != "" {
			if werr := clean.WriteReport(*report, rep); werr != nil && err == nil {
				err = werr
			}
		}
	}
	return err
}
