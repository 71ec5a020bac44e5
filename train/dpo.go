package train

import (
	"fmt"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/optim"
	"zhllama/rlhf"
	"zhllama/tensor"
)

// DPO is the direct preference objective (stage dpo) with LLaMA-Factory's
// pref_loss choices: the policy's log-probabilities of the chosen and
// rejected answers against a reference's. The reference is ref_model if
// given, else the policy with its adapters off (LoRA), else a frozen copy
// of the starting weights; ORPO and SimPO use none. Dropout is off, as
// LLaMA-Factory turns it off for DPO.
type DPO struct {
	*Tuned
	Pairs, ValPairs *Pairs
	Pref            rlhf.Pref
	ref             *llama.Model // nil: the policy itself with no adapters
	acts, refActs   *llama.Acts
	logp            []float32
	pad             int32
	batch           int
}

// NewDPO makes the objective over t.
func NewDPO(t *Tuned, trainSet, valSet *Pairs) (*DPO, error) {
	c := t.cfg
	o := &DPO{Tuned: t, Pairs: trainSet, ValPairs: valSet, batch: c.BatchSize,
		Pref: rlhf.Pref{Loss: c.PrefLoss, Beta: c.PrefBeta, LabelSmoothing: c.DPOLabelSmoothing, SimPOGamma: c.SimPOGamma, FTX: c.PrefFTX}}
	if err := o.Pref.Validate(); err != nil {
		return nil, fmt.Errorf("key %w", err)
	}
	if id := t.Tok.SpecialID("pad"); id >= 0 {
		o.pad = int32(id)
	} else if id := t.Tok.SpecialID("eos"); id >= 0 {
		o.pad = int32(id)
	}
	maxT := trainSet.MaxLen()
	if valSet != nil {
		maxT = max(maxT, valSet.MaxLen())
	}
	rows, bt := 2*c.BatchSize, roundUp(maxT)
	if c.GradientCheckpoint {
		o.acts = t.Model.NewCheckpointedActs(rows, bt)
	} else {
		o.acts = t.Model.NewActs(rows, bt)
	}
	if !o.Pref.UsesReference() {
		return o, nil
	}
	switch {
	case c.RefModel != "":
		ref, err := hfdir.Load(c.RefModel)
		if err != nil {
			return nil, fmt.Errorf("ref_model: %w", err)
		}
		if ref.Config.VocabSize != t.Model.Config.VocabSize {
			return nil, fmt.Errorf("ref_model %s has vocab_size %d, the policy %d: they must share the tokenizer", c.RefModel, ref.Config.VocabSize, t.Model.Config.VocabSize)
		}
		o.ref = ref
	case c.FinetuningType != "lora":
		o.ref = frozenCopy(t.Model)
	}
	if o.ref != nil {
		o.refActs = o.ref.NewActs(rows, bt)
	}
	return o, nil
}

// frozenCopy is m's weights as they are now, apart from m's.
func frozenCopy(m *llama.Model) *llama.Model {
	cp := llama.NewModel(m.Config)
	refs := m.Refs()
	for i, r := range cp.Refs() {
		if w := refs[i].Weight; w != nil && w.Compact != nil {
			r.Weight.Compact, r.Weight.W = w.Compact, nil // read-only, shared
			continue
		}
		copy(*r.Data, *refs[i].Data)
	}
	cp.Tie()
	return cp
}

func (o *DPO) Len() int               { return o.Pairs.Len() }
func (o *DPO) Weight(batch []int) int { return len(batch) }
func (o *DPO) Trained() []optim.Param { return o.params }

// seqLogps runs m on the batch and returns each row's log-probability of
// its answer (summed over the answer's tokens, or averaged with IPO, ORPO
// and SimPO), the per-token values left in o.logp, and the answer lengths.
func (o *DPO) seqLogps(m *llama.Model, a *llama.Acts, b Batch) (seq []float64, lens []int) {
	a.Reshape(&m.Config, b.B, b.T)
	m.Forward(a, b.IDs, b.Valid)
	o.logp = grow(&o.logp, b.B*b.T)
	m.TokenLogProbs(a, b.Labels, o.logp)
	seq, lens = make([]float64, b.B), make([]int, b.B)
	for r := 0; r < b.B; r++ {
		for t := 0; t+1 < b.T; t++ {
			if b.Labels[r*b.T+t+1] != tensor.IgnoreIndex {
				seq[r] += float64(o.logp[r*b.T+t])
				lens[r]++
			}
		}
		if o.Pref.Averaged() && lens[r] > 0 {
			seq[r] /= float64(lens[r])
		}
	}
	return seq, lens
}

