package train

import (
	"fmt"

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
	ref             *reference // nil: no reference (ORPO, SimPO)
	acts            *llama.Acts
	logp, dLogp     []float32
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
	o.pad = t.padID()
	maxT := trainSet.MaxLen()
	if valSet != nil {
		maxT = max(maxT, valSet.MaxLen())
	}
	rows, bt := 2*c.BatchSize, roundUp(maxT)
	o.acts = t.newActs(rows, bt)
	if !o.Pref.UsesReference() {
		return o, nil
	}
	var err error
	if o.ref, err = newReference(t, o.acts, rows, bt, o.Pref.Averaged(), o.pad); err != nil {
		return nil, err
	}
	if c.PrecomputeRefLogps {
		o.ref.precompute([]*flat{trainSet.chosen, trainSet.rejected}, rows, t.log)
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
	return sequenceLogps(m, a, b, &o.logp, o.Pref.Averaged())
}

// sequenceLogps runs m on b and returns each row's summed (or averaged)
// log-probability of its labelled tokens and their count; the per-token
// values stay in *buf for a backward pass.
func sequenceLogps(m *llama.Model, a *llama.Acts, b Batch, buf *[]float32, averaged bool) (seq []float64, lens []int) {
	a.Reshape(&m.Config, b.B, b.T)
	m.Forward(a, b.IDs, b.Valid)
	logp := grow(buf, b.B*b.T)
	m.TokenLogProbs(a, b.Labels, logp)
	seq, lens = make([]float64, b.B), make([]int, b.B)
	for r := 0; r < b.B; r++ {
		for t := 0; t+1 < b.T; t++ {
			if b.Labels[r*b.T+t+1] != tensor.IgnoreIndex {
				seq[r] += float64(logp[r*b.T+t])
				lens[r]++
			}
		}
		if averaged && lens[r] > 0 {
			seq[r] /= float64(lens[r])
		}
	}
	return seq, lens
}

// spreadSeqGrad is dLogp for a loss with gradient g[r] with respect to
// each row's sequence log-probability: g[r] on each of its labelled tokens.
func spreadSeqGrad(b Batch, g []float64, dst *[]float32) []float32 {
	d := grow(dst, b.B*b.T)
	clear(d)
	for r := 0; r < b.B; r++ {
		for t := 0; t+1 < b.T; t++ {
			if b.Labels[r*b.T+t+1] != tensor.IgnoreIndex {
				d[r*b.T+t] = float32(g[r])
			}
		}
	}
	return d
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
	if o.ref != nil {
		rows := make([]row, 2*n)
		for i, k := range batch {
			rows[i], rows[n+i] = row{src.chosen, src.base(k)}, row{src.rejected, src.base(k)}
		}
		ref := o.ref.logps(rows)
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
	// ∂loss/∂(sequence log-probability), over the length where the loss
	// averages, on each of the answer's tokens.
	g := make([]float64, b.B)
	for r := range g {
		if r < n {
			g[r] = res.DChosen[r]
			if dAvg != nil {
				if o.Pref.Averaged() {
					g[r] += dAvg[r]
				} else {
					g[r] += dAvg[r] / float64(max(1, lens[r]))
				}
			}
		} else {
			g[r] = res.DRejected[r-n]
		}
		if o.Pref.Averaged() {
			g[r] /= float64(max(1, lens[r]))
		}
		g[r] *= share
	}
	o.backwardSeq(o.acts, b, g, &o.dLogp)
	return shareResult(b, res.Loss, share, res.Metrics(pc, pr))
}

// Evaluate is the validation pairs' loss and TRL's reward metrics.
func (o *DPO) Evaluate() (map[string]float64, bool) {
	if o.ValPairs == nil || o.ValPairs.Len() == 0 {
		return nil, false
	}
	o.acts.Dropout = false
	total := o.ValPairs.Len()
	out := map[string]float64{}
	batchesOf(total, o.batch, func(batch []int, w float64) {
		_, res, pc, pr, _, _, _ := o.pass(o.ValPairs, batch)
		addWeighted(out, res.Loss, res.Metrics(pc, pr), w)
	})
	return out, true
}
