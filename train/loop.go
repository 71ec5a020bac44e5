// Package train is the training loop and what it needs besides the model:
// objectives (the language model of pretraining and SFT), data sources,
// checkpoints and metrics. The command owns the process: it passes a
// context (cancelled on Ctrl-C) and where the log goes.
package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"time"

	"zhllama/optim"
)

// Loop runs an objective's optimizer steps: data order, accumulation,
// clipping, the schedule, evaluation, logging, metrics, plots and
// checkpoints with exact resume.
type Loop struct {
	Cfg    Config
	Obj    Objective
	Params []optim.Param
	Opt    optim.Optimizer
	Log    io.Writer

	// Total optimizer steps, warmup steps, micro-batches and optimizer
	// steps per epoch.
	Total, Warmup, perEpoch, stepsPerEpoch int
	Step                                   int // optimizer steps done
	// Comm is the ranks training together (nil: this process alone), par
	// how they combine gradients, and accum the micro-batches of a step
	// across all of them: gradient_accumulation_steps × ranks.
	Comm       Comm
	par        *parallel
	accum      int
	metrics    *metricsLog
	nanRun     int
	order      []int // this epoch's example order
	orderEpoch int
}

// NewLoop sets up the steps and the optimizer for obj.
func NewLoop(c Config, obj Objective, log io.Writer) *Loop {
	return NewLoopOn(c, obj, log, nil)
}

// NewLoopOn is NewLoop for a run on the ranks of comm: each optimizer step
// takes gradient_accumulation_steps micro-batches per rank, and the ranks
// end every step with the same values, bit for bit those of one process
// with gradient_accumulation_steps × ranks (see parallel).
func NewLoopOn(c Config, obj Objective, log io.Writer, comm Comm) *Loop {
	if comm == nil {
		comm = alone{}
	}
	l := &Loop{Cfg: c, Obj: obj, Params: obj.Trained(), Log: log, Comm: comm, accum: c.GradAccum * comm.Size()}
	l.par = newParallel(comm, c.ZeroStage, l.Params)
	l.perEpoch = (obj.Len() + c.BatchSize - 1) / c.BatchSize
	// As transformers counts them: the last step of an epoch takes the
	// micro-batches that are left, fewer than gradient_accumulation_steps.
	l.stepsPerEpoch = (l.perEpoch + l.accum - 1) / l.accum
	if s, ok := obj.(Stepper); ok {
		l.stepsPerEpoch = s.StepsPerEpoch()
	}
	l.Total = c.MaxSteps
	if l.Total <= 0 {
		l.Total = max(1, int(math.Ceil(c.NumTrainEpochs*float64(l.stepsPerEpoch))))
	}
	l.Warmup = c.WarmupSteps
	if l.Warmup == 0 {
		l.Warmup = int(math.Ceil(c.WarmupRatio * float64(l.Total)))
	}
	switch {
	case c.Optim == "sgd":
		l.Opt = optim.NewSGD(l.Params, obj.Groups())
	case c.ZeroStage == 1:
		o := newShardedAdamW(l.par, obj.Groups())
		o.Beta1, o.Beta2, o.Eps = c.AdamBeta1, c.AdamBeta2, c.AdamEpsilon
		l.Opt = o
	default:
		o := optim.NewAdamW(l.Params, obj.Groups())
		o.Beta1, o.Beta2, o.Eps = c.AdamBeta1, c.AdamBeta2, c.AdamEpsilon
		l.Opt = o
	}
	return l
}

// stepBatches returns the micro-batches of optimizer step s as example
// indices, over all ranks: within an epoch, accum consecutive
// batches of an order shuffled by the seed and the epoch (so that a
// resumed run sees exactly what an uninterrupted one would); the epoch's
// last step takes what is left.
func (l *Loop) stepBatches(s int) [][]int {
	epoch, u := s/l.stepsPerEpoch, s%l.stepsPerEpoch
	if l.order == nil || l.orderEpoch != epoch {
		l.order, l.orderEpoch = shuffled(l.Obj.Len(), l.Cfg.Seed, epoch), epoch
	}
	var out [][]int
	for pos := u * l.accum; pos < min((u+1)*l.accum, l.perEpoch); pos++ {
		out = append(out, l.order[pos*l.Cfg.BatchSize:min((pos+1)*l.Cfg.BatchSize, len(l.order))])
	}
	return out
}

// Stepper is an objective that takes its own optimizer steps: PPO gathers
// experience, then makes several updates on it, all one step of the Loop.
// The Loop still schedules, logs, evaluates and checkpoints.
type Stepper interface {
	StepsPerEpoch() int
	// Step runs step l.Step with l's optimizer and parameters.
	Step(l *Loop) StepResult
}

