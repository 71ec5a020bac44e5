package train

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"zhllama/corpus"
	"zhllama/dataset"
	"zhllama/spm"
	"zhllama/template"
)

// Example is one training sequence: ids, and the labels the loss learns
// (IgnoreIndex where it learns nothing), of the same length.
type Example struct {
	IDs, Labels []int32
}

// Tokens counts the labels that are learned.
func (e Example) Tokens() int {
	n := 0
	for _, l := range e.Labels[min(1, len(e.Labels)):] { // the first position predicts nothing
		if l != template.IgnoreIndex {
			n++
		}
	}
	return n
}

// LoadData builds the examples of c's datasets with tok and splits off the
// validation set (val_size: a fraction, or a count when 1 or more).
func LoadData(c *Config, tok *spm.Processor) (trainSet, valSet []Example, err error) {
	var all []Example
	for _, name := range c.Dataset {
		var exs []Example
		var err error
		if c.Stage == "pt" {
			exs, err = pretrainExamples(c, tok, name)
		} else {
			exs, err = supervisedExamples(c, tok, name)
		}
		if err != nil {
			return nil, nil, err
		}
		if len(exs) == 0 {
			return nil, nil, fmt.Errorf("dataset %s: no usable example", name)
		}
		all = append(all, exs...)
	}
	if c.ValSize == 0 {
		return all, nil, nil
	}
	n := int(c.ValSize)
	if c.ValSize < 1 {
		n = int(c.ValSize*float64(len(all)) + 0.5)
	}
	if n < 1 || n >= len(all) {
		return nil, nil, fmt.Errorf("val_size %g leaves %d of %d examples for validation; it must leave some for each", c.ValSize, n, len(all))
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x5b1))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all[n:], all[:n], nil
}

// pretrainExamples reads a packed token directory (made by data pack), or
// documents of text, each [BOS] ids [EOS]: concatenated and cut into
// blocks of cutoff_len with packing, else each cut to cutoff_len alone.
func pretrainExamples(c *Config, tok *spm.Processor, name string) ([]Example, error) {
	_, path, err := dataset.Resolve(c.DatasetDir, name)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(path, "index.json")); err == nil {
		return packedExamples(c, tok, path)
	}
	bos, eos := tok.SpecialID("bos"), tok.SpecialID("eos")
	var exs []Example
	var stream []int32
	docs := 0
	_, err = corpus.Read(path, corpus.ReadOptions{Bad: badRecord}, func(rec corpus.Record, loc corpus.Location) error {
		text, err := corpus.DocumentText(rec)
		if err != nil {
			return fmt.Errorf("%s: %w", loc, err)
		}
		var ids []int32
		if bos >= 0 {
			ids = append(ids, int32(bos))
		}
		for _, id := range tok.Encode(text) {
			ids = append(ids, int32(id))
		}
		if eos >= 0 {
			ids = append(ids, int32(eos))
		}
		docs++
		if *c.Packing {
			stream = append(stream, ids...)
			for len(stream) >= c.CutoffLen {
				block := append([]int32(nil), stream[:c.CutoffLen]...)
				exs = append(exs, Example{block, block})
				stream = stream[c.CutoffLen:]
			}
		} else {
			ids = ids[:min(len(ids), c.CutoffLen)]
			exs = append(exs, Example{ids, ids})
		}
		if c.MaxSamples > 0 && len(exs) >= c.MaxSamples {
			return corpus.ErrStop
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if *c.Packing && len(exs) == 0 && docs > 0 {
		return nil, fmt.Errorf("dataset %s: %d documents make %d tokens, less than one block of cutoff_len %d", name, docs, len(stream), c.CutoffLen)
	}
	return exs, nil
}

func packedExamples(c *Config, tok *spm.Processor, dir string) ([]Example, error) {
	p, err := corpus.OpenPacked(dir)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if p.Index.VocabSize > tok.Size() {
		return nil, fmt.Errorf("%s: packed with a vocabulary of %d pieces, but the tokenizer has %d: pack again with this tokenizer", dir, p.Index.VocabSize, tok.Size())
	}
	n := p.Blocks()
	if c.MaxSamples > 0 {
		n = min(n, int64(c.MaxSamples))
	}
	exs := make([]Example, 0, n)
	for i := int64(0); i < n; i++ {
		b, err := p.Block(i, nil)
		if err != nil {
			return nil, err
		}
		b = b[:min(len(b), c.CutoffLen)]
		exs = append(exs, Example{b, b})
	}
	return exs, nil
}

// supervisedExamples renders each record with the chat template, prompts
// masked.
func supervisedExamples(c *Config, tok *spm.Processor, name string) ([]Example, error) {
	layout, path, err := dataset.Resolve(c.DatasetDir, name)
	if err != nil {
		return nil, err
	}
	tpl, err := template.Get(c.Template)
	if err != nil {
		return nil, fmt.Errorf("key template: %w", err)
	}
	opts := template.SupervisedOptions{CutoffLen: c.CutoffLen, TrainOnPrompt: c.TrainOnPrompt, MaskHistory: c.MaskHistory}
	var exs []Example
	_, err = corpus.Read(path, corpus.ReadOptions{Bad: badRecord}, func(rec corpus.Record, loc corpus.Location) error {
		if layout.Formatting == "" {
			if layout, err = dataset.Guess(rec); err != nil {
				return fmt.Errorf("%s: %w", loc, err)
			}
		}
		if layout.Ranking {
			return fmt.Errorf("%s: %s is a ranking (preference) dataset; stage sft needs instructions with one answer", loc, name)
		}
		ex, err := layout.Convert(rec)
		if err != nil {
			badRecord(loc, err)
			return nil
		}
		ids, labels, err := tpl.Supervised(tok, append(ex.Prompt, ex.Response...), ex.System, ex.Tools, opts)
		if err != nil {
			return fmt.Errorf("%s: %w", loc, err)
		}
		e := Example{make([]int32, len(ids)), make([]int32, len(ids))}
		for i := range ids {
			e.IDs[i], e.Labels[i] = int32(ids[i]), int32(labels[i])
		}
		if e.Tokens() > 0 {
			exs = append(exs, e)
		}
		if c.MaxSamples > 0 && len(exs) >= c.MaxSamples {
			return corpus.ErrStop
		}
		return nil
	})
	return exs, err
}

func badRecord(loc corpus.Location, err error) {
	fmt.Fprintf(os.Stderr, "skipped %s: %v\n", loc, err)
}

func roundUp(t int) int { return (t + 7) / 8 * 8 }

// Batch is a right-padded batch of examples, [B × T].
type Batch struct {
	B, T   int
	IDs    []int32
	Labels []int32
	Valid  []bool
}

// MakeBatch pads exs with pad (labels IgnoreIndex) to the longest of them,
// rounded up to a multiple of 8 so that few batch shapes occur.
func MakeBatch(exs []Example, pad int32) Batch {
	t := 0
	for _, e := range exs {
		t = max(t, len(e.IDs))
	}
	t = roundUp(t)
	b := Batch{B: len(exs), T: t, IDs: make([]int32, len(exs)*t), Labels: make([]int32, len(exs)*t), Valid: make([]bool, len(exs)*t)}
	for i, e := range exs {
		for j := 0; j < t; j++ {
			k := i*t + j
			if j < len(e.IDs) {
				b.IDs[k], b.Labels[k], b.Valid[k] = e.IDs[j], e.Labels[j], true
			} else {
				b.IDs[k], b.Labels[k] = pad, template.IgnoreIndex
			}
		}
	}
	return b
}
