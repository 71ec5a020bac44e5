package train

import (
	"math/rand/v2"
	"os"
	"path/filepath"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/optim"
	"zhllama/rlhf"
)

// RM is the reward model objective (stage rm): the trunk plus a value
// head scores prompt+answer at its last token, and the loss is
// mean −log σ(score_chosen − score_rejected), as LLaMA-Factory computes it.
type RM struct {
	*Tuned
	Pairs, ValPairs *Pairs
	Head, headGrad  *llama.ValueHead
	// HeadDropout is the dropout on the value head's input in training:
	// config.json's summary_dropout_prob, else TRL's 0.1.
	HeadDropout     float64
	drop            headDropout
	acts            *llama.Acts
	dHidden, values []float32
	pad             int32
	batch           int
	params          []optim.Param
}

// NewRM makes the objective over t: a value head from the adapter or
// model directory's value_head.safetensors, or a new one (nn.Linear's
// initialization), trained with the model.
func NewRM(t *Tuned, trainSet, valSet *Pairs) (*RM, error) {
	c, h := t.cfg, t.Model.Config.HiddenSize
	o := &RM{Tuned: t, Pairs: trainSet, ValPairs: valSet, batch: c.BatchSize, headGrad: llama.NewValueHead(h), HeadDropout: 0.1}
	if p := t.Model.Config.SummaryDropoutProb; p != nil {
		o.HeadDropout = *p
	}
	for _, dir := range []string{c.AdapterNameOrPath, c.ModelNameOrPath} {
		if _, err := os.Stat(filepath.Join(dir, hfdir.ValueHeadFile)); dir != "" && err == nil {
			v, err := hfdir.LoadValueHead(dir, h)
			if err != nil {
				return nil, err
			}
			o.Head = v
			break
		}
	}
	if o.Head == nil {
		o.Head = llama.NewValueHead(h)
		o.Head.Init(rand.New(rand.NewPCG(c.Seed, 0x7a1)))
	}
	o.pad = t.padID()
	maxT := trainSet.MaxLen()
	if valSet != nil {
		maxT = max(maxT, valSet.MaxLen())
	}
	o.acts = t.newActs(2*c.BatchSize, roundUp(maxT))
	// The loss never reaches an untied LM head (the scores come from the
	// value head): torch leaves its gradient None, so the optimizer skips
	// it and weight decay does not shrink it. It is not trained here.
	lmHead := &t.Model.LMHead.W
	for _, p := range t.params {
		if !t.Model.Config.TieWordEmbeddings && len(p.Data) > 0 && len(*lmHead) > 0 && &p.Data[0] == &(*lmHead)[0] {
			continue
		}
		o.params = append(o.params, p)
	}
	o.params = append(o.params,
		optim.Param{Name: llama.ValueHeadWeight, Data: o.Head.W, Grad: o.headGrad.W, Group: decayGroup},
		optim.Param{Name: llama.ValueHeadBias, Data: o.Head.B, Grad: o.headGrad.B, Group: noDecayGroup})
	return o, nil
}

func (o *RM) Len() int               { return o.Pairs.Len() }
func (o *RM) Weight(batch []int) int { return len(batch) }
func (o *RM) Trained() []optim.Param { return o.params }

// scores runs pairs batch of src forward: rows 0..n−1 the chosen answers,
// n..2n−1 the rejected, as LLaMA-Factory's collator lays them out. It
// returns the scores (the value at each sequence's last token) and where
// they were read.
func (o *RM) scores(src *Pairs, batch []int, seed uint64) (chosen, rejected []float64, at []int, inputs int) {
	n := len(batch)
	exs := make([]Example, 2*n)
	for i, k := range batch {
		exs[i], exs[n+i] = src.Pair(k)
	}
	b := MakeBatch(exs, o.pad)
	o.acts.Reshape(&o.Model.Config, b.B, b.T)
	o.Model.Forward(o.acts, b.IDs, b.Valid)
	o.values = grow(&o.values, b.B*b.T)
	o.Head.Forward(o.values, o.headInput(seed), b.B*b.T)
	chosen, rejected, at = make([]float64, n), make([]float64, n), make([]int, 2*n)
	for i, e := range exs {
		at[i] = i*b.T + len(e.IDs) - 1
		inputs += len(e.IDs)
	}
	for i := 0; i < n; i++ {
		chosen[i], rejected[i] = float64(o.values[at[i]]), float64(o.values[at[n+i]])
	}
	return chosen, rejected, at, inputs
}

// headInput is the value head's input: the final hidden states, through
// dropout in training (seed not 0), as TRL's v_head applies it.
func (o *RM) headInput(seed uint64) []float32 {
	o.drop.p = o.HeadDropout
	return o.drop.input(o.acts.Hidden, seed)
}

func (o *RM) Accumulate(batch []int, denom int, micro uint64) Result {
	seed := o.cfg.Seed ^ micro<<8 | 1 // never 0: 0 means no dropout
	o.acts.Dropout, o.acts.Seed = true, seed
	chosen, rejected, at, inputs := o.scores(o.Pairs, batch, seed)
	loss, dc, dr, _ := rlhf.RankLoss(chosen, rejected)
	// The mean over this micro-batch's pairs, as a share of the step's.
	share := float64(len(batch)) / float64(max(1, denom))
	n := len(batch)
	dValues := make([]float32, len(o.values))
	for i := 0; i < n; i++ {
		dValues[at[i]] = float32(dc[i] * share)
		dValues[at[n+i]] = float32(dr[i] * share)
	}
	h := o.Model.Config.HiddenSize
	rows := len(o.values)
	o.dHidden = grow(&o.dHidden, rows*h)
	clear(o.dHidden)
	o.Head.Backward(o.dHidden, o.headGrad, dValues, o.drop.last(o.acts.Hidden), rows)
	o.drop.back(o.dHidden)
	o.Model.Backward(o.acts, o.dHidden, o.Grads)
	return Result{Loss: loss * share, Inputs: inputs}
}

// Evaluate is the validation pairs' loss and accuracy (strict: a tie is
// wrong), scored as zhllama eval rm scores pairs.
func (o *RM) Evaluate() (map[string]float64, bool) {
	if o.ValPairs == nil || o.ValPairs.Len() == 0 {
		return nil, false
	}
	s := &modelScorer{m: o.Model, head: o.Head, acts: o.acts, rows: 2 * o.batch, pad: o.pad}
	res := PairStats(scorePairs(s, o.ValPairs, o.batch, nil))
	return map[string]float64{"loss": res.Loss, "accuracy": res.Accuracy}, true
}

// Save writes the model or adapter, the tokenizer and value_head.safetensors.
func (o *RM) Save(dir string) error {
	if err := o.Tuned.Save(dir); err != nil {
		return err
	}
	return hfdir.SaveValueHead(dir, o.Head)
}

func grow(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	*buf = (*buf)[:n]
	return *buf
}