// StepResult is what one optimizer step measured.
type StepResult struct {
	Err                error // the run cannot go on (a reward service down)
	Loss, GradNorm, LR float64
	Tokens             int // the step's weight: learned tokens, over which the loss is averaged
	Inputs             int // tokens fed (padding excluded), for the rate
	Skipped            bool
	Metrics            map[string]float64 // the objective's own, step means
}

// TrainStep runs one optimizer step: forward and backward over the
// gradient-accumulation micro-batches, the loss averaged over all their
// weight, clipping, then the update.
func (l *Loop) TrainStep() StepResult {
	c := &l.Cfg
	if s, ok := l.Obj.(Stepper); ok {
		r := s.Step(l)
		l.Step++
		return r
	}
	// Every rank has the data, so each counts the whole step's weight
	// itself: the loss is averaged over the global step.
	micro := l.stepBatches(l.Step)
	denom := 0
	for _, b := range micro {
		denom += l.Obj.Weight(b)
	}
	r := StepResult{Tokens: denom, LR: optim.LR(c.LRSchedulerType, c.LearningRate, l.Step, l.Warmup, l.Total)}
	results, err := l.par.accumulate(func(b []int, k uint64) Result { return l.Obj.Accumulate(b, denom, k) }, micro, uint64(l.Step*l.accum))
	if err != nil {
		r.Err = err
		return r
	}
	for _, mr := range results {
		r.Loss += mr.Loss
		r.Inputs += mr.Inputs
		for k, v := range mr.Metrics {
			if r.Metrics == nil {
				r.Metrics = map[string]float64{}
			}
			r.Metrics[k] += v
		}
	}
	maxNorm := c.MaxGradNorm
	if maxNorm <= 0 {
		maxNorm = math.Inf(1)
	}
	if r.GradNorm, r.Err = l.par.clip(maxNorm); r.Err != nil {
		return r
	}
	if math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) || math.IsNaN(r.GradNorm) || math.IsInf(r.GradNorm, 0) {
		r.Skipped = true
	} else {
		l.Opt.Step(r.LR)
		r.Err = l.par.afterStep()
	}
	l.Step++
	return r
}

// ErrInterrupted reports a run stopped by its context after saving.
var ErrInterrupted = errors.New("interrupted: saved a checkpoint; run again with resume_from_checkpoint: true to continue")

// Run trains to the end, logging, evaluating and saving as configured,
// and writes the final model to output_dir. When ctx is done it saves a
// checkpoint after the current step and returns ErrInterrupted.
func (l *Loop) Run(ctx context.Context) error {
	c := &l.Cfg
	// Rank 0 alone writes: the log, metrics, checkpoints and the model.
	lead := l.Comm.Rank() == 0
	if lead {
		if err := l.prepareOutput(); err != nil {
			return err
		}
		var err error
		if l.metrics, err = openMetrics(c.OutputDir, l.Step); err != nil {
			return err
		}
		defer l.metrics.Close()
		if l.Step == 0 {
			if err := l.evaluate(); err != nil {
				return err
			}
		}
	}
	start, startStep := time.Now(), l.Step
	win := window{start: start}
	for l.Step < l.Total {
		r := l.TrainStep()
		if r.Err != nil {
			return fmt.Errorf("step %d: %w", l.Step, r.Err)
		}
		if r.Skipped {
			l.nanRun++
			fmt.Fprintf(l.Log, "step %d: loss %g, grad norm %g: not finite, step skipped\n", l.Step, r.Loss, r.GradNorm)
			if l.nanRun >= 5 {
				return fmt.Errorf("step %d: 5 steps in a row had a non-finite loss or gradient; lower learning_rate or check the data", l.Step)
			}
		} else {
			l.nanRun = 0
		}
		win.add(r)
		if lead && (l.Step%max(1, c.LoggingSteps) == 0 || l.Step == l.Total) {
			eta := time.Duration(float64(time.Since(start)) / float64(l.Step-startStep) * float64(l.Total-l.Step))
			if err := l.logStep(&win, r, eta); err != nil {
				return err
			}
		}
		if lead && (l.Step%max(1, c.EvalSteps) == 0 || l.Step == l.Total) {
			if err := l.evaluate(); err != nil {
				return err
			}
		}
		stop, err := l.anyRank(ctx.Err() != nil)
		if err != nil {
			return err
		}
		if stop || (c.SaveSteps > 0 && l.Step%c.SaveSteps == 0 && l.Step < l.Total) {
			if err := l.SaveCheckpoint(); err != nil {
				return err
			}
		}
		if stop {
			return fmt.Errorf("%w (%s)", ErrInterrupted, l.checkpointDir(l.Step))
		}
	}
	if !lead {
		return nil
	}
	if err := l.Obj.Save(c.OutputDir); err != nil {
		return err
	}
	return l.metrics.Plot(c.OutputDir)
}

