package train

import (
	"fmt"
	"io"

	"zhllama/corpus"
	"zhllama/dataset"
	"zhllama/spm"
	"zhllama/template"
)

// Pairs are preference data by index: a prompt with a chosen and a
// rejected answer, as prompt+answer sequences with the prompt masked.
type Pairs struct {
	chosen, rejected *flat
	idx              []int32 // a subset, in order; nil: all
}

// Len is the number of pairs.
func (p *Pairs) Len() int {
	if p.idx != nil {
		return len(p.idx)
	}
	return p.chosen.Len()
}

// Pair returns pair i.
func (p *Pairs) Pair(i int) (chosen, rejected Example) {
	i = p.base(i)
	return p.chosen.Example(i), p.rejected.Example(i)
}

// base is pair i's row in the arrays a subset shares with the whole set.
func (p *Pairs) base(i int) int {
	if p.idx != nil {
		return int(p.idx[i])
	}
	return i
}

// MaxLen bounds the sequences' length.
func (p *Pairs) MaxLen() int { return max(p.chosen.MaxLen(), p.rejected.MaxLen()) }

func (p *Pairs) subset(idx []int32) *Pairs { return &Pairs{p.chosen, p.rejected, idx} }

// LoadPairs reads c's preference datasets (every ranking layout the
// dataset package knows) rendered with the template as LLaMA-Factory's
// pairwise processor renders them, and splits off the validation pairs.
func LoadPairs(c *Config, tok *spm.Processor, log io.Writer) (trainSet, valSet *Pairs, err error) {
	all := &Pairs{chosen: newFlat(false), rejected: newFlat(false)}
	tpl, err := template.Get(c.Template)
	if err != nil {
		return nil, nil, fmt.Errorf("key template: %w", err)
	}
	bad := badRecord(log)
	for _, name := range c.Dataset {
		layout, path, err := dataset.Resolve(c.DatasetDir, name)
		if err != nil {
			return nil, nil, err
		}
		before := all.Len()
		_, err = corpus.Read(path, corpus.ReadOptions{Bad: bad}, func(rec corpus.Record, loc corpus.Location) error {
			if layout.Formatting == "" {
				if layout, err = dataset.Guess(rec); err != nil {
					return fmt.Errorf("%s: %w", loc, err)
				}
			}
			if !layout.Ranking {
				return fmt.Errorf("%s: %s has one answer per prompt; stage %s needs preference pairs (chosen and rejected)", loc, name, c.Stage)
			}
			ex, err := layout.Convert(rec)
			if err != nil {
				bad(loc, err)
				return nil
			}
			if len(ex.Response) != 2 || ex.Response[0].Content == ex.Response[1].Content {
				bad(loc, fmt.Errorf("the chosen and rejected answers are the same: the pair teaches nothing"))
				return nil
			}
			p, err := tpl.Pairwise(tok, ex.Prompt, ex.Response[0], ex.Response[1], ex.System, ex.Tools, c.CutoffLen)
			if err != nil {
				return fmt.Errorf("%s: %w", loc, err)
			}
			all.chosen.add(spm.Int32s(p.ChosenIDs), spm.Int32s(p.ChosenLabels))
			all.rejected.add(spm.Int32s(p.RejectedIDs), spm.Int32s(p.RejectedLabels))
			if c.MaxSamples > 0 && all.Len()-before >= c.MaxSamples {
				return corpus.ErrStop
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		if all.Len() == before {
			return nil, nil, fmt.Errorf("dataset %s: no usable pair", name)
		}
	}
	trainIdx, valIdx, err := split(c, all.Len())
	if err != nil || valIdx == nil {
		return all, nil, err
	}
	return all.subset(trainIdx), all.subset(valIdx), nil
}
