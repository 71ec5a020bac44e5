package train

import (
	"math"

	"zhllama/llama"
	"zhllama/optim"
)

// Objective is what a run optimizes: pretraining and SFT's language
// model, and next a reward model, DPO or PPO. The Loop orders its examples
// by index, cuts micro-batches, averages over a step, clips, schedules,
// evaluates, logs and checkpoints; the objective computes losses and
// gradients on the micro-batches it is given.
type Objective interface {
	// Len is the number of training examples.
	Len() int
	// Weight is what the examples count for in a step's mean loss (learned
	// tokens for a language model), known before any forward pass, so that
	// gradient accumulation averages over the whole step.
	Weight(batch []int) int
	// Accumulate runs the micro-batch forward and backward, adding the
	// gradient of its summed loss over denom to the parameters' gradients.
	// micro numbers the micro-batch in the run, seeding its dropout.
	Accumulate(batch []int, denom int, micro uint64) Result
	// Evaluate measures the validation set: "loss" and the objective's own
	// metrics (perplexity, pair accuracy); ok is false without one.
	Evaluate() (metrics map[string]float64, ok bool)
	// Trained are the trained tensors, named as saved, and Groups their
	// optimizer groups.
	Trained() []optim.Param
	Groups() []optim.Group
	// Save writes what is trained, with what goes with it, to dir.
	Save(dir string) error
}

// Result is one micro-batch's part of a step.
type Result struct {
	Loss    float64            // its share of the step's mean loss
	Inputs  int                // tokens fed, for the rate
	Metrics map[string]float64 // the objective's own, as shares of the step's means
}

// LM is the language-model objective of pretraining and SFT: mean
// cross-entropy over the learned tokens.
type LM struct {
	*Tuned
	Train, Val Source
	acts       *llama.Acts
	pad        int32
	evalBatch  int
	seed       uint64
}

// NewLM makes the objective over t with its data, activations sized for
// the longest example.
func NewLM(t *Tuned, trainSet, valSet Source) *LM {
	o := &LM{Tuned: t, Train: trainSet, Val: valSet, evalBatch: t.cfg.BatchSize, seed: t.cfg.Seed}
	if id := t.Tok.SpecialID("pad"); id >= 0 {
		o.pad = int32(id)
	}
	maxT := trainSet.MaxLen()
	if valSet != nil {
		maxT = max(maxT, valSet.MaxLen())
	}
	bt := roundUp(maxT)
	o.acts = t.newActs(t.cfg.BatchSize, bt)
	return o
}

func (o *LM) Len() int { return o.Train.Len() }

func (o *LM) examples(src Source, batch []int) []Example {
	exs := make([]Example, len(batch))
	for i, k := range batch {
		exs[i] = src.Example(k)
	}
	return exs
}

func (o *LM) Weight(batch []int) int {
	n := 0
	for _, k := range batch {
		n += o.Train.Example(k).Tokens()
	}
	return n
}

func (o *LM) Accumulate(batch []int, denom int, micro uint64) Result {
	exs := o.examples(o.Train, batch)
	b := MakeBatch(exs, o.pad)
	// Dropout masks drawn from the run's seed and the micro-batch alone.
	o.acts.Dropout, o.acts.Seed = true, o.seed^micro<<8
	o.acts.Reshape(&o.Model.Config, b.B, b.T)
	o.Model.Forward(o.acts, b.IDs, b.Valid)
	l, n, dHidden := o.Model.LMLoss(o.acts, b.Labels, denom, o.Grads)
	o.Model.Backward(o.acts, dHidden, o.Grads)
	r := Result{Loss: l * float64(n) / float64(max(1, denom))}
	for _, e := range exs {
		r.Inputs += len(e.IDs)
	}
	return r
}

// Evaluate is the mean loss over the validation set's learned tokens and
// its perplexity.
func (o *LM) Evaluate() (map[string]float64, bool) {
	if o.Val == nil || o.Val.Len() == 0 {
		return nil, false
	}
	var sum float64
	tokens := 0
	o.acts.Dropout = false
	for lo := 0; lo < o.Val.Len(); lo += o.evalBatch {
		batch := make([]int, 0, o.evalBatch)
		for k := lo; k < min(lo+o.evalBatch, o.Val.Len()); k++ {
			batch = append(batch, k)
		}
		b := MakeBatch(o.examples(o.Val, batch), o.pad)
		o.acts.Reshape(&o.Model.Config, b.B, b.T)
		o.Model.Forward(o.acts, b.IDs, b.Valid)
		l, n, _ := o.Model.LMLoss(o.acts, b.Labels, 0, nil)
		sum += l * float64(n)
		tokens += n
	}
	loss := math.NaN()
	if tokens > 0 {
		loss = sum / float64(tokens)
	}
	return map[string]float64{"loss": loss, "ppl": math.Exp(loss), "tokens": float64(tokens)}, true
}
