package train

import (
	"fmt"
	"io"

	"zhllama/corpus"
	"zhllama/dataset"
	"zhllama/llama"
	"zhllama/optim"
	"zhllama/rlhf"
	"zhllama/spm"
	"zhllama/template"
)

// Feedback is KTO's data by index: prompt + answer sequences with the
// prompt masked, each labelled desirable or not, and beside each a KL row:
// the same prompt with the previous example's answer, from which the loss
// estimates its reference point.
type Feedback struct {
	target, kl *flat
	desirable  []bool
	idx        []int32 // a subset, in order; nil: all
}

// Len is the number of examples.
func (f *Feedback) Len() int {
	if f.idx != nil {
		return len(f.idx)
	}
	return f.target.Len()
}

func (f *Feedback) base(i int) int {
	if f.idx != nil {
		return int(f.idx[i])
	}
	return i
}

// MaxLen bounds the sequences' length.
func (f *Feedback) MaxLen() int { return max(f.target.MaxLen(), f.kl.MaxLen()) }

// LoadFeedback reads c's KTO datasets (a kto_tag column: a boolean per
// example, LLaMA-Factory's "label" in its demo data), rendered with the
// template, and splits off the validation examples.
func LoadFeedback(c *Config, tok *spm.Processor, log io.Writer) (trainSet, valSet *Feedback, err error) {
	tpl, err := template.Get(c.Template)
	if err != nil {
		return nil, nil, fmt.Errorf("key template: %w", err)
	}
	type ex struct {
		prompt    []template.Message
		answer    template.Message
		system    string
		tools     string
		desirable bool
	}
	var exs []ex
	bad := badRecord(log)
	for _, name := range c.Dataset {
		layout, path, err := dataset.Resolve(c.DatasetDir, name)
		if err != nil {
			return nil, nil, err
		}
		before := len(exs)
		_, err = corpus.Read(path, corpus.ReadOptions{Bad: bad}, func(rec corpus.Record, loc corpus.Location) error {
			if layout.Formatting == "" {
				if layout, err = dataset.Guess(rec); err != nil {
					return fmt.Errorf("%s: %w", loc, err)
				}
			}
			if layout.Ranking {
				return fmt.Errorf("%s: %s is a ranking dataset (chosen and rejected); stage kto needs one answer per prompt with a kto_tag true or false", loc, name)
			}
			e, err := layout.Convert(rec)
			if err != nil {
				bad(loc, err)
				return nil
			}
			if e.Desirable == nil {
				return fmt.Errorf("%s: %s has no kto_tag column (a boolean: is the answer desirable?); name it in dataset_info.json's columns, e.g. \"kto_tag\": \"label\"", loc, name)
			}
			exs = append(exs, ex{e.Prompt, e.Response[0], e.System, e.Tools, *e.Desirable})
			if c.MaxSamples > 0 && len(exs)-before >= c.MaxSamples {
				return corpus.ErrStop
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		if len(exs) == before {
			return nil, nil, fmt.Errorf("dataset %s: no usable example", name)
		}
	}
	all := &Feedback{target: newFlat(false), kl: newFlat(false)}
	chosen := 0
	for i, e := range exs {
		// The KL row pairs the prompt with the previous example's answer
		// within its block of 1000 (the first with the block's last), as
		// LLaMA-Factory's processor does over datasets.map's batches.
		lo := i / ktoBlock * ktoBlock
		n := min(ktoBlock, len(exs)-lo)
		other := exs[lo+(i-lo+n-1)%n].answer
		for _, side := range []struct {
			dst    *flat
			answer template.Message
		}{{all.target, e.answer}, {all.kl, other}} {
			ids, labels, _, err := oneTurn(tpl, tok, e.prompt, side.answer, e.system, e.tools, c.CutoffLen)
			if err != nil {
				return nil, nil, err
			}
			side.dst.add(ids, labels)
		}
		all.desirable = append(all.desirable, e.desirable)
		if e.desirable {
			chosen++
		}
	}
	fmt.Fprintf(log, "kto: %d examples, %d desirable, %d undesirable\n", len(exs), chosen, len(exs)-chosen)
	trainIdx, valIdx, err := split(c, all.Len())
	if err != nil || valIdx == nil {
		return all, nil, err
	}
	return &Feedback{all.target, all.kl, all.desirable, trainIdx}, &Feedback{all.target, all.kl, all.desirable, valIdx}, nil
}

// ktoBlock is datasets.map's batch (preprocessing_batch_size), within
// which LLaMA-Factory pairs each prompt with another example's answer.
const ktoBlock = 1000

// oneTurn renders a prompt (ending with a user turn) and one answer as
// LLaMA-Factory's encode_oneturn does: the history folded into the prompt,
// both cut to cutoff together, the prompt's labels masked.
// It also says whether the prompt had to be cut.
func oneTurn(tpl *template.Template, tok *spm.Processor, prompt []template.Message, answer template.Message, system, tools string, cutoff int) (ids, labels []int32, promptCut bool, err error) {
	enc, err := tpl.EncodeMessages(tok, append(append([]template.Message(nil), prompt...), answer), system, tools)
	if err != nil {
		return nil, nil, false, err
	}
	var p []int
	for _, e := range enc[:len(enc)-1] {
		p = append(p, e...)
	}
	a := enc[len(enc)-1]
	sl, tl := template.InferSeqLen(len(p), len(a), cutoff)
	ids = append(spm.Int32s(p[:sl]), spm.Int32s(a[:tl])...)
	labels = make([]int32, len(ids))
	for i := range labels {
		labels[i] = template.IgnoreIndex
		if i >= sl {
			labels[i] = ids[i]
		}
	}
	return ids, labels, sl < len(p), nil
}

// KTO is stage kto: TRL's Kahneman-Tversky loss on desirable and
// undesirable answers against a reference, the reference point estimated
// from the KL rows. Dropout is off, as for DPO.
type KTO struct {
	*Tuned
	Data, Val   *Feedback
	Loss        rlhf.KTO
	ref         *reference
	acts        *llama.Acts
	logp, dLogp []float32
	pad         int32
	batch       int
}

// NewKTO makes the objective over t.
func NewKTO(t *Tuned, trainSet, valSet *Feedback) (*KTO, error) {
	c := t.cfg
	if !(c.PrefBeta > 0) || c.KTOChosenWeight < 0 || c.KTORejectedWeight < 0 {
		return nil, fmt.Errorf("keys pref_beta (%g) must be positive, kto_chosen_weight and kto_rejected_weight not negative", c.PrefBeta)
	}
	o := &KTO{Tuned: t, Data: trainSet, Val: valSet, batch: c.BatchSize,
		Loss: rlhf.KTO{Beta: c.PrefBeta, ChosenWeight: c.KTOChosenWeight, RejectedWeight: c.KTORejectedWeight}}
	o.pad = t.padID()
	maxT := trainSet.MaxLen()
	if valSet != nil {
		maxT = max(maxT, valSet.MaxLen())
	}
	rows, bt := 2*c.BatchSize, roundUp(maxT)
	o.acts = t.newActs(rows, bt)
	var err error
	if o.ref, err = newReference(t, o.acts, rows, bt, false, o.pad); err != nil {
		return nil, err
	}
	if c.PrecomputeRefLogps {
		o.ref.precompute([]*flat{trainSet.target, trainSet.kl}, rows, t.log)
	}
	return o, nil
}

func (o *KTO) Len() int               { return o.Data.Len() }
func (o *KTO) Weight(batch []int) int { return len(batch) }
func (o *KTO) Trained() []optim.Param { return o.params }

// pass computes a batch's loss: the reference of the answers and the KL
// rows, the policy's KL rows (no gradient), then the policy's answers,
// whose per-token log-probabilities stay for the backward pass.
func (o *KTO) pass(src *Feedback, batch []int) (b Batch, res rlhf.KTOResult, pi []float64, lens []int) {
	n := len(batch)
	rows := make([]row, 2*n)
	targets, kls := make([]Example, n), make([]Example, n)
	for i, k := range batch {
		j := src.base(k)
		rows[i], rows[n+i] = row{src.target, j}, row{src.kl, j}
		targets[i], kls[i] = src.target.Example(j), src.kl.Example(j)
	}
	ref := o.ref.logps(rows)
	o.acts.Dropout = false
	pKL, _ := sequenceLogps(o.Model, o.acts, MakeBatch(kls, o.pad), &o.logp, false)
	b = MakeBatch(targets, o.pad)
	pi, lens = sequenceLogps(o.Model, o.acts, b, &o.logp, false)
	var pc, pr, rc, rr []float64
	for i, d := range src.labels(batch) {
		if d {
			pc, rc = append(pc, pi[i]), append(rc, ref[i])
		} else {
			pr, rr = append(pr, pi[i]), append(rr, ref[i])
		}
	}
	res = o.Loss.Compute(pc, pr, rc, rr, pKL, ref[n:])
	return b, res, pi, lens
}

// sftTerm is LLaMA-Factory's pref_ftx term for KTO, ftx · mean over the
// desirable answers of −π/len, over their count, times the batch's size,
// and its gradient with respect to each π.
func (o *KTO) sftTerm(pi []float64, lens []int, desirable []bool) (loss float64, grad []float64) {
	grad = make([]float64, len(pi))
	ftx := o.cfg.PrefFTX
	chosen := 0
	for _, d := range desirable {
		if d {
			chosen++
		}
	}
	if ftx <= 1e-6 || chosen == 0 {
		return 0, grad
	}
	scale := ftx / float64(chosen) / float64(chosen) * float64(len(pi))
	for i, d := range desirable {
		if d {
			loss -= scale * pi[i] / float64(max(1, lens[i]))
			grad[i] = -scale / float64(max(1, lens[i]))
		}
	}
	return loss, grad
}

// labels are the batch's desirable flags.
func (f *Feedback) labels(batch []int) []bool {
	out := make([]bool, len(batch))
	for i, k := range batch {
		out[i] = f.desirable[f.base(k)]
	}
	return out
}

func (o *KTO) Accumulate(batch []int, denom int, micro uint64) Result {
	b, res, pi, lens := o.pass(o.Data, batch)
	share := float64(len(batch)) / float64(max(1, denom))
	desirable := o.Data.labels(batch)
	sft, g := o.sftTerm(pi, lens, desirable)
	res.Loss += sft
	ci, ri := 0, 0
	for i, d := range desirable {
		if d {
			g[i] += res.DChosen[ci]
			ci++
		} else {
			g[i] += res.DRejected[ri]
			ri++
		}
		g[i] *= share
	}
	o.backwardSeq(o.acts, b, g, &o.dLogp)
	return shareResult(b, res.Loss, share, res.Metrics)
}

// Evaluate is the validation examples' loss and TRL's metrics.
func (o *KTO) Evaluate() (map[string]float64, bool) {
	if o.Val == nil || o.Val.Len() == 0 {
		return nil, false
	}
	total := o.Val.Len()
	out := map[string]float64{}
	batchesOf(total, o.batch, func(batch []int, w float64) {
		_, res, pi, lens := o.pass(o.Val, batch)
		sft, _ := o.sftTerm(pi, lens, o.Val.labels(batch))
		addWeighted(out, res.Loss+sft, res.Metrics, w)
	})
	return out, true
}
