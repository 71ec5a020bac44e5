package train

import (
	"fmt"
	"io"

	"zhllama/corpus"
	"zhllama/dataset"
	"zhllama/spm"
	"zhllama/template"
)

// LoadPrompts reads c's instruction datasets for PPO: each example's
// prompt (history included) rendered with the template, as
// LLaMA-Factory's unsupervised processor builds it, cut by cutoff_len
// with room kept for the dataset's answer. The answers themselves are not
// kept: the policy writes its own.
func LoadPrompts(c *Config, tok *spm.Processor, log io.Writer) (Source, error) {
	out := newFlat(false)
	err := readOneTurns(c, tok, log, func(ids []int32, sl int) {
		if sl > 0 {
			labels := make([]int32, sl)
			for i := range labels {
				labels[i] = template.IgnoreIndex
			}
			out.add(ids[:sl], labels)
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Prediction is an instruction example to answer: its prompt, and the
// dataset's answer to score the output against, both cut as
// LLaMA-Factory's unsupervised processor cuts them for predict.
type Prediction struct{ Prompt, Answer []int32 }

// LoadPredictions reads c's instruction datasets for generation: the
// prompts as LoadPrompts renders them, each with its answer.
func LoadPredictions(c *Config, tok *spm.Processor, log io.Writer) ([]Prediction, error) {
	var out []Prediction
	err := readOneTurns(c, tok, log, func(ids []int32, sl int) {
		if sl > 0 {
			out = append(out, Prediction{Prompt: ids[:sl:sl], Answer: ids[sl:]})
		}
	})
	return out, err
}

// readOneTurns renders every example of c's datasets as one turn, the
// prompt and the first answer cut to cutoff_len together, and hands keep
// the ids with the prompt's length; max_samples counts each dataset's
// examples. It notes how many prompts had to be cut.
func readOneTurns(c *Config, tok *spm.Processor, log io.Writer, keep func(ids []int32, promptLen int)) error {
	tpl, err := template.Get(c.Template)
	if err != nil {
		return fmt.Errorf("key template: %w", err)
	}
	bad := badRecord(log)
	cut, kept := 0, 0
	for _, name := range c.Dataset {
		layout, path, err := dataset.Resolve(c.DatasetDir, name)
		if err != nil {
			return err
		}
		n := 0
		_, err = corpus.Read(path, corpus.ReadOptions{Bad: bad}, func(rec corpus.Record, loc corpus.Location) error {
			if layout.Formatting == "" {
				if layout, err = dataset.Guess(rec); err != nil {
					return fmt.Errorf("%s: %w", loc, err)
				}
			}
			ex, err := layout.Convert(rec)
			if err != nil {
				bad(loc, err)
				return nil
			}
			if len(ex.Response) == 0 {
				bad(loc, fmt.Errorf("no answer to size the prompt's share of cutoff_len by"))
				return nil
			}
			ids, labels, promptCut, err := oneTurn(tpl, tok, ex.Prompt, ex.Response[0], ex.System, ex.Tools, c.CutoffLen)
			if err != nil {
				return fmt.Errorf("%s: %w", loc, err)
			}
			sl := 0 // the prompt: the masked part
			for sl < len(labels) && labels[sl] == template.IgnoreIndex {
				sl++
			}
			if promptCut {
				cut++
			}
			if sl > 0 {
				n++
			}
			keep(ids, sl)
			if c.MaxSamples > 0 && n >= c.MaxSamples {
				return corpus.ErrStop
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("dataset %s: no usable prompt", name)
		}
		kept += n
	}
	if cut > 0 {
		fmt.Fprintf(log, "note: %d of %d prompts were cut to cutoff_len %d, their ends lost (the question may be gone): raise cutoff_len\n", cut, kept, c.CutoffLen)
	}
	return nil
}
