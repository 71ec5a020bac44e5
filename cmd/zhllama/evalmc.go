package main

import (
	"fmt"
	"os"
	"slices"

	"zhllama/eval"
	"zhllama/template"
)

const evalMCUsage = "--model D [--adapter A] --task ceval|cmmlu|mmlu --task_dir DIR [--split val|test] [--n_shot N] [--lang zh|en] [--template T] [--save_dir OUT] [--batch N]"

func evalMC(args []string) error {
	fs := flagSet("eval mc")
	mf := addModelFlags(fs)
	task := fs.String("task", "", "benchmark: ceval, cmmlu or mmlu")
	dir := fs.String("task_dir", "", "the benchmark's directory: its CSV layout (C-Eval: {dev,val,test}/{subject}_{split}.csv and subject_mapping.json; CMMLU: {dev,test}/{subject}.csv; MMLU: {dev,val,test}/{subject}_{split}.csv) or a Hub copy's Parquet files under {subject}/")
	split := fs.String("split", "", "split to evaluate: val or test (default val for ceval, test for cmmlu and mmlu)")
	nShot := fs.Int("n_shot", 5, "exemplars from the dev split before each question")
	lang := fs.String("lang", "", "prompt language: zh or en (default zh for ceval and cmmlu, en for mmlu)")
	tplName := fs.String("template", "empty", "chat template the prompts are rendered with (LLaMA-Factory takes empty when none is given)")
	saveDir := fs.String("save_dir", "", "write results.json and results.log here (a new or empty directory)")
	batch := fs.Int("batch", 4, "questions per forward pass")
	seed := fs.Uint("seed", 42, "seed of the exemplar draws (LLaMA-Factory's evaluation seed)")
	if err := parseFlags(fs, args, evalMCUsage); err != nil {
		return err
	}
	if *task == "" || *dir == "" {
		return usagef("--task and --task_dir are required")
	}
	splits, err := eval.Splits(*task)
	if err != nil {
		return usagef("--task: %v", err)
	}
	if *split == "" {
		*split = map[string]string{eval.TaskCEval: "val", eval.TaskCMMLU: "test", eval.TaskMMLU: "test"}[*task]
	}
	if *split == "dev" || !slices.Contains(splits, *split) {
		return usagef("--split %q: %s evaluates %v (dev holds the exemplars)", *split, *task, splits[1:])
	}
	if *lang == "" {
		*lang = map[string]string{eval.TaskCEval: "zh", eval.TaskCMMLU: "zh", eval.TaskMMLU: "en"}[*task]
	}
	if !slices.Contains(eval.MCLangs, *lang) {
		return usagef("--lang %q: use zh or en", *lang)
	}
	if *nShot < 0 || *batch < 1 {
		return usagef("--n_shot must be at least 0 and --batch at least 1")
	}
	if *seed > 1<<32-1 {
		return usagef("--seed %d: NumPy's seeds are below 2^32", *seed)
	}
	tpl, err := template.Get(*tplName)
	if err != nil {
		return usagef("--template: %v", err)
	}
	if *saveDir != "" {
		if err := eval.CheckSaveDir(*saveDir); err != nil {
			return usagef("--save_dir: %v", err)
		}
	}
	data, err := eval.LoadMC(*task, *dir, *split)
	if err != nil {
		return err
	}
	m, p, err := mf.load()
	if err != nil {
		return err
	}
	prompts, err := data.Prompts(p, eval.MCOptions{Lang: *lang, NShot: *nShot, Template: tpl, Seed: uint32(*seed)})
	if err != nil {
		return err
	}
	choices, err := eval.ChoiceIDs(p)
	if err != nil {
		return err
	}
	long, longest := 0, 0
	for _, ps := range prompts {
		for _, q := range ps {
			longest = max(longest, len(q.IDs))
			if len(q.IDs) > m.Config.MaxPositionEmbeddings {
				long++
			}
		}
	}
	if long > 0 {
		fmt.Fprintf(os.Stderr, "note: %d prompts are longer than the model's context of %d tokens (the longest %d); they run whole, as LLaMA-Factory runs them\n", long, m.Config.MaxPositionEmbeddings, longest)
	}
	total := data.Questions()
	fmt.Fprintf(os.Stderr, "eval mc: %s %s, %d subjects, %d questions, %d-shot, template %s, language %s\n", *task, *split, len(data.Subjects), total, *nShot, tpl.Name, *lang)
	res := &eval.MCResult{}
	pr, done := newProgress("eval mc", "questions", total), 0
	report := func(si int, force bool) {
		pr.report(done, force, fmt.Sprintf("subject %d/%d %s, ", si+1, len(data.Subjects), data.Subjects[si].Key))
	}
	for si, s := range data.Subjects {
		preds, err := eval.Predict(m, choices, prompts[si], *batch, func(n int) { done += n; report(si, false) })
		if err != nil {
			return fmt.Errorf("subject %s: %w", s.Key, err)
		}
		answers := make([]string, len(s.Eval))
		for i, q := range s.Eval {
			answers[i] = q.Answer
		}
		res.Subjects = append(res.Subjects, s.Subject)
		res.Preds = append(res.Preds, preds)
		res.Answers = append(res.Answers, answers)
		report(si, true)
	}
	table := res.Table()
	fmt.Println(table)
	if *saveDir != "" {
		if err := res.Save(*saveDir); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s/results.json and results.log\n", *saveDir)
	}
	return nil
}
