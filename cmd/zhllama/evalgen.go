package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"zhllama/eval"
	"zhllama/internal/atomicfile"
	"zhllama/llama"
	"zhllama/spm"
	"zhllama/train"
)

const evalSFTUsage = "--model D [--adapter A] --dataset FILE_OR_NAME[,...] [--dataset_dir DIR] [--template T] [--cutoff_len N] [--max_samples N] [--batch N] [--max_new_tokens N --temperature T --top_p P --top_k K --seed S] [--jieba_dict FILE] --output_dir OUT"

// evalSFT is LLaMA-Factory's predict_with_generate: answer every
// example's prompt, write generated_predictions.jsonl, and score the
// answers against the dataset's with BLEU-4 and ROUGE (predict_results.json).
func evalSFT(args []string) error {
	fs := flagSet("eval sft")
	mf := addModelFlags(fs)
	df := addDataFlags(fs)
	// LLaMA-Factory's generating defaults: sampled, temperature 0.95, top_p
	// 0.7, top_k 50, 1024 new tokens.
	sf := addSamplingFlags(fs, llama.Sampling{MaxNewTokens: 1024, Temperature: 0.95, TopP: 0.7, TopK: 50})
	batch := fs.Int("batch", 8, "prompts generated together")
	jiebaDict := fs.String("jieba_dict", "", "jieba's dict.txt: ROUGE's words are cut with it as jieba cuts them (default: found where Python installs jieba, or $ZHLLAMA_JIEBA_DICT; a build with -tags gsedict embeds gse's dictionary instead)")
	outDir := fs.String("output_dir", "", "write generated_predictions.jsonl and predict_results.json here")
	if err := parseFlags(fs, args, evalSFTUsage); err != nil {
		return err
	}
	if *outDir == "" {
		return usagef("--output_dir is required")
	}
	if *batch < 1 {
		return usagef("--batch must be at least 1")
	}
	if err := df.check(); err != nil {
		return err
	}
	// The segmenter first: a bad --jieba_dict fails before the model loads.
	if *jiebaDict == "" && !eval.EmbeddedDict {
		if *jiebaDict = eval.FindJiebaDict(); *jiebaDict != "" {
			fmt.Fprintf(os.Stderr, "eval sft: words cut with %s\n", *jiebaDict)
		}
	}
	cut, err := eval.NewJieba(*jiebaDict)
	if err != nil {
		return err
	}
	m, p, s, err := sf.load(mf)
	if err != nil {
		return err
	}
	c := df.config("sft", *mf.dir, m.Config.MaxPositionEmbeddings)
	exs, err := train.LoadPredictions(c, p, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "eval sft: %d prompts from %s, template %s\n", len(exs), strings.Join(c.Dataset, ","), c.Template)
	eos := p.SpecialID("eos")
	preds := make([]string, len(exs))
	pr := newProgress("eval sft", "prompts", len(exs))
	start := time.Now()
	seed := s.Seed
	for lo := 0; lo < len(exs); lo += *batch {
		hi := min(lo+*batch, len(exs))
		prompts := make([][]int32, hi-lo)
		for i := range prompts {
			prompts[i] = exs[lo+i].Prompt
		}
		// Example i samples with seed+i, whatever the batch.
		s.Seed = seed + uint64(lo)
		outs, err := m.GenerateBatch(prompts, s, nil)
		if err != nil {
			return err
		}
		for i, o := range outs {
			if n := len(o); n > 0 && o[n-1] == eos {
				o = o[:n-1]
			}
			preds[lo+i], _ = p.Decode(o)
		}
		pr.report(hi, hi == len(exs), "")
	}
	elapsed := time.Since(start).Seconds()

	var lines bytes.Buffer
	scores := make([]eval.GenScores, len(exs))
	for i, e := range exs {
		label, _ := p.Decode(spm.Ints(e.Answer))
		// The prompt as LLaMA-Factory writes it, special tokens shown.
		prompt, err := p.DecodeSpecial(spm.Ints(e.Prompt))
		if err != nil {
			return err
		}
		fmt.Fprintf(&lines, "{\"prompt\": %s, \"predict\": %s, \"label\": %s}\n", pyJSON(prompt), pyJSON(preds[i]), pyJSON(label))
		scores[i] = eval.ScoreGeneration(preds[i], label, cut(preds[i]), cut(label))
	}
	mean := eval.MeanScores(scores)
	results := map[string]float64{
		"predict_bleu-4": mean.BLEU4, "predict_rouge-1": mean.Rouge1, "predict_rouge-2": mean.Rouge2, "predict_rouge-l": mean.RougeL,
		"predict_runtime": round4(elapsed), "predict_samples_per_second": round4(float64(len(exs)) / max(elapsed, 1e-9)),
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(*outDir, "generated_predictions.jsonl"), lines.Bytes()); err != nil {
		return err
	}
	if err := atomicfile.WriteJSON(filepath.Join(*outDir, "predict_results.json"), results); err != nil {
		return err
	}
	fmt.Printf("%-16s %8s\n", "metric", "score")
	for _, k := range []string{"predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l"} {
		fmt.Printf("%-16s %8.4f\n", k, results[k])
	}
	fmt.Fprintf(os.Stderr, "wrote %s/generated_predictions.jsonl and predict_results.json\n", *outDir)
	return nil
}

