package train

import (
	"fmt"
	"io"
)

// Trainer is a pretraining or SFT run: the language-model objective over a
// tuned model and its data, driven by a Loop.
type Trainer struct {
	*Loop
	*LM
}

// New prepares a run from c: the tokenizer, the model (resized to the
// tokenizer), what trains, the data and the optimizer. Progress and notes
// go to log.
func New(c Config, log io.Writer) (*Trainer, error) {
	tuned, err := LoadTuned(&c, log)
	if err != nil {
		return nil, err
	}
	trainSet, valSet, err := LoadData(&c, tuned.Tok, log)
	if err != nil {
		return nil, err
	}
	lm := NewLM(tuned, trainSet, valSet)
	t := &Trainer{Loop: NewLoop(c, lm, log), LM: lm}
	mc := &tuned.Model.Config
	bt := roundUp(trainSet.MaxLen())
	if valSet != nil {
		bt = roundUp(max(trainSet.MaxLen(), valSet.MaxLen()))
	}
	checkpointing := ""
	if c.GradientCheckpoint {
		checkpointing = ", gradient checkpointing"
	}
	fmt.Fprintf(log, "memory: weights %.0f MB, trained values with gradients and optimizer state %.0f MB, activations %.0f MB (batch %d × %d%s)\n",
		float64(tuned.Model.Bytes())/1e6, float64(12*tuned.numTrained())/1e6, float64(mc.ActivationBytes(c.BatchSize, bt, c.GradientCheckpoint))/1e6,
		c.BatchSize, bt, checkpointing)
	val := 0
	if valSet != nil {
		val = valSet.Len()
	}
	fmt.Fprintf(log, "%s: training %d tensors (%.2fM values) of a %.1fM-parameter model; %d examples (%d validation), %d steps of %d × %d sequences, warmup %d\n",
		c.FinetuningType, len(t.Params), float64(tuned.numTrained())/1e6, float64(mc.NumParams())/1e6, trainSet.Len(), val, t.Total, c.BatchSize, c.GradAccum, t.Warmup)
	return t, nil
}

// Close releases the data (a mapped pack).
func (t *Trainer) Close() error { return t.LM.Train.Close() }
