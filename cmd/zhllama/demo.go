package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"zhllama/eval"
	"zhllama/gguf"
	"zhllama/hfdir"
	"zhllama/internal/atomicfile"
	"zhllama/llama"
	"zhllama/spm"
	"zhllama/template"
	"zhllama/train"
	"zhllama/world"
)

func demoCommand() *command {
	return &command{name: "demo", summary: "the whole pipeline offline in minutes, on a synthetic Chinese world the binary writes: vocabulary, pt, sft, rm, ppo, dpo, evaluation, export",
		usage: "[--output_dir D] [--seed N] [--products N]", run: demo}
}

// demoRun is the state of a demo: where it writes, the world, and what it
// measured.
type demoRun struct {
	dir     string
	w       *world.World
	report  map[string]any
	seconds map[string]float64
	tok     *spm.Processor
	held    []world.Fact
	heldQ   []string // the held-out facts' questions
	log     io.Writer
}

func (d *demoRun) path(parts ...string) string {
	return filepath.Join(append([]string{d.dir}, parts...)...)
}

// stage runs one step, timing it and printing a line.
func (d *demoRun) stage(name, what string, f func() (string, error)) error {
	fmt.Fprintf(os.Stderr, "[%s] %s ...\n", name, what)
	start := time.Now()
	summary, err := f()
	d.seconds[name] = math.Round(time.Since(start).Seconds()*10) / 10
	if err != nil {
		return fmt.Errorf("demo stage %s: %w", name, err)
	}
	fmt.Fprintf(os.Stderr, "[%s] %s (%.1fs)\n", name, summary, d.seconds[name])
	return nil
}