const evalRMUsage = "--model D [--adapter A] --dataset PAIRS[,...] [--dataset_dir DIR] [--template T] [--cutoff_len N] [--max_samples N] [--batch N] [--output_dir OUT]"

// evalRM scores preference pairs with a reward model: the share whose
// chosen answer scores higher, and the mean margin.
func evalRM(args []string) error {
	fs := flagSet("eval rm")
	mf := addModelFlags(fs)
	df := addDataFlags(fs)
	batch := fs.Int("batch", 4, "pairs per forward pass")
	outDir := fs.String("output_dir", "", "also write rm_results.json here")
	if err := parseFlags(fs, args, evalRMUsage); err != nil {
		return err
	}
	if *batch < 1 {
		return usagef("--batch must be at least 1")
	}
	if err := df.check(); err != nil {
		return err
	}
	m, p, head, err := mf.loadRewardModel()
	if err != nil {
		return err
	}
	c := df.config("rm", *mf.dir, m.Config.MaxPositionEmbeddings)
	pairs, _, err := train.LoadPairs(c, p, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "eval rm: %d pairs from %s, template %s\n", pairs.Len(), strings.Join(c.Dataset, ","), c.Template)
	pr := newProgress("eval rm", "pairs", pairs.Len())
	res := train.PairStats(train.ScorePairs(m, head, pairs, *batch, train.PadID(p), func(done int) { pr.report(done, done == pairs.Len(), "") }))
	fmt.Printf("%-12s %10s\n%-12s %10d\n%-12s %10.4f\n%-12s %10.4f\n%-12s %10.4f\n", "metric", "value", "pairs", res.Pairs, "accuracy", res.Accuracy, "mean_margin", res.MeanMargin, "loss", res.Loss)
	if *outDir != "" {
		if err := os.MkdirAll(*outDir, 0o755); err != nil {
			return err
		}
		if err := atomicfile.WriteJSON(filepath.Join(*outDir, "rm_results.json"), res); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s/rm_results.json\n", *outDir)
	}
	return nil
}

// pyJSON is a string as Python's json.dumps(s, ensure_ascii=False) writes
// it, which leaves U+2028 and U+2029 as they are.
func pyJSON(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	out := strings.TrimSuffix(b.String(), "\n")
	return strings.NewReplacer(`\u2028`, "\u2028", `\u2029`, "\u2029").Replace(out)
}

// dataFlags choose a dataset as zhllama train (and LLaMA-Factory) do.
type dataFlags struct {
	dataset, dir, template *string
	cutoff, maxSamples     *int
}

func addDataFlags(fs interface {
	String(name, value, usage string) *string
	Int(name string, value int, usage string) *int
}) dataFlags {
	return dataFlags{
		dataset:    fs.String("dataset", "", "data files, or names in DIR/dataset_info.json, comma-separated"),
		dir:        fs.String("dataset_dir", "data", "where dataset_info.json is"),
		template:   fs.String("template", "empty", "chat template the examples are rendered with (LLaMA-Factory takes empty when none is given)"),
		cutoff:     fs.Int("cutoff_len", 2048, "tokens of prompt and answer together at most"),
		maxSamples: fs.Int("max_samples", 0, "examples of each dataset at most (0: all)"),
	}
}

func (f dataFlags) check() error {
	if strings.TrimSpace(*f.dataset) == "" {
		return usagef("--dataset is required: a data file, or a name in --dataset_dir's dataset_info.json")
	}
	if *f.cutoff < 2 || *f.maxSamples < 0 {
		return usagef("--cutoff_len must be at least 2 and --max_samples not negative")
	}
	return nil
}

// config is a train.Config of stage with the data flags, for the data
// loaders train shares; cutoff_len stops at the model's context ctx.
func (f dataFlags) config(stage, model string, ctx int) *train.Config {
	if *f.cutoff > ctx {
		fmt.Fprintf(os.Stderr, "note: --cutoff_len %d is past the model's context %d: examples are cut to %d tokens\n", *f.cutoff, ctx, ctx)
		*f.cutoff = ctx
	}
	var names []string
	for _, n := range strings.Split(*f.dataset, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	return &train.Config{Stage: stage, ModelNameOrPath: model, Dataset: names, DatasetDir: *f.dir, Template: *f.template, CutoffLen: *f.cutoff, MaxSamples: *f.maxSamples}
}

// progress reports a long job's count on stderr with its rate and the
// time left, every 5 s at most.
type progress struct {
	name, unit   string
	total, shown int
	start, last  time.Time
}

func newProgress(name, unit string, total int) *progress {
	now := time.Now()
	return &progress{name: name, unit: unit, total: total, shown: -1, start: now, last: now}
}

// report shows done of the total; force shows it even within 5 s of the
// last. where is said before the count.
func (p *progress) report(done int, force bool, where string) {
	if done == p.shown || !force && time.Since(p.last) < 5*time.Second {
		return
	}
	p.last, p.shown = time.Now(), done
	rate := float64(done) / max(time.Since(p.start).Seconds(), 1e-9)
	line := fmt.Sprintf("%s: %s%d/%d %s, %.2f %s/s", p.name, where, done, p.total, p.unit, rate, p.unit)
	if done > 0 && done < p.total {
		line += fmt.Sprintf(", ETA %s", time.Duration(float64(p.total-done)/rate*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintln(os.Stderr, line)
}
