package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"zhllama/corpus"
	"zhllama/dataset"
	"zhllama/spm"
	"zhllama/template"
)

func dataPreview(args []string) error {
	fs := flagSet("data preview")
	dataName := fs.String("dataset", "", "a data file, or a dataset name in --dataset_dir's dataset_info.json")
	datasetDir := fs.String("dataset_dir", "data", "directory of dataset_info.json")
	tplName := fs.String("template", "llama2_zh", "chat template: "+strings.Join(template.Names(), ", "))
	tok := fs.String("tokenizer", "", "tokenizer.model")
	n := fs.Int("n", 3, "examples to show")
	cutoff := fs.Int("cutoff_len", 1024, "longest example in tokens")
	asJSON := fs.Bool("json", false, "print one JSON object per example (input_ids, labels) instead of text")
	trainOnPrompt := fs.Bool("train_on_prompt", false, "learn the prompts too")
	maskHistory := fs.Bool("mask_history", false, "learn the last turn only")
	if err := parseFlags(fs, args, "--dataset F --template T --tokenizer M [flags]"); err != nil {
		return err
	}
	if *dataName == "" || *tok == "" {
		return usagef("--dataset and --tokenizer are required")
	}
	tpl, err := template.Get(*tplName)
	if err != nil {
		return usageError{err.Error()}
	}
	p, err := loadProcessor(*tok)
	if err != nil {
		return err
	}
	layout, path, err := dataset.Resolve(*datasetDir, *dataName)
	if err != nil {
		return err
	}
	shown := 0
	opts := template.SupervisedOptions{CutoffLen: *cutoff, TrainOnPrompt: *trainOnPrompt, MaskHistory: *maskHistory}
	skipped, err := corpus.Read(path, corpus.ReadOptions{Bad: func(loc corpus.Location, err error) {
		fmt.Fprintf(os.Stderr, "skipped %s: %v\n", loc, err)
	}}, func(rec corpus.Record, loc corpus.Location) error {
		if layout.Formatting == "" {
			if layout, err = dataset.Guess(rec); err != nil {
				return fmt.Errorf("%s: %w", loc, err)
			}
		}
		ex, err := layout.Convert(rec)
		if err != nil {
			fmt.Fprintf(os.Stderr, "skipped %s: %v\n", loc, err)
			return nil
		}
		type seq struct {
			name        string
			ids, labels []int
		}
		var seqs []seq
		if layout.Ranking {
			pair, err := tpl.Pairwise(p, ex.Prompt, ex.Response[0], ex.Response[1], ex.System, ex.Tools, *cutoff)
			if err != nil {
				return fmt.Errorf("%s: %w", loc, err)
			}
			seqs = []seq{{"chosen", pair.ChosenIDs, pair.ChosenLabels}, {"rejected", pair.RejectedIDs, pair.RejectedLabels}}
		} else {
			ids, labels, err := tpl.Supervised(p, append(ex.Prompt, ex.Response...), ex.System, ex.Tools, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", loc, err)
			}
			seqs = []seq{{"", ids, labels}}
		}
		for _, s := range seqs {
			if *asJSON {
				obj := map[string]any{"input_ids": s.ids, "labels": s.labels}
				if s.name != "" {
					obj["kind"] = s.name
				}
				b, _ := json.Marshal(obj)
				fmt.Println(string(b))
				continue
			}
			trained := 0
			for _, l := range s.labels {
				if l != template.IgnoreIndex {
					trained++
				}
			}
			fmt.Printf("=== %s %s: %d tokens, %d trained on (masked text in ⟦ ⟧) ===\n%s\n\n", loc, s.name, len(s.ids), trained, renderMasked(p, s.ids, s.labels))
		}
		if shown++; shown >= *n {
			return corpus.ErrStop
		}
		return nil
	})
	if err != nil {
		return err
	}
	if shown == 0 {
		return fmt.Errorf("%s: no usable example (%d malformed records)", path, skipped)
	}
	return nil
}

// renderMasked shows ids as text with the masked runs in ⟦ ⟧; special
// pieces are shown by name and byte pieces are joined into characters.
func renderMasked(p *spm.Processor, ids, labels []int) string {
	var b strings.Builder
	var bytes []byte
	flush := func() {
		spm.WriteBytesText(&b, bytes)
		bytes = bytes[:0]
	}
	inMask := false
	for i, id := range ids {
		m := labels[i] == template.IgnoreIndex
		if m != inMask {
			flush()
			if m {
				b.WriteString("⟦")
			} else {
				b.WriteString("⟧")
			}
			inMask = m
		}
		piece := p.IDToPiece(id)
		if p.Type(id) == spm.Byte {
			var v byte
			fmt.Sscanf(piece, "<0x%02X>", &v)
			bytes = append(bytes, v)
			continue
		}
		flush()
		b.WriteString(strings.ReplaceAll(piece, spm.SpaceSymbol, " "))
	}
	flush()
	if inMask {
		b.WriteString("⟧")
	}
	return b.String()
}
