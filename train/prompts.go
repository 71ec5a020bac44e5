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
	tpl, err := template.Get(c.Template)
	if err != nil {
		return nil, fmt.Errorf("key template: %w", err)
	}
	out := newFlat(false)
	bad := badRecord(log)
	cut := 0
	for _, name := range c.Dataset {
		layout, path, err := dataset.Resolve(c.DatasetDir, name)
		if err != nil {
			return nil, err
		}
		before := out.Len()
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
				out.add(ids[:sl], labels[:sl])
			}
			if c.MaxSamples > 0 && out.Len()-before >= c.MaxSamples {
				return corpus.ErrStop
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if out.Len() == before {
			return nil, fmt.Errorf("dataset %s: no usable prompt", name)
		}
	}
	if cut > 0 {
		fmt.Fprintf(log, "note: %d of %d prompts were cut to cutoff_len %d, their ends lost (the question may be gone): raise cutoff_len\n", cut, out.Len(), c.CutoffLen)
	}
	return out, nil
}