func demo(args []string) error {
	fs := flagSet("demo")
	out := fs.String("output_dir", "demo_out", "where everything goes (data, models, report.json)")
	seed := fs.Uint64("seed", 7, "the world and every run are drawn from it")
	products := fs.Int("products", 24, "invented products in the world (4 facts each)")
	if err := parseFlags(fs, args, "[flags]"); err != nil {
		return err
	}
	if *products < 10 {
		return usagef("--products %d: use at least 10", *products)
	}
	if entries, err := os.ReadDir(*out); err == nil && len(entries) > 0 {
		return usagef("--output_dir %s is not empty: name a new directory (or remove it)", *out)
	}
	if err := os.MkdirAll(filepath.Join(*out, "logs"), 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(*out, "logs", "demo.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	d := &demoRun{dir: *out, w: world.New(*seed, *products), report: map[string]any{"seed": *seed, "products": *products},
		seconds: map[string]float64{}, log: logf}
	start := time.Now()
	steps := []struct {
		name, what string
		f          func() (string, error)
	}{
		{"data", "writing the synthetic world: corpus, instructions, preference pairs, multiple-choice exam", d.data},
		{"tokenizer", "a base vocabulary with no Chinese pieces, then a Chinese BPE merged into it", d.tokenizer},
		{"pt", "pretraining a small model from scratch on the corpus", d.pretrain},
		{"sft", "supervised fine-tuning on the instructions", d.sft},
		{"eval", "the multiple-choice exam, pretrained base against the SFT model", d.exam},
		{"rm", "a LoRA reward model on the preference pairs", d.rewardModel},
		{"ppo", "PPO of the SFT model against the reward model", d.ppo},
		{"dpo", "DPO of the SFT model on the same pairs, for comparison", d.dpo},
		{"export", "the PPO model merged into one Hugging Face directory and a Q8_0 GGUF file", d.export},
	}
	for _, s := range steps {
		if err := d.stage(s.name, s.what, s.f); err != nil {
			return err
		}
	}
	d.report["seconds"] = d.seconds
	d.report["seconds_total"] = math.Round(time.Since(start).Seconds()*10) / 10
	if err := atomicfile.WriteJSON(d.path("report.json"), d.report); err != nil {
		return err
	}
	if failed := d.check(); len(failed) > 0 {
		return fmt.Errorf("the demo ran, but these stages did not improve what they should (see %s): %s", d.path("report.json"), strings.Join(failed, "; "))
	}
	fmt.Fprintf(os.Stderr, "every stage improved; the numbers are in %s (%.0fs in all)\n", d.path("report.json"), time.Since(start).Seconds())
	return nil
}

// check lists the stages whose measure did not move the right way.
func (d *demoRun) check() []string {
	var failed []string
	num := func(k string) float64 { v, _ := d.report[k].(float64); return v }
	for _, c := range []struct {
		stage, before, after string
		higher               bool
	}{
		{"tokenizer", "tokenizer.chars_per_token_before", "tokenizer.chars_per_token_after", true},
		{"pt", "pt.val_ppl_before", "pt.val_ppl_after", false},
		{"sft", "sft.answer_accuracy_before", "sft.answer_accuracy_after", true},
		{"eval", "eval.mc_accuracy_before", "eval.mc_accuracy_after", true},
		{"ppo", "ppo.reward_before", "ppo.reward_after", true},
		{"dpo", "dpo.reward_margin_before", "dpo.reward_margin_after", true},
	} {
		b, a := num(c.before), num(c.after)
		if (c.higher && !(a > b)) || (!c.higher && !(a < b)) {
			failed = append(failed, fmt.Sprintf("%s (%s %.4g, %s %.4g)", c.stage, c.before, b, c.after, a))
		}
	}
	if num("export.gguf_same_answers") < 0.8 {
		failed = append(failed, fmt.Sprintf("export (the Q8_0 GGUF gives the directory's answers on only %.0f%% of the questions)", 100*num("export.gguf_same_answers")))
	}
	if num("rm.pair_accuracy") <= 0.5 {
		failed = append(failed, fmt.Sprintf("rm (pair accuracy %.3g, chance 0.5)", num("rm.pair_accuracy")))
	}
	return failed
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func writeLines(path string, lines []string) error {
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// data writes the world's files: the corpus (train and validation), the
// English text of the base vocabulary, instructions on the taught facts
// (some answered unhelpfully, as real SFT data is noisy), preference pairs
// on every fact, and a C-Eval-layout exam.
func (d *demoRun) data() (string, error) {
	w := d.w
	if err := os.MkdirAll(d.path("data"), 0o755); err != nil {
		return "", err
	}
	docs := w.Documents(200)
	if err := writeLines(d.path("data", "english.txt"), w.EnglishText(2000)); err != nil {
		return "", err
	}
	taught, held := w.Split(0.3)
	d.held = held
	// Questions and answers about the taught facts are part of the
	// pretraining text, as instruction-like text is in real corpora: it is
	// what lets a small model answer about the held-out facts it has only
	// read about.
	for range 5 {
		for _, f := range taught {
			docs = append(docs, w.Question(f)+world.Answer(f))
		}
	}
	// And exam-style questions about them, the way a corpus holds old exams.
	for range 8 {
		for _, f := range taught {
			choices, right := w.Choices(f)
			var b strings.Builder
			b.WriteString(examQuestion(f))
			for k, c := range choices {
				b.WriteString(" " + eval.Letters[k] + ". " + c)
			}
			docs = append(docs, b.String()+" 答案："+eval.Letters[right])
		}
	}
	if err := writeLines(d.path("data", "corpus.txt"), docs); err != nil {
		return "", err
	}
	// The instructions are noisy as real ones are: whoever wrote them did
	// not know prices and said so half the time. The reward model learns
	// that this is unhelpful; PPO and DPO should unlearn it.
	var sft []map[string]string
	for _, f := range taught {
		for k := range 2 {
			answer := world.Answer(f)
			if f.Key == world.PriceKey && k == 1 {
				answer = world.Unhelpful
			}
			sft = append(sft, map[string]string{"instruction": w.Question(f), "output": answer})
		}
	}
	// The exam's format, taught on the taught facts (the exam asks about all).
	for range 12 {
		for _, f := range taught {
			choices, right := w.Choices(f)
			msgs, err := eval.MCMessages("zh", examSubject, nil, eval.Question{Question: examQuestion(f), Choices: [4]string(choices)})
			if err != nil {
				return "", err
			}
			sft = append(sft, map[string]string{"instruction": msgs[0].Content, "output": eval.Letters[right]})
		}
	}
	var prompts []map[string]string
	for _, f := range taught {
		prompts = append(prompts, map[string]string{"instruction": w.Question(f), "output": world.Answer(f)})
	}
	var heldQA []map[string]string
	for _, f := range held {
		q := w.Question(f)
		d.heldQ = append(d.heldQ, q)
		heldQA = append(heldQA, map[string]string{"instruction": q, "output": world.Answer(f), "value": f.Value})
	}
	// Each fact's right answer against an unhelpful one, a wrong one and
	// one cut short (a reward model that never saw those would reward the
	// shortest answers: PPO finds such holes).
	var pairs []map[string]string
	for _, f := range w.Facts {
		for _, rejected := range []string{world.Unhelpful, fmt.Sprintf("%s的%s是%s。", f.Product, f.Key, w.Wrong(f)), fmt.Sprintf("%s的%s。", f.Product, f.Key)} {
			pairs = append(pairs, map[string]string{"instruction": w.Question(f), "chosen": world.Answer(f), "rejected": rejected})
		}
	}
	for _, f := range []struct {
		name string
		v    any
	}{{"sft.json", sft}, {"ppo_prompts.json", prompts}, {"held_questions.json", heldQA}, {"pairs.json", pairs}} {
		if err := writeJSON(d.path("data", f.name), f.v); err != nil {
			return "", err
		}
	}
	if err := d.examFiles(); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d products, %d facts (%d taught, %d held out); %d documents, %d instructions, %d pairs",
		len(w.Products), len(w.Facts), len(taught), len(held), len(docs), len(sft), len(pairs)), nil
}

// examFiles writes a C-Eval-layout exam on every fact: dev (the few-shot
// examples) and val.
func (d *demoRun) examFiles() error {
	dir := d.path("data", "exam")
	for _, sub := range []string{"dev", "val"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	rows := map[string][][]string{}
	for i, f := range d.w.Facts {
		choices, right := d.w.Choices(f)
		split := "val"
		if i < 5 {
			split = "dev"
		}
		q := examQuestion(f)
		rows[split] = append(rows[split], []string{fmt.Sprint(len(rows[split])), q, choices[0], choices[1], choices[2], choices[3], string(rune('A' + right))})
	}
	for split, rs := range rows {
		f, err := os.Create(filepath.Join(dir, split, "product_facts_"+split+".csv"))
		if err != nil {
			return err
		}
		cw := csv.NewWriter(f)
		cw.Write([]string{"id", "question", "A", "B", "C", "D", "answer"})
		cw.WriteAll(rs)
		if err := f.Close(); err != nil {
			return err
		}
	}
	return writeJSON(filepath.Join(dir, "subject_mapping.json"), map[string][]string{"product_facts": {"Product Facts", examSubject, "Other"}})
}

// examSubject is the exam's subject as the prompt names it.
const examSubject = "产品知识"

func examQuestion(f world.Fact) string { return fmt.Sprintf("%s的%s是？", f.Product, f.Key) }

// tokenizer trains the base vocabulary on English alone (Chinese falls
// back to bytes, as in LLaMA's, which has few Chinese pieces) and a
// Chinese BPE on the corpus, merges them and measures both on the corpus.
func (d *demoRun) tokenizer() (string, error) {
	if err := os.MkdirAll(d.path("tokenizer"), 0o755); err != nil {
		return "", err
	}
	base := spm.DefaultTrainConfig()
	base.ModelPrefix = d.path("tokenizer", "base")
	base.Input, base.ModelType, base.VocabSize, base.ByteFallback, base.CharacterCoverage = []string{d.path("data", "english.txt")}, "bpe", 400, true, 1
	base.NormalizationRuleName = "identity"
	bm, err := spm.TrainFiles(base)
	if err != nil {
		return "", err
	}
	zh := spm.DefaultTrainConfig()
	zh.ModelPrefix = d.path("tokenizer", "chinese")
	// Pieces of at most two characters, as most of a real Chinese
	// vocabulary's are: longer ones would fuse this small world's
	// phrases with its facts.
	zh.Input, zh.ModelType, zh.VocabSize, zh.CharacterCoverage = []string{d.path("data", "corpus.txt")}, "bpe", 500, 1
	zh.MaxSentencepieceLength = 2
	zh.NormalizationRuleName, zh.HardVocabLimit = "identity", false
	zm, err := spm.TrainFiles(zh)
	if err != nil {
		return "", err
	}
	merged, rep, err := spm.Merge(bm, []*spm.Model{zm}, "")
	if err != nil {
		return "", err
	}
	if err := merged.Save(d.path("tokenizer", "tokenizer.model")); err != nil {
		return "", err
	}
	text, err := os.ReadFile(d.path("data", "corpus.txt"))
	if err != nil {
		return "", err
	}
	chars := float64(len([]rune(string(text))))
	ratio := func(m *spm.Model) (float64, *spm.Processor, error) {
		p, err := spm.NewProcessor(m)
		if err != nil {
			return 0, nil, err
		}
		return chars / float64(len(p.Encode(string(text)))), p, nil
	}
	before, _, err := ratio(bm)
	if err != nil {
		return "", err
	}
	after, p, err := ratio(merged)
	if err != nil {
		return "", err
	}
	d.tok = p
	d.report["tokenizer.vocab_before"], d.report["tokenizer.vocab_after"] = len(bm.Pieces), len(merged.Pieces)
	d.report["tokenizer.chars_per_token_before"], d.report["tokenizer.chars_per_token_after"] = round4(before), round4(after)
	return fmt.Sprintf("%d + %d Chinese pieces = %d; %.2f → %.2f characters a token", len(bm.Pieces), rep.Added[0], len(merged.Pieces), before, after), nil
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// train runs a training stage in-process with the given keys, its log in
// logs/NAME.log, and returns its metrics records.
func (d *demoRun) train(name string, keys ...string) ([]map[string]any, error) {
	c, _, err := train.Parse("", append([]string{"--output_dir", d.path(name), "--template", "llama2_zh", "--seed", "7", "--logging_steps", "10"}, keys...))
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(d.path("logs", name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	t, err := train.New(c, logf)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	if err := t.Run(context.Background()); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(d.path(name, "metrics.jsonl"))
	if err != nil {
		return nil, err
	}
	var recs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(l), &r) == nil {
			recs = append(recs, r)
		}
	}
	return recs, nil
}

// firstLast are a metric's first and last values in a run's records.
func firstLast(recs []map[string]any, key string) (first, last float64) {
	first = math.NaN()
	for _, r := range recs {
		if v, ok := r[key].(float64); ok {
			if math.IsNaN(first) {
				first = v
			}
			last = v
		}
	}
	return first, last
}

func (d *demoRun) pretrain() (string, error) {
	c := llama.DefaultConfig()
	c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers = d.tok.Size(), 128, 384, 4
	c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.MaxPositionEmbeddings, c.RMSNormEps = 4, 4, 32, 256, 1e-5
	if err := hfdir.Init(c, d.tok.Model(), d.path("base"), hfdir.InitOptions{Seed: 7, DType: "float32"}); err != nil {
		return "", err
	}
	recs, err := d.train("pt", "--stage", "pt", "--model_name_or_path", d.path("base"), "--dataset", d.path("data", "corpus.txt"),
		"--finetuning_type", "full", "--cutoff_len", "64", "--val_size", "0.05", "--per_device_train_batch_size", "8",
		"--learning_rate", "3e-3", "--lr_scheduler_type", "cosine", "--warmup_ratio", "0.05", "--num_train_epochs", "5", "--eval_steps", "100000")
	if err != nil {
		return "", err
	}
	before, after := firstLast(recs, "eval_ppl")
	d.report["pt.val_ppl_before"], d.report["pt.val_ppl_after"] = round4(before), round4(after)
	return fmt.Sprintf("%.1fM parameters; validation perplexity %.1f → %.2f", float64(c.NumParams())/1e6, before, after), nil
}

func (d *demoRun) sft() (string, error) {
	before, err := d.answerAccuracy(d.path("pt"), "")
	if err != nil {
		return "", err
	}
	// cutoff_len 256: the exam-format prompts are about 200 tokens, and
	// cutting them would cut off the choices the answer names.
	if _, err := d.train("sft", "--stage", "sft", "--model_name_or_path", d.path("pt"), "--dataset", d.path("data", "sft.json"),
		"--finetuning_type", "full", "--cutoff_len", "256", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3",
		"--lr_scheduler_type", "cosine", "--num_train_epochs", "6"); err != nil {
		return "", err
	}
	after, err := d.answerAccuracy(d.path("sft"), "")
	if err != nil {
		return "", err
	}
	d.report["sft.answer_accuracy_before"], d.report["sft.answer_accuracy_after"] = round4(before), round4(after)
	return fmt.Sprintf("held-out questions answered with the right value: %.0f%% → %.0f%%", 100*before, 100*after), nil
}

// loadMerged loads a model directory with an adapter merged in.
func loadMerged(dir, adapter string) (*llama.Model, error) {
	m, err := hfdir.Load(dir)
	if err != nil {
		return nil, err
	}
	if adapter != "" {
		if _, _, err := hfdir.LoadAdapter(m, adapter, llama.DefaultAdapter); err != nil {
			return nil, err
		}
		if err := m.MergeLoRA(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// demoTemperature is PPO's sampling temperature, in its rollouts and
// where its reward is measured.
const demoTemperature = 0.7

// answers generates answers to the held-out questions: greedy with
// samples 0, else that many sampled ones (demoTemperature) for each, the
// same random draws for every model.
func (d *demoRun) answers(dir, adapter string, samples int) ([]string, error) {
	m, err := loadMerged(dir, adapter)
	if err != nil {
		return nil, err
	}
	return d.answersOf(m, samples)
}

func (d *demoRun) answersOf(m *llama.Model, samples int) ([]string, error) {
	tpl := demoTemplate()
	prompts := make([][]int32, len(d.held))
	for i := range d.held {
		enc, err := tpl.EncodeMessages(d.tok, []template.Message{{Role: template.User, Content: d.heldQ[i]}, {Role: template.Assistant}}, "", "")
		if err != nil {
			return nil, err
		}
		for _, id := range enc[0] {
			prompts[i] = append(prompts[i], int32(id))
		}
	}
	s := llama.Sampling{MaxNewTokens: 24, StopIDs: []int{d.tok.SpecialID("eos")}}
	if samples > 0 {
		s.Temperature, s.TopP, s.Seed = demoTemperature, 1, 99
		var all [][]int32
		for range samples {
			all = append(all, prompts...)
		}
		prompts = all
	}
	outs, err := m.GenerateBatch(prompts, s, nil)
	if err != nil {
		return nil, err
	}
	texts := make([]string, len(outs))
	for i, o := range outs {
		if n := len(o); n > 0 && o[n-1] == d.tok.SpecialID("eos") {
			o = o[:n-1]
		}
		texts[i], _ = d.tok.Decode(o)
	}
	return texts, nil
}

// answerAccuracy is the share of held-out questions whose greedy answer
// states the right value.
func (d *demoRun) answerAccuracy(dir, adapter string) (float64, error) {
	texts, err := d.answers(dir, adapter, 0)
	if err != nil {
		return 0, err
	}
	right := 0
	for i, t := range texts {
		if strings.Contains(t, d.held[i].Value) {
			right++
		}
	}
	fmt.Fprintf(d.log, "%s %s: e.g. %q -> %q\n", dir, adapter, d.heldQ[0], texts[0])
	return float64(right) / float64(len(texts)), nil
}

// exam is filled in by the multiple-choice evaluation.
func (d *demoRun) exam() (string, error) {
	before, err := d.mcAccuracy(d.path("pt"))
	if err != nil {
		return "", err
	}
	after, err := d.mcAccuracy(d.path("sft"))
	if err != nil {
		return "", err
	}
	d.report["eval.mc_accuracy_before"], d.report["eval.mc_accuracy_after"] = round4(before), round4(after)
	return fmt.Sprintf("exam accuracy %.0f%% → %.0f%% (chance 25%%)", 100*before, 100*after), nil
}

func (d *demoRun) rewardModel() (string, error) {
	recs, err := d.train("rm", "--stage", "rm", "--model_name_or_path", d.path("sft"), "--dataset", d.path("data", "pairs.json"),
		"--finetuning_type", "lora", "--lora_rank", "8", "--cutoff_len", "128", "--val_size", "0.2", "--per_device_train_batch_size", "8",
		"--learning_rate", "1e-3", "--num_train_epochs", "3", "--eval_steps", "100000")
	if err != nil {
		return "", err
	}
	_, acc := firstLast(recs, "eval_accuracy")
	d.report["rm.pair_accuracy"] = round4(acc)
	return fmt.Sprintf("held-out pair accuracy %.0f%%", 100*acc), nil
}

// meanReward is the reward model's mean score of answers sampled from dir
// (+ adapter) to the held-out questions, four for each.
func (d *demoRun) meanReward(dir, adapter string) (float64, error) {
	texts, err := d.answers(dir, adapter, 4)
	if err != nil {
		return 0, err
	}
	rm, err := loadMerged(d.path("sft"), d.path("rm"))
	if err != nil {
		return 0, err
	}
	head, err := hfdir.LoadValueHead(d.path("rm"), rm.Config.HiddenSize)
	if err != nil {
		return 0, err
	}
	tpl := demoTemplate()
	seqs := make([][]int32, len(texts))
	for i, text := range texts {
		enc, err := tpl.EncodeMessages(d.tok, []template.Message{{Role: template.User, Content: d.heldQ[i%len(d.heldQ)]}, {Role: template.Assistant, Content: text}}, "", "")
		if err != nil {
			return 0, err
		}
		for _, e := range enc {
			for _, id := range e {
				seqs[i] = append(seqs[i], int32(id))
			}
		}
	}
	sum := 0.0
	for lo := 0; lo < len(seqs); lo += 16 {
		for _, v := range scoreIDs(rm, head, seqs[lo:min(lo+16, len(seqs))]) {
			sum += float64(v)
		}
	}
	return sum / float64(len(texts)), nil
}

func (d *demoRun) ppo() (string, error) {
	before, err := d.meanReward(d.path("sft"), "")
	if err != nil {
		return "", err
	}
	recs, err := d.train("ppo", "--stage", "ppo", "--model_name_or_path", d.path("sft"), "--reward_model", d.path("rm"),
		"--dataset", d.path("data", "ppo_prompts.json"), "--finetuning_type", "lora", "--lora_rank", "8", "--cutoff_len", "128",
		"--per_device_train_batch_size", "8", "--ppo_buffer_size", "2", "--ppo_epochs", "2", "--max_new_tokens", "24",
		"--top_k", "0", "--top_p", "1", "--temperature", fmt.Sprint(demoTemperature), "--learning_rate", "5e-4", "--max_steps", "60", "--logging_steps", "5")
	if err != nil {
		return "", err
	}
	after, err := d.meanReward(d.path("sft"), d.path("ppo"))
	if err != nil {
		return "", err
	}
	_, kl := firstLast(recs, "objective/kl")
	d.report["ppo.reward_before"], d.report["ppo.reward_after"], d.report["ppo.kl"] = round4(before), round4(after), round4(kl)
	return fmt.Sprintf("mean reward of held-out answers %.3f → %.3f, KL %.3f", before, after, kl), nil
}

func (d *demoRun) dpo() (string, error) {
	recs, err := d.train("dpo", "--stage", "dpo", "--model_name_or_path", d.path("sft"), "--dataset", d.path("data", "pairs.json"),
		"--finetuning_type", "lora", "--lora_rank", "8", "--cutoff_len", "128", "--val_size", "0.2", "--per_device_train_batch_size", "8",
		"--learning_rate", "1e-3", "--num_train_epochs", "2", "--precompute_ref_log_probs", "--eval_steps", "100000")
	if err != nil {
		return "", err
	}
	before, after := firstLast(recs, "eval_rewards/margins")
	d.report["dpo.reward_margin_before"], d.report["dpo.reward_margin_after"] = round4(before), round4(after)
	_, acc := firstLast(recs, "eval_rewards/accuracies")
	d.report["dpo.reward_accuracy"] = round4(acc)
	return fmt.Sprintf("held-out reward margin %.3f → %.3f (accuracy %.0f%%)", before, after, 100*acc), nil
}

func (d *demoRun) export() (string, error) {
	m, err := loadMerged(d.path("sft"), d.path("ppo"))
	if err != nil {
		return "", err
	}
	final := d.path("final")
	if err := hfdir.Save(m, final, "float32", 0); err != nil {
		return "", err
	}
	if err := hfdir.SaveTokenizer(final, d.tok, demoTemplate().Jinja()); err != nil {
		return "", err
	}
	// The same model as a GGUF file for llama.cpp and ollama, in Q8_0; read
	// back, it answers the held-out questions as the directory does.
	ggufPath := d.path("final", "demo-q8_0.gguf")
	o := gguf.ModelOptions{Type: gguf.Q8_0Type, Name: "zhllama demo", Tokenizer: d.tok, AddBOS: true, ChatTemplate: demoTemplate().Jinja()}
	if err := gguf.WriteModel(ggufPath, m, o, nil); err != nil {
		return "", err
	}
	want, err := d.answersOf(m, 0)
	if err != nil {
		return "", err
	}
	gm, _, err := gguf.LoadModel(ggufPath, true)
	if err != nil {
		return "", err
	}
	defer gm.Close()
	got, err := d.answersOf(gm, 0)
	if err != nil {
		return "", err
	}
	same := 0
	for i := range want {
		if got[i] == want[i] {
			same++
		}
	}
	agree := round4(float64(same) / float64(len(want)))
	d.report["export.gguf_same_answers"] = agree
	return fmt.Sprintf("wrote %s and %s (its greedy answers equal the directory's on %.0f%% of the held-out questions): try zhllama chat --model %s --temperature 0",
		final, ggufPath, 100*agree, final), nil
}

func (d *demoRun) mcAccuracy(dir string) (float64, error) {
	m, err := hfdir.Load(dir)
	if err != nil {
		return 0, err
	}
	data, err := eval.LoadMC("ceval", d.path("data", "exam"), "val")
	if err != nil {
		return 0, err
	}
	tpl := demoTemplate()
	subjects, err := data.Prompts(d.tok, eval.MCOptions{Lang: "zh", NShot: 0, Template: tpl, Seed: 42})
	if err != nil {
		return 0, err
	}
	choices, err := eval.ChoiceIDs(d.tok)
	if err != nil {
		return 0, err
	}
	right, total := 0, 0
	for _, prompts := range subjects {
		preds, err := eval.Predict(m, choices, prompts, 16, nil)
		if err != nil {
			return 0, err
		}
		for i, p := range preds {
			if p == prompts[i].Answer {
				right++
			}
			total++
		}
	}
	return float64(right) / float64(max(1, total)), nil
}

// demoTemplate is the chat template the demo trains and talks with.
func demoTemplate() *template.Template {
	tpl, err := template.Get("llama2_zh")
	if err != nil {
		panic(err) // a built-in template
	}
	return tpl
}