// pass computes a batch's preference loss: the reference first (no
// gradient), then the policy, whose per-token log-probabilities stay in
// o.logp for the backward pass.
func (o *DPO) pass(src *Pairs, batch []int) (b Batch, res rlhf.PrefResult, pc, pr, chosenAvg []float64, lens []int, dAvg []float64) {
	n := len(batch)
	exs := make([]Example, 2*n)
	for i, k := range batch {
		exs[i], exs[n+i] = src.Pair(k)
	}
	b = MakeBatch(exs, o.pad)
	var rc, rr []float64
	if o.Pref.UsesReference() {
		var ref []float64
		if o.ref != nil {
			ref, _ = o.seqLogps(o.ref, o.refActs, b)
		} else {
			o.acts.Adapters = llama.NoAdapters
			ref, _ = o.seqLogps(o.Model, o.acts, b)
			o.acts.Adapters = nil
		}
		rc, rr = ref[:n], ref[n:]
	}
	seq, lens := o.seqLogps(o.Model, o.acts, b)
	pc, pr = seq[:n], seq[n:]
	if o.Pref.FTX > 1e-6 {
		chosenAvg = make([]float64, n)
		for i := range chosenAvg {
			chosenAvg[i] = pc[i]
			if !o.Pref.Averaged() {
				chosenAvg[i] /= float64(max(1, lens[i]))
			}
		}
	}
	res, dAvg = o.Pref.Compute(pc, pr, rc, rr, chosenAvg)
	return b, res, pc, pr, chosenAvg, lens, dAvg
}

func (o *DPO) Accumulate(batch []int, denom int, micro uint64) Result {
	o.acts.Dropout = false
	b, res, pc, pr, _, lens, dAvg := o.pass(o.Pairs, batch)
	n := len(batch)
	share := float64(n) / float64(max(1, denom))
	// ∂loss/∂(token log-probability): the sequence's gradient on each of
	// its answer tokens, over the length where the loss averages.
	dLogp := make([]float32, b.B*b.T)
	for r := 0; r < b.B; r++ {
		g := 0.0
		if r < n {
			g = res.DChosen[r]
			if dAvg != nil {
				if o.Pref.Averaged() {
					g += dAvg[r]
				} else {
					g += dAvg[r] / float64(max(1, lens[r]))
				}
			}
		} else {
			g = res.DRejected[r-n]
		}
		if o.Pref.Averaged() {
			g /= float64(max(1, lens[r]))
		}
		for t := 0; t+1 < b.T; t++ {
			if b.Labels[r*b.T+t+1] != tensor.IgnoreIndex {
				dLogp[r*b.T+t] = float32(g * share)
			}
		}
	}
	dHidden := o.Model.TokenLogProbsBackward(o.acts, b.Labels, dLogp, o.Grads)
	o.Model.Backward(o.acts, dHidden, o.Grads)
	metrics := res.Metrics(pc, pr)
	for k, v := range metrics {
		metrics[k] = v * share
	}
	inputs := 0
	for _, ok := range b.Valid {
		if ok {
			inputs++
		}
	}
	return Result{Loss: res.Loss * share, Inputs: inputs, Metrics: metrics}
}

// Evaluate is the validation pairs' loss and TRL's reward metrics.
func (o *DPO) Evaluate() (map[string]float64, bool) {
	if o.ValPairs == nil || o.ValPairs.Len() == 0 {
		return nil, false
	}
	o.acts.Dropout = false
	total := o.ValPairs.Len()
	out := map[string]float64{}
	for lo := 0; lo < total; lo += o.batch {
		var batch []int
		for k := lo; k < min(lo+o.batch, total); k++ {
			batch = append(batch, k)
		}
		_, res, pc, pr, _, _, _ := o.pass(o.ValPairs, batch)
		w := float64(len(batch)) / float64(total)
		out["loss"] += res.Loss * w
		for k, v := range res.Metrics(pc, pr) {
			out[k] += v * w
		}
	}
	return out, true
}
