package train

import (
	"fmt"
	"io"
	"math"
	"time"

	"zhllama/hfdir"
	"zhllama/llama"
)

// reference is the reference model of DPO and KTO: ref_model, else the
// policy with its adapters off (LoRA), else a frozen copy of the starting
// weights. With precompute_ref_log_probs every answer's reference
// log-probability is computed once at the start, after which no reference
// pass runs and a frozen copy is let go.
type reference struct {
	model    *llama.Model // nil: the policy with no adapters
	acts     *llama.Acts
	policy   *llama.Model
	pActs    *llama.Acts
	averaged bool
	pad      int32
	buf      []float32
	cache    map[*flat][]float64 // by row; NaN: not computed
	done     bool                // precomputed: every row is cached
}

// newReference sets up the reference for policy t, with activations for
// rows × t tokens.
func newReference(t *Tuned, acts *llama.Acts, rows, bt int, averaged bool, pad int32) (*reference, error) {
	r := &reference{policy: t.Model, pActs: acts, averaged: averaged, pad: pad}
	var err error
	if r.model, err = t.referenceModel(); err != nil {
		return nil, err
	}
	if r.model != nil {
		r.acts = r.model.NewActs(rows, bt)
	}
	return r, nil
}

// referenceModel is the reference of dpo, kto and ppo when it is a model
// of its own: ref_model, or a frozen copy of the starting weights when
// not training LoRA; nil means the policy with its adapters off.
func (t *Tuned) referenceModel() (*llama.Model, error) {
	c := t.cfg
	switch {
	case c.RefModel != "":
		ref, err := hfdir.Load(c.RefModel)
		if err != nil {
			return nil, fmt.Errorf("ref_model: %w", err)
		}
		if ref.Config.VocabSize != t.Model.Config.VocabSize {
			return nil, fmt.Errorf("ref_model %s has vocab_size %d, the policy %d: they must share the tokenizer", c.RefModel, ref.Config.VocabSize, t.Model.Config.VocabSize)
		}
		return ref, nil
	case c.FinetuningType != "lora":
		return frozenCopy(t.Model), nil
	}
	return nil, nil
}

// row is an answer sequence: row i of a flat.
type row struct {
	f *flat
	i int
}

// logps are the reference's log-probabilities of the rows' answers.
func (r *reference) logps(rows []row) []float64 {
	out := make([]float64, len(rows))
	var miss []int
	for k, rw := range rows {
		if c := r.cache[rw.f]; c != nil && !math.IsNaN(c[rw.i]) {
			out[k] = c[rw.i]
		} else {
			miss = append(miss, k)
		}
	}
	if len(miss) == 0 {
		return out
	}
	if r.done {
		panic("train: a reference log-probability missing after precomputing them all")
	}
	exs := make([]Example, len(miss))
	for j, k := range miss {
		exs[j] = rows[k].f.Example(rows[k].i)
	}
	b := MakeBatch(exs, r.pad)
	var seq []float64
	if r.model != nil {
		seq, _ = sequenceLogps(r.model, r.acts, b, &r.buf, r.averaged)
	} else {
		r.pActs.Adapters, r.pActs.Dropout = llama.NoAdapters, false
		seq, _ = sequenceLogps(r.policy, r.pActs, b, &r.buf, r.averaged)
		r.pActs.Adapters = nil
	}
	for j, k := range miss {
		out[k] = seq[j]
		if c := r.cache[rows[k].f]; c != nil {
			c[rows[k].i] = seq[j]
		}
	}
	return out
}

// precompute computes every row of flats in batches of n, logging
// progress, then drops a frozen copy: nothing needs it any more.
func (r *reference) precompute(flats []*flat, n int, log io.Writer) {
	r.cache = map[*flat][]float64{}
	total := 0
	for _, f := range flats {
		c := make([]float64, f.Len())
		for i := range c {
			c[i] = math.NaN()
		}
		r.cache[f] = c
		total += f.Len()
	}
	start, done, next := time.Now(), 0, 0.1
	for _, f := range flats {
		for lo := 0; lo < f.Len(); lo += n {
			var rows []row
			for i := lo; i < min(lo+n, f.Len()); i++ {
				rows = append(rows, row{f, i})
			}
			r.logps(rows)
			done += len(rows)
			if float64(done) >= next*float64(total) || done == total {
				el := time.Since(start)
				fmt.Fprintf(log, "reference log-probs: %d/%d answers, %.1f/s, ETA %s\n", done, total, float64(done)/el.Seconds(),
					time.Duration(float64(el)/float64(done)*float64(total-done)).Round(time.Second))
				next += 0.1
			}
		}
	}
	// Every answer is cached: the reference model (a frozen copy or
	// ref_model) is let go.
	r.model, r.acts, r.policy, r.done = nil, nil, nil, true
}
