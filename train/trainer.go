package train

import (
	"fmt"
	"io"
)

// Trainer is a training run: an objective over a tuned model and its
// data, driven by a Loop. LM is the objective of pt and sft, RM that of
// rm, DPO that of dpo, KTO that of kto, PPO that of ppo (the others are
// nil).
type Trainer struct {
	*Loop
	*Tuned
	*LM
	RM  *RM
	DPO *DPO
	KTO *KTO
	PPO *PPO
}

// New prepares a run from c: the tokenizer, the model (resized to the
// tokenizer), what trains, the data and the optimizer. Progress and notes
// go to log.
func New(c Config, log io.Writer) (*Trainer, error) {
	return NewOn(c, log, nil)
}

// NewOn is New for a run on the ranks of comm (nil: this process alone).
// Every rank loads the model and all the data; rank 0 alone logs.
func NewOn(c Config, log io.Writer, comm Comm) (*Trainer, error) {
	if comm == nil {
		comm = alone{}
	}
	if comm.Rank() != 0 {
		log = io.Discard
	}
	tuned, err := LoadTuned(&c, log)
	if err != nil {
		return nil, err
	}
	t := &Trainer{Tuned: tuned}
	var obj Objective
	var examples, val, maxLen, rows int
	switch c.Stage {
	case "ppo":
		prompts, err := LoadPrompts(&c, tuned.Tok, log)
		if err != nil {
			return nil, err
		}
		if t.PPO, err = NewPPO(tuned, prompts, comm.Size()); err != nil {
			return nil, err
		}
		obj, examples, maxLen, rows = t.PPO, prompts.Len(), prompts.MaxLen()+c.MaxNewTokens, c.BatchSize
	case "kto":
		trainSet, valSet, err := LoadFeedback(&c, tuned.Tok, log)
		if err != nil {
			return nil, err
		}
		if t.KTO, err = NewKTO(tuned, trainSet, valSet); err != nil {
			return nil, err
		}
		obj, examples, maxLen, rows = t.KTO, trainSet.Len(), trainSet.MaxLen(), 2*c.BatchSize
		if valSet != nil {
			val, maxLen = valSet.Len(), max(maxLen, valSet.MaxLen())
		}
	case "rm", "dpo":
		trainSet, valSet, err := LoadPairs(&c, tuned.Tok, log)
		if err != nil {
			return nil, err
		}
		if c.Stage == "rm" {
			t.RM, err = NewRM(tuned, trainSet, valSet)
			obj = t.RM
		} else {
			t.DPO, err = NewDPO(tuned, trainSet, valSet)
			obj = t.DPO
		}
		if err != nil {
			return nil, err
		}
		examples, maxLen, rows = trainSet.Len(), trainSet.MaxLen(), 2*c.BatchSize
		if valSet != nil {
			val, maxLen = valSet.Len(), max(maxLen, valSet.MaxLen())
		}
	default:
		trainSet, valSet, err := LoadData(&c, tuned.Tok, log)
		if err != nil {
			return nil, err
		}
		t.LM = NewLM(tuned, trainSet, valSet)
		obj, examples, maxLen, rows = t.LM, trainSet.Len(), trainSet.MaxLen(), c.BatchSize
		if valSet != nil {
			val, maxLen = valSet.Len(), max(maxLen, valSet.MaxLen())
		}
	}
	t.Loop = NewLoopOn(c, obj, log, comm)
	mc := &tuned.Model.Config
	bt := roundUp(maxLen)
	checkpointing := ""
	if c.GradientCheckpoint {
		checkpointing = ", gradient checkpointing"
	}
	fmt.Fprintf(log, "memory: weights %.0f MB, trained values with gradients and optimizer state %.0f MB, activations %.0f MB (batch %d × %d%s)\n",
		float64(tuned.Model.Bytes())/1e6, float64(12*tuned.numTrained())/1e6, float64(mc.ActivationBytes(rows, bt, c.GradientCheckpoint))/1e6,
		rows, bt, checkpointing)
	if c.DeepSpeed != "" {
		stage, _ := DeepSpeedStage(c.DeepSpeed)
		fmt.Fprintf(log, "deepspeed %s: ZeRO stage %d runs as zero_stage %d (AdamW's moments sharded across ranks at 1; gradients and weights stay whole on every rank; nothing is offloaded)\n", c.DeepSpeed, stage, c.ZeroStage)
	}
	if n := comm.Size(); n > 1 {
		mine, whole := t.par.stateBytes(c.Optim != "sgd")
		fmt.Fprintf(log, "data parallel on %d ranks: %d micro-batches of %d per step (%d per rank); AdamW state %.1f MB per rank of %.1f MB (zero_stage %d); each rank receives %.1f MB per step (gradient shards after each of %d rounds, then one gather)\n",
			n, t.accum, c.BatchSize, c.GradAccum, float64(mine)/1e6, float64(whole)/1e6, c.ZeroStage, float64(t.par.commBytes(c.GradAccum))/1e6, c.GradAccum)
	}
	fmt.Fprintf(log, "%s %s: training %d tensors (%.2fM values) of a %.1fM-parameter model; %d examples (%d validation), %d steps of %d × %d, warmup %d\n",
		c.Stage, c.FinetuningType, len(t.Params), float64(tuned.numTrained())/1e6, float64(mc.NumParams())/1e6, examples, val, t.Total, c.BatchSize, c.GradAccum, t.Warmup)
	return t, nil
}

// Close releases the data (a mapped pack).
func (t *Trainer) Close() error {
	if t.LM != nil {
		return t.LM.Train.Close()
	}
	return nil
}
