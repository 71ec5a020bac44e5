package train

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/spm"
)

// Param is a trained tensor: its values, its gradient and its name in the
// files it is saved to.
type Param struct {
	Name    string
	Data    []float32
	Grad    []float32
	NoDecay bool
}

// Trainer runs a training job from a Config.
type Trainer struct {
	Cfg    Config
	Model  *llama.Model
	Grads  *llama.Model
	Params []Param
	Opt    Optimizer
	Tok    *spm.Processor
	Train  []Example
	Val    []Example
	Log    io.Writer

	// Total optimizer steps, warmup steps, micro-batches and optimizer
	// steps per epoch.
	Total, Warmup, perEpoch, stepsPerEpoch int
	Step                                   int // optimizer steps done
	acts                                   *llama.Acts
	interrupted                            chan os.Signal
	metrics                                *metricsLog
	nanRun                                 int
	baseVocab                              int
	adapters                               []*llama.LoRA // trained LoRA modules
	saved                                  []string      // tensors an adapter saves whole
	order                                  []int         // this epoch's example order
	params, grads                          [][]float32   // Params' values and gradients
	orderEpoch                             int
}

// New prepares a run: the tokenizer, the model (resized to the tokenizer),
// the trained parameters, the data and the optimizer.
func New(c Config, log io.Writer) (*Trainer, error) {
	t := &Trainer{Cfg: c, Log: log, interrupted: make(chan os.Signal, 1)}
	tokPath := c.TokenizerNameOrPath
	if tokPath == "" {
		tokPath = c.ModelNameOrPath
	}
	if st, err := os.Stat(tokPath); err == nil && st.IsDir() {
		tokPath = filepath.Join(tokPath, "tokenizer.model")
	}
	sm, err := spm.Load(tokPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if t.Tok, err = spm.NewProcessor(sm); err != nil {
		return nil, fmt.Errorf("%s: %w", tokPath, err)
	}
	start, next := time.Now(), 0.1
	progress := func(done, total int64) {
		// A line at every tenth of a big model: loading and quantizing 7B takes minutes.
		if total < 1e9 || float64(done) < next*float64(total) {
			return
		}
		next += 0.1
		el := time.Since(start)
		eta := time.Duration(float64(el) / float64(done) * float64(total-done))
		fmt.Fprintf(log, "loading %s: %.0f%% of %.1f GB, %.0f MB/s, ETA %s\n", c.ModelNameOrPath, 100*float64(done)/float64(total),
			float64(total)/1e9, float64(done)/1e6/el.Seconds(), eta.Round(time.Second))
	}
	if t.Model, err = llama.LoadWith(c.ModelNameOrPath, llama.LoadOptions{QuantizeBits: c.QuantizationBit, Progress: progress}); err != nil {
		return nil, err
	}
	if c.QuantizationBit != 0 {
		fmt.Fprintf(t.Log, "quantized the frozen projections to %d bits: the model holds %.1f MB\n", c.QuantizationBit, float64(t.Model.Bytes())/1e6)
	}
	t.baseVocab = t.Model.Config.VocabSize
	if err := t.resizeVocab(); err != nil {
		return nil, err
	}
	if err := t.selectParams(); err != nil {
		return nil, err
	}
	if t.Train, t.Val, err = LoadData(&t.Cfg, t.Tok); err != nil {
		return nil, err
	}
	maxT := 0
	for _, set := range [][]Example{t.Train, t.Val} {
		for _, e := range set {
			maxT = max(maxT, len(e.IDs))
		}
	}
	t.perEpoch = (len(t.Train) + c.BatchSize - 1) / c.BatchSize
	// As transformers counts them: the last step of an epoch takes the
	// micro-batches that are left, fewer than gradient_accumulation_steps.
	t.stepsPerEpoch = (t.perEpoch + c.GradAccum - 1) / c.GradAccum
	t.Total = c.MaxSteps
	if t.Total <= 0 {
		t.Total = max(1, int(math.Ceil(c.NumTrainEpochs*float64(t.stepsPerEpoch))))
	}
	t.Warmup = c.WarmupSteps
	if t.Warmup == 0 {
		t.Warmup = int(math.Ceil(c.WarmupRatio * float64(t.Total)))
	}
	ps, _ := t.slices()
	noDecay := make([]bool, len(t.Params))
	for i, p := range t.Params {
		noDecay[i] = p.NoDecay
	}
	if c.Optim == "sgd" {
		t.Opt = &SGD{WeightDecay: c.WeightDecay, NoDecay: noDecay}
	} else {
		o := NewAdamW(ps, c.WeightDecay)
		o.Beta1, o.Beta2, o.Eps, o.NoDecay = c.AdamBeta1, c.AdamBeta2, c.AdamEpsilon, noDecay
		t.Opt = o
	}
	mc := &t.Model.Config
	bt := roundUp(maxT)
	fmt.Fprintf(log, "memory: weights %.0f MB, trained values with gradients and optimizer state %.0f MB, activations %.0f MB (batch %d × %d%s)\n",
		float64(t.Model.Bytes())/1e6, float64(12*t.numTrained())/1e6, float64(mc.ActivationBytes(c.BatchSize, bt, c.GradientCheckpoint))/1e6,
		c.BatchSize, bt, map[bool]string{true: ", gradient checkpointing", false: ""}[c.GradientCheckpoint])
	if c.GradientCheckpoint {
		t.acts = t.Model.NewCheckpointedActs(c.BatchSize, bt)
	} else {
		t.acts = t.Model.NewActs(c.BatchSize, bt)
	}
	return t, nil
}

// resizeVocab grows the embeddings (and an untied head) to a tokenizer
// with more pieces than the model has rows, keeping the old rows exactly.
func (t *Trainer) resizeVocab() error {
	m, c := t.Model, &t.Model.Config
	old, n := c.VocabSize, t.Tok.Size()
	if n == old {
		return nil
	}
	if n < old {
		return fmt.Errorf("the tokenizer has %d pieces but the model %s has vocab_size %d: use the tokenizer the model was trained with", n, t.Cfg.ModelNameOrPath, old)
	}
	h := c.HiddenSize
	rng := rand.New(rand.NewPCG(t.Cfg.Seed, 0xe3b))
	grow := func(w []float32) []float32 {
		out := make([]float32, n*h)
		copy(out, w)
		mean := make([]float64, h)
		for r := 0; r < old; r++ {
			for i := 0; i < h; i++ {
				mean[i] += float64(w[r*h+i])
			}
		}
		for r := old; r < n; r++ {
			for i := 0; i < h; i++ {
				switch t.Cfg.NewEmbeddingInit {
				case "mean":
					out[r*h+i] = float32(mean[i] / float64(old))
				case "noisy_mean":
					out[r*h+i] = float32(mean[i]/float64(old) + rng.NormFloat64()/math.Sqrt(float64(h)))
				default: // normal
					out[r*h+i] = float32(rng.NormFloat64() * c.InitializerRange)
				}
			}
		}
		return out
	}
	m.Embed.W = grow(m.Embed.W)
	if c.TieWordEmbeddings {
		m.LMHead = m.Embed
	} else {
		m.LMHead.W = grow(m.LMHead.W)
	}
	c.VocabSize = n
	fmt.Fprintf(t.Log, "resized the embeddings from %d to %d rows for the tokenizer (%s initialization of the new rows)\n", old, n, t.Cfg.NewEmbeddingInit)
	return nil
}

// selectParams picks what is trained, and allocates gradients for it only.
func (t *Trainer) selectParams() error {
	m, c := t.Model, &t.Cfg
	nl := m.Config.NumHiddenLayers
	trainable := func(name string) bool { return true }
	switch c.FinetuningType {
	case "freeze":
		n := c.FreezeTrainableLayer
		if n == 0 || abs(n) > nl {
			return fmt.Errorf("key freeze_trainable_layers: %d; use 1..%d (the last layers) or -1..-%d (the first)", n, nl, nl)
		}
		layers := map[int]bool{}
		for i := 0; i < abs(n); i++ {
			if n > 0 {
				layers[nl-1-i] = true
			} else {
				layers[i] = true
			}
		}
		mods := c.FreezeTrainableMods
		trainable = func(name string) bool {
			var l int
			var rest string
			if _, err := fmt.Sscanf(name, "model.layers.%d.%s", &l, &rest); err != nil || !layers[l] {
				return false
			}
			for _, mod := range mods {
				if mod == "all" || strings.HasPrefix(rest, mod+".") || strings.Contains(rest, "."+mod+".") {
					return true
				}
			}
			return false
		}
	case "lora":
		return t.selectLoRA()
	}
	g := &llama.Model{Config: m.Config}
	g.Layers = make([]llama.Layer, nl)
	for _, p := range m.Named() {
		if !trainable(p.Name) {
			continue
		}
		grad := g.Slot(p.Name)
		*grad = make([]float32, len(p.Data))
		t.Params = append(t.Params, Param{Name: p.Name, Data: p.Data, Grad: *grad, NoDecay: strings.HasSuffix(p.Name, "norm.weight")})
	}
	if m.Config.TieWordEmbeddings {
		g.LMHead = g.Embed
	}
	if len(t.Params) == 0 {
		return fmt.Errorf("nothing to train: check freeze_trainable_modules %v", c.FreezeTrainableMods)
	}
	t.Grads = g
	return nil
}

func abs(x int) int { return max(x, -x) }

// savedModules maps additional_target module names to their tensors.
var savedModules = map[string]string{"embed_tokens": "model.embed_tokens.weight", "lm_head": "lm_head.weight", "norm": "model.norm.weight"}

// selectLoRA adds adapters (new, or adapter_name_or_path's to train on)
// and trains them and additional_target's modules whole; the base stays
// frozen.
func (t *Trainer) selectLoRA() error {
	m, c := t.Model, &t.Cfg
	if c.AdapterNameOrPath != "" {
		ac, _, err := m.LoadAdapter(c.AdapterNameOrPath)
		if err != nil {
			return err
		}
		c.LoraRank, c.LoraAlpha, c.LoraDropout, c.UseRSLoRA, c.LoraTarget = ac.R, ac.LoraAlpha, ac.LoraDropout, ac.UseRSLoRA, ac.TargetModules
		c.AdditionalTarget = append(c.AdditionalTarget, ac.ModulesToSave...)
		fmt.Fprintf(t.Log, "training adapter %s further (r %d, alpha %g, targets %v)\n", c.AdapterNameOrPath, ac.R, ac.LoraAlpha, ac.TargetModules)
	} else {
		targets := c.LoraTarget
		for _, tg := range c.LoraTarget {
			if tg == "all" {
				targets = llama.LoRAModules
				break
			}
			if !slices.Contains(llama.LoRAModules, tg) {
				return fmt.Errorf("key lora_target: %q is not a llama projection; use all or some of %s", tg, strings.Join(llama.LoRAModules, ","))
			}
		}
		scale := c.LoraAlpha / float64(c.LoraRank)
		if c.UseRSLoRA {
			scale = c.LoraAlpha / math.Sqrt(float64(c.LoraRank))
		}
		m.AddLoRA(targets, c.LoraRank, float32(scale), c.LoraDropout, c.Seed)
	}
	if m.Config.VocabSize != t.baseVocab {
		for _, mod := range []string{"embed_tokens", "lm_head"} {
			if !slices.Contains(c.AdditionalTarget, mod) {
				c.AdditionalTarget = append(c.AdditionalTarget, mod)
				fmt.Fprintf(t.Log, "the vocabulary was resized: training %s whole beside the adapters\n", mod)
			}
		}
	}
	g := m.LoRAGrads()
	for _, a := range m.Adapters() {
		gl := g.Weight(a.Name).LoRA
		ka, kb := llama.LoRAKeys(a.Name)
		t.Params = append(t.Params, Param{Name: ka, Data: a.LoRA.A, Grad: gl.A}, Param{Name: kb, Data: a.LoRA.B, Grad: gl.B})
		t.adapters = append(t.adapters, a.LoRA)
	}
	t.saved = nil
	for _, mod := range c.AdditionalTarget {
		name, ok := savedModules[mod]
		if !ok {
			return fmt.Errorf("key additional_target: %q; use embed_tokens, lm_head or norm", mod)
		}
		if mod == "lm_head" && m.Config.TieWordEmbeddings {
			if !slices.Contains(c.AdditionalTarget, "embed_tokens") {
				return fmt.Errorf("key additional_target: lm_head is tied to embed_tokens in this model; name embed_tokens")
			}
			continue
		}
		if slices.Contains(t.saved, name) {
			continue
		}
		grad := g.Slot(name)
		*grad = make([]float32, len(*m.Slot(name)))
		t.Params = append(t.Params, Param{Name: llama.SavedModuleKey(name), Data: *m.Slot(name), Grad: *grad, NoDecay: mod == "norm"})
		t.saved = append(t.saved, name)
	}
	if m.Config.TieWordEmbeddings {
		g.LMHead = g.Embed
	}
	if len(t.Params) == 0 {
		return fmt.Errorf("nothing to train: lora_target %v matched no projection", c.LoraTarget)
	}
	t.Grads = g
	return nil
}

// adapterConfig describes the run's adapter as PEFT's adapter_config.json.
func (t *Trainer) adapterConfig() llama.AdapterConfig {
	c := &t.Cfg
	var targets []string
	for _, a := range t.Model.Adapters() {
		if !slices.Contains(targets, a.Module) {
			targets = append(targets, a.Module)
		}
	}
	sort.Strings(targets)
	var saved []string
	for _, mod := range c.AdditionalTarget {
		if !slices.Contains(saved, mod) {
			saved = append(saved, mod)
		}
	}
	return llama.AdapterConfig{BaseModel: c.ModelNameOrPath, R: c.LoraRank, LoraAlpha: c.LoraAlpha, LoraDropout: c.LoraDropout,
		TargetModules: targets, ModulesToSave: saved, UseRSLoRA: c.UseRSLoRA}
}

// stepBatches returns the micro-batches of optimizer step s: within an
// epoch, gradient_accumulation_steps consecutive batches of an order
// shuffled by the seed and the epoch (so that a resumed run sees exactly
// what an uninterrupted one would); the epoch's last step takes what is left.
func (t *Trainer) stepBatches(s int) [][]Example {
	epoch, u := s/t.stepsPerEpoch, s%t.stepsPerEpoch
	if t.order == nil || t.orderEpoch != epoch {
		t.order = make([]int, len(t.Train))
		for i := range t.order {
			t.order[i] = i
		}
		rng := rand.New(rand.NewPCG(t.Cfg.Seed, uint64(epoch)))
		rng.Shuffle(len(t.order), func(i, j int) { t.order[i], t.order[j] = t.order[j], t.order[i] })
		t.orderEpoch = epoch
	}
	var out [][]Example
	for pos := u * t.Cfg.GradAccum; pos < min((u+1)*t.Cfg.GradAccum, t.perEpoch); pos++ {
		lo, hi := pos*t.Cfg.BatchSize, min((pos+1)*t.Cfg.BatchSize, len(t.order))
		exs := make([]Example, 0, hi-lo)
		for _, i := range t.order[lo:hi] {
			exs = append(exs, t.Train[i])
		}
		out = append(out, exs)
	}
	return out
}

func (t *Trainer) pad() int32 {
	if id := t.Tok.SpecialID("pad"); id >= 0 {
		return int32(id)
	}
	return 0
}

// StepResult is what one optimizer step measured.
type StepResult struct {
	Loss, GradNorm, LR float64
	Tokens             int // learned tokens, over which the loss is averaged
	Inputs             int // tokens fed (padding excluded), for the rate
	Skipped            bool
}

// TrainStep runs one optimizer step: forward and backward over the
// gradient-accumulation micro-batches, the loss averaged over all their
// learned tokens, clipping, then the update.
func (t *Trainer) TrainStep() StepResult {
	c := &t.Cfg
	micro := t.stepBatches(t.Step)
	batches := make([]Batch, len(micro))
	denom, inputs := 0, 0
	for i, exs := range micro {
		batches[i] = MakeBatch(exs, t.pad())
		for _, e := range exs {
			denom += e.Tokens()
			inputs += len(e.IDs)
		}
	}
	for _, p := range t.Params {
		clear(p.Grad)
	}
	var loss float64
	for i, b := range batches {
		for k, a := range t.adapters {
			a.Train, a.Seed = true, c.Seed^uint64((t.Step*c.GradAccum+i)*len(t.adapters)+k)<<8
		}
		t.acts.Reshape(&t.Model.Config, b.B, b.T)
		t.acts.LossDenom = denom
		t.Model.Forward(t.acts, b.IDs, b.Valid)
		l, n, dHidden := t.Model.LMLoss(t.acts, b.Labels, t.Grads, nil)
		t.Model.Backward(t.acts, dHidden, t.Grads)
		loss += l * float64(n) / float64(max(1, denom))
	}
	params, grads := t.slices()
	r := StepResult{Loss: loss, Tokens: denom, Inputs: inputs, LR: LR(c.LRSchedulerType, c.LearningRate, t.Step, t.Warmup, t.Total)}
	if c.MaxGradNorm > 0 {
		r.GradNorm = ClipGradNorm(grads, c.MaxGradNorm)
	} else {
		r.GradNorm = ClipGradNorm(grads, math.Inf(1))
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) || math.IsNaN(r.GradNorm) || math.IsInf(r.GradNorm, 0) {
		r.Skipped = true
	} else {
		t.Opt.Step(params, grads, r.LR)
	}
	t.Step++
	return r
}

// Evaluate is the mean loss over the validation set's learned tokens.
func (t *Trainer) Evaluate() (loss float64, tokens int) {
	var sum float64
	for _, a := range t.adapters {
		a.Train = false
	}
	for lo := 0; lo < len(t.Val); lo += t.Cfg.BatchSize {
		b := MakeBatch(t.Val[lo:min(lo+t.Cfg.BatchSize, len(t.Val))], t.pad())
		t.acts.Reshape(&t.Model.Config, b.B, b.T)
		t.acts.LossDenom = 0
		t.Model.Forward(t.acts, b.IDs, b.Valid)
		l, n, _ := t.Model.LMLoss(t.acts, b.Labels, nil, nil)
		sum += l * float64(n)
		tokens += n
	}
	if tokens == 0 {
		return math.NaN(), 0
	}
	return sum / float64(tokens), tokens
}

// ErrInterrupted reports a run stopped by a signal after saving.
var ErrInterrupted = errors.New("interrupted: saved a checkpoint; run again with resume_from_checkpoint: true to continue")

// Run trains to the end, logging, evaluating and saving as configured,
// and writes the final model to output_dir.
func (t *Trainer) Run() error {
	c := &t.Cfg
	if err := t.prepareOutput(); err != nil {
		return err
	}
	signal.Notify(t.interrupted, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(t.interrupted)
	var err error
	if t.metrics, err = openMetrics(c.OutputDir, t.Step); err != nil {
		return err
	}
	defer t.metrics.Close()
	fmt.Fprintf(t.Log, "%s: training %d tensors (%.2fM values) of a %.1fM-parameter model; %d examples (%d validation), %d steps of %d × %d sequences, warmup %d\n",
		c.FinetuningType, len(t.Params), float64(t.numTrained())/1e6, float64(t.Model.Config.NumParams())/1e6, len(t.Train), len(t.Val), t.Total, c.BatchSize, c.GradAccum, t.Warmup)
	if len(t.Val) > 0 && t.Step == 0 {
		if err := t.evaluate(); err != nil {
			return err
		}
	}
	start, startStep := time.Now(), t.Step
	var winLoss, winTokens float64
	var winN int
	var winStart = time.Now()
	for t.Step < t.Total {
		r := t.TrainStep()
		if r.Skipped {
			t.nanRun++
			fmt.Fprintf(t.Log, "step %d: loss %g, grad norm %g: not finite, step skipped\n", t.Step, r.Loss, r.GradNorm)
			if t.nanRun >= 5 {
				return fmt.Errorf("step %d: 5 steps in a row had a non-finite loss or gradient; lower learning_rate or check the data", t.Step)
			}
		} else {
			t.nanRun = 0
			winLoss += r.Loss
			winN++
		}
		winTokens += float64(r.Inputs)
		if t.Step%max(1, c.LoggingSteps) == 0 || t.Step == t.Total {
			el := time.Since(winStart).Seconds()
			rate := winTokens / el
			eta := time.Duration(float64(time.Since(start)) / float64(t.Step-startStep) * float64(t.Total-t.Step))
			avg := math.NaN() // every step of the window was skipped
			if winN > 0 {
				avg = winLoss / float64(winN)
			}
			rec := map[string]any{"step": t.Step, "epoch": t.epoch(), "loss": avg, "lr": r.LR, "grad_norm": r.GradNorm, "tokens_per_s": rate}
			fmt.Fprintf(t.Log, "step %d/%d  epoch %.2f  loss %.4f  lr %.3g  grad norm %.3f  %.0f tokens/s  ETA %s\n",
				t.Step, t.Total, t.epoch(), avg, r.LR, r.GradNorm, rate, eta.Round(time.Second))
			if err := t.metrics.Write(rec); err != nil {
				return err
			}
			// The curve is redrawn as the run goes, so it can be watched.
			if err := t.metrics.Plot(filepath.Join(c.OutputDir, "training_loss.svg")); err != nil {
				return err
			}
			winLoss, winTokens, winN, winStart = 0, 0, 0, time.Now()
		}
		if len(t.Val) > 0 && (t.Step%max(1, c.EvalSteps) == 0 || t.Step == t.Total) {
			if err := t.evaluate(); err != nil {
				return err
			}
		}
		stop := false
		select {
		case <-t.interrupted:
			stop = true
		default:
		}
		if stop || (c.SaveSteps > 0 && t.Step%c.SaveSteps == 0 && t.Step < t.Total) {
			if err := t.SaveCheckpoint(); err != nil {
				return err
			}
		}
		if stop {
			return ErrInterrupted
		}
	}
	if err := t.SaveModel(c.OutputDir); err != nil {
		return err
	}
	return t.metrics.Plot(filepath.Join(c.OutputDir, "training_loss.svg"))
}

// evaluate logs the validation loss and perplexity.
func (t *Trainer) evaluate() error {
	l, n := t.Evaluate()
	fmt.Fprintf(t.Log, "step %d: eval loss %.4f, perplexity %.2f over %d tokens\n", t.Step, l, math.Exp(l), n)
	return t.metrics.Write(map[string]any{"step": t.Step, "epoch": t.epoch(), "eval_loss": l, "eval_ppl": math.Exp(l)})
}

func (t *Trainer) epoch() float64 {
	return float64(t.Step) / float64(t.stepsPerEpoch)
}

// slices lists the trained values and their gradients, as the optimizer
// takes them.
func (t *Trainer) slices() (params, grads [][]float32) {
	if t.params == nil {
		for _, p := range t.Params {
			t.params, t.grads = append(t.params, p.Data), append(t.grads, p.Grad)
		}
	}
	return t.params, t.grads
}

func (t *Trainer) numTrained() int {
	n := 0
	for _, p := range t.Params {
		n += len(p.Data)
	}
	return n
}

// prepareOutput refuses to write over an earlier run's output unless told.
func (t *Trainer) prepareOutput() error {
	c := &t.Cfg
	if entries, err := os.ReadDir(c.OutputDir); err == nil && len(entries) > 0 && !c.OverwriteOutputDir && t.Step == 0 {
		return fmt.Errorf("output_dir %s is not empty: set overwrite_output_dir: true, or resume_from_checkpoint: true to continue it", c.OutputDir)
	}
	return os.MkdirAll(c.OutputDir, 0o755)
}

// SaveModel writes the model as a Hugging Face directory, or with LoRA the
// adapter as PEFT's, with the tokenizer.
func (t *Trainer) SaveModel(dir string) error {
	if t.Cfg.FinetuningType == "lora" {
		if err := t.Model.SaveAdapter(dir, t.adapterConfig(), t.saved); err != nil {
			return err
		}
	} else if err := t.Model.Save(dir, "float32", 0); err != nil {
		return err
	}
	pad := ""
	if id := t.Tok.SpecialID("pad"); id >= 0 {
		pad = t.Tok.IDToPiece(id)
	}
	return hfdir.WriteTokenizer(dir, t.Tok.Model(), pad)
}