// anyRank tells every rank whether any rank's flag is set: a Ctrl-C seen
// by one rank stops all of them after the same step.
func (l *Loop) anyRank(flag bool) (bool, error) {
	if l.Comm.Size() == 1 {
		return flag, nil
	}
	b := []byte{0}
	if flag {
		b[0] = 1
	}
	msgs, err := l.Comm.AllgatherBytes(b)
	if err != nil {
		return false, fmt.Errorf("agreeing on a stop: %w", err)
	}
	for _, m := range msgs {
		if len(m) == 1 && m[0] == 1 {
			return true, nil
		}
	}
	return false, nil
}

// window accumulates the steps between two log lines.
type window struct {
	loss, tokens float64
	n            int
	start        time.Time
	metrics      map[string]float64 // sums over the window's steps
}

func (w *window) add(r StepResult) {
	if !r.Skipped {
		w.loss += r.Loss
		w.n++
		for k, v := range r.Metrics {
			if w.metrics == nil {
				w.metrics = map[string]float64{}
			}
			w.metrics[k] += v
		}
	}
	w.tokens += float64(r.Inputs)
}

// logStep writes the log line and the metrics record of the window ending
// with r, redraws the curve, and starts a new window.
func (l *Loop) logStep(w *window, r StepResult, eta time.Duration) error {
	rate := w.tokens / time.Since(w.start).Seconds()
	avg := math.NaN() // every step of the window was skipped
	if w.n > 0 {
		avg = w.loss / float64(w.n)
	}
	rec := map[string]any{"step": l.Step, "epoch": l.epoch(), "loss": avg, "lr": r.LR, "grad_norm": r.GradNorm, "tokens_per_s": rate}
	for k, v := range w.metrics {
		rec[k] = v / float64(w.n)
	}
	extra := ""
	for _, k := range []string{"reward", "objective/kl", "rewards/accuracies", "rewards/margins"} {
		if v, ok := rec[k].(float64); ok {
			extra += fmt.Sprintf("  %s %.4g", k, v)
		}
	}
	fmt.Fprintf(l.Log, "step %d/%d  epoch %.2f  loss %.4f%s  lr %.3g  grad norm %.3f  %.3g tokens/s  ETA %s\n",
		l.Step, l.Total, l.epoch(), avg, extra, r.LR, r.GradNorm, rate, eta.Round(time.Second))
	if err := l.metrics.Write(rec); err != nil {
		return err
	}
	*w = window{start: time.Now()}
	// The curve is redrawn as the run goes, so it can be watched.
	return l.metrics.Plot(l.Cfg.OutputDir)
}

// evaluate logs the objective's validation metrics (eval_loss and its
// own), if there is a validation set.
func (l *Loop) evaluate() error {
	m, ok := l.Obj.Evaluate()
	if !ok {
		return nil
	}
	rec := map[string]any{"step": l.Step, "epoch": l.epoch()}
	line := fmt.Sprintf("step %d: eval loss %.4f", l.Step, m["loss"])
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rec["eval_"+k] = m[k]
		if k != "loss" {
			line += fmt.Sprintf(", %s %.4g", k, m[k])
		}
	}
	fmt.Fprintln(l.Log, line)
	return l.metrics.Write(rec)
}

func (l *Loop) epoch() float64 {
	return float64(l.Step) / float64(l.stepsPerEpoch)
}

// prepareOutput refuses to write over an earlier run's output unless told.
func (l *Loop) prepareOutput() error {
	c := &l.Cfg
	if entries, err := os.ReadDir(c.OutputDir); err == nil && len(entries) > 0 && !c.OverwriteOutputDir && l.Step == 0 {
		return fmt.Errorf("output_dir %s is not empty: set overwrite_output_dir: true, or resume_from_checkpoint: true to continue it", c.OutputDir)
	}
	return os.MkdirAll(c.OutputDir, 0o755)
}

// shuffled is 0..n−1 in the order of an epoch: shuffled by the seed and
// the epoch alone, so that a resumed run sees what an uninterrupted one
// would.
func shuffled(n int, seed uint64, epoch int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(seed, uint64(epoch)))
	rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
	return order
}
