package train

import (
	"fmt"
	"io"
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

// Source is training data by index, so that the loop orders, batches and
// (across ranks) shards examples by arithmetic on indices without copying
// them.
type Source interface {
	Len() int
	// Example returns example i; its slices may be shared with the source.
	Example(i int) Example
	// MaxLen bounds the examples' length.
	MaxLen() int
	io.Closer
}

// flat holds examples back to back in two arrays.
type flat struct {
	ids, labels []int32 // labels nil: the labels are the ids (pretraining)
	off         []int   // example i is [off[i], off[i+1])
	maxLen      int
}

func newFlat(pretrain bool) *flat {
	f := &flat{off: []int{0}}
	if !pretrain {
		f.labels = []int32{}
	}
	return f
}

func (f *flat) add(ids, labels []int32) {
	f.ids = append(f.ids, ids...)
	if f.labels != nil {
		f.labels = append(f.labels, labels...)
	}
	f.off = append(f.off, len(f.ids))
	f.maxLen = max(f.maxLen, len(ids))
}

func (f *flat) Len() int { return len(f.off) - 1 }
func (f *flat) Example(i int) Example {
	ids := f.ids[f.off[i]:f.off[i+1]:f.off[i+1]]
	if f.labels == nil {
		return Example{ids, ids}
	}
	return Example{ids, f.labels[f.off[i]:f.off[i+1]:f.off[i+1]]}
}
func (f *flat) MaxLen() int  { return f.maxLen }
func (f *flat) Close() error { return nil }

// packedSource reads the blocks of a data pack directory from the mapped
// shards: a pack of millions of documents trains in bounded memory.
type packedSource struct {
	p      *corpus.Packed
	n, cut int
}

func (s *packedSource) Len() int { return s.n }
func (s *packedSource) Example(i int) Example {
	b, err := s.p.Block(int64(i), make([]int32, s.p.Index.CutoffLen))
	if err != nil {
		panic(err) // i is within Len by the loop's arithmetic
	}
	b = b[:min(len(b), s.cut)]
	return Example{b, b}
}
func (s *packedSource) MaxLen() int  { return min(s.cut, s.p.Index.CutoffLen) }
func (s *packedSource) Close() error { return s.p.Close() }

// subset is some of a source's examples, in a given order.
type subset struct {
	Source
	idx []int32
}

func (s subset) Len() int              { return len(s.idx) }
func (s subset) Example(i int) Example { return s.Source.Example(int(s.idx[i])) }

// concat joins sources end to end.
type concat []Source

func (c concat) Len() int {
	n := 0
	for _, s := range c {
		n += s.Len()
	}
	return n
}
func (c concat) Example(i int) Example {
	for _, s := range c {
		if i < s.Len() {
			return s.Example(i)
		}
		i -= s.Len()
	}
	panic("train: example index out of range")
}
func (c concat) MaxLen() int {
	n := 0
	for _, s := range c {
		n = max(n, s.MaxLen())
	}
	return n
}
func (c concat) Close() error {
	var first error
	for _, s := range c {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// LoadData builds the examples of c's datasets with tok and splits off the
// validation set (val_size: a fraction, or a count when 1 or more). Skipped
// records are reported to log. The sources hold what was read; close the
// training set's when done (the validation set shares it).
func LoadData(c *Config, tok *spm.Processor, log io.Writer) (trainSet, valSet Source, err error) {
	var all concat
	for _, name := range c.Dataset {
		var src Source
		if c.Stage == "pt" {
			src, err = pretrainExamples(c, tok, name, log)
		} else {
			src, err = supervisedExamples(c, tok, name, log)
		}
		if err != nil {
			all.Close()
			return nil, nil, err
		}
		if src.Len() == 0 {
			all.Close()
			return nil, nil, fmt.Errorf("dataset %s: no usable example", name)
		}
		all = append(all, src)
	}
	var whole Source = all
	if len(all) == 1 {
		whole = all[0]
	}
	trainIdx, valIdx, err := split(c, whole.Len())
	if err != nil {
		whole.Close()
		return nil, nil, err
	}
	if valIdx == nil {
		return whole, nil, nil
	}
	return subset{whole, trainIdx}, subset{nopCloser{whole}, valIdx}, nil
}

// split draws the validation set (val_size: a fraction, or a count when 1
// or more) from total examples with the seed; nil without one.
func split(c *Config, total int) (trainIdx, valIdx []int32, err error) {
	if c.ValSize == 0 {
		return nil, nil, nil
	}
	n := int(c.ValSize)
	if c.ValSize < 1 {
		n = int(c.ValSize*float64(total) + 0.5)
	}
	if n < 1 || n >= total {
		return nil, nil, fmt.Errorf("val_size %g leaves %d of %d examples for validation; it must leave some for each", c.ValSize, n, total)
	}
	idx := make([]int32, total)
	for i := range idx {
		idx[i] = int32(i)
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x5b1))
	rng.Shuffle(total, func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	return idx[n:], idx[:n], nil
}

// nopCloser leaves the closing to the source's other user.
type nopCloser struct{ Source }

func (nopCloser) Close() error { return nil }

// pretrainExamples reads a packed token directory (made by data pack), or
// documents of text, each [BOS] ids [EOS]: concatenated and cut into
// blocks of cutoff_len with packing, else each cut to cutoff_len alone.
func pretrainExamples(c *Config, tok *spm.Processor, name string, log io.Writer) (Source, error) {
	_, path, err := dataset.Resolve(c.DatasetDir, name)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(path, "index.json")); err == nil {
		return packedExamples(c, tok, path)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, fmt.Errorf("dataset %s is a directory without index.json: not a finished data pack (a failed or interrupted one?); run zhllama data pack into it again, or name a file", path)
	}
	bos, eos := tok.SpecialID("bos"), tok.SpecialID("eos")
	out := newFlat(true)
	var stream []int32
	docs := 0
	_, err = corpus.Read(path, corpus.ReadOptions{Bad: badRecord(log)}, func(rec corpus.Record, loc corpus.Location) error {
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
				out.add(stream[:c.CutoffLen], nil)
				stream = stream[c.CutoffLen:]
			}
		} else {
			out.add(ids[:min(len(ids), c.CutoffLen)], nil)
		}
		if c.MaxSamples > 0 && out.Len() >= c.MaxSamples {
			return corpus.ErrStop
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if *c.Packing && out.Len() == 0 && docs > 0 {
		return nil, fmt.Errorf("dataset %s: %d documents make %d tokens, less than one block of cutoff_len %d", name, docs, len(stream), c.CutoffLen)
	}
	return out, nil
}

func packedExamples(c *Config, tok *spm.Processor, dir string) (Source, error) {
	p, err := corpus.OpenPacked(dir)
	if err != nil {
		return nil, err
	}
	if p.Index.VocabSize > tok.Size() {
		p.Close()
		return nil, fmt.Errorf("%s: packed with a vocabulary of %d pieces, but the tokenizer has %d: pack again with this tokenizer", dir, p.Index.VocabSize, tok.Size())
	}
	n := p.Blocks()
	if c.MaxSamples > 0 {
		n = min(n, int64(c.MaxSamples))
	}
	return &packedSource{p: p, n: int(n), cut: c.CutoffLen}, nil
}

// supervisedExamples renders each record with the chat template, prompts
// masked.
func supervisedExamples(c *Config, tok *spm.Processor, name string, log io.Writer) (Source, error) {
	layout, path, err := dataset.Resolve(c.DatasetDir, name)
	if err != nil {
		return nil, err
	}
	tpl, err := template.Get(c.Template)
	if err != nil {
		return nil, fmt.Errorf("key template: %w", err)
	}
	opts := template.SupervisedOptions{CutoffLen: c.CutoffLen, TrainOnPrompt: c.TrainOnPrompt, MaskHistory: c.MaskHistory}
	out := newFlat(false)
	bad := badRecord(log)
	declared, first := layout.Formatting, corpus.Record(nil)
	_, err = corpus.Read(path, corpus.ReadOptions{Bad: bad}, func(rec corpus.Record, loc corpus.Location) error {
		if first == nil {
			first = rec
		}
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
			bad(loc, err)
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
			out.add(e.IDs, e.Labels)
		}
		if c.MaxSamples > 0 && out.Len() >= c.MaxSamples {
			return corpus.ErrStop
		}
		return nil
	})
	if err == nil && out.Len() == 0 && declared != "" && first != nil {
		// Every record failed: the registry may say the wrong format.
		if guess, gerr := dataset.Guess(first); gerr == nil && guess.Formatting != declared {
			return nil, fmt.Errorf("dataset %s: dataset_info.json declares formatting %s, but its records look like %s: correct formatting (or columns) there", name, declared, guess.Formatting)
		}
	}
	return out, err
}

// badRecord reports skipped records to log: the first ten in full, then
// a count every thousand, so that a wrong layout does not flood the log.
func badRecord(log io.Writer) func(corpus.Location, error) {
	n := 0
	return func(loc corpus.Location, err error) {
		n++
		switch {
		case n <= 10:
			fmt.Fprintf(log, "skipped %s: %v\n", loc, err)
		case n%1000 == 0:
			fmt.Fprintf(log, "skipped %d records so far (the latest %s: %v)\n", n, loc, err)
		}
	}
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
