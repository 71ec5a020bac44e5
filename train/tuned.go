package train

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/optim"
	"zhllama/spm"
	"zhllama/template"
)

// Tuned is a model being trained: the base (loaded, quantized, resized to
// the tokenizer), what of it trains (full, freeze or LoRA), the gradient
// holder, and how it is saved. Every objective trains one.
type Tuned struct {
	Model *llama.Model
	Grads *llama.Model
	Tok   *spm.Processor

	cfg       *Config
	log       io.Writer
	params    []optim.Param
	baseVocab int
	saved     []string // tensors an adapter saves whole
}

// Param groups: weight decay, and none for the norm weights (as
// transformers' Trainer groups them).
const (
	decayGroup = iota
	noDecayGroup
)

// LoadTuned loads c's tokenizer and model, resizes the embeddings to the
// tokenizer and sets up what trains.
func LoadTuned(c *Config, log io.Writer) (*Tuned, error) {
	t := &Tuned{cfg: c, log: log}
	tokPath := c.TokenizerNameOrPath
	if tokPath == "" {
		tokPath = c.ModelNameOrPath
	}
	var err error
	if t.Tok, err = spm.LoadProcessor(tokPath); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
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
	if t.Model, err = hfdir.LoadWith(c.ModelNameOrPath, llama.LoadOptions{QuantizeBits: c.QuantizationBit, Progress: progress}); err != nil {
		return nil, err
	}
	if c.QuantizationBit != 0 {
		fmt.Fprintf(log, "quantized the frozen projections to %d bits: the model holds %.1f MB\n", c.QuantizationBit, float64(t.Model.Bytes())/1e6)
	}
	t.baseVocab = t.Model.Config.VocabSize
	if err := t.resizeVocab(); err != nil {
		return nil, err
	}
	if c.FinetuningType == "lora" {
		err = t.selectLoRA()
	} else {
		err = t.selectParams()
	}
	return t, err
}

// Trained are the trained tensors, named as they are saved.
func (t *Tuned) Trained() []optim.Param { return t.params }

// Groups are the optimizer's parameter groups.
func (t *Tuned) Groups() []optim.Group {
	return []optim.Group{decayGroup: {Name: "decay", WeightDecay: t.cfg.WeightDecay}, noDecayGroup: {Name: "no_decay"}}
}

// resizeVocab grows the embeddings (and an untied head) to a tokenizer
// with more pieces than the model has rows, keeping the old rows exactly.
func (t *Tuned) resizeVocab() error {
	m, c := t.Model, &t.Model.Config
	old, n := c.VocabSize, t.Tok.Size()
	if n == old {
		return nil
	}
	if n < old {
		return fmt.Errorf("the tokenizer has %d pieces but the model %s has vocab_size %d: use the tokenizer the model was trained with", n, t.cfg.ModelNameOrPath, old)
	}
	h := c.HiddenSize
	rng := rand.New(rand.NewPCG(t.cfg.Seed, 0xe3b))
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
				switch t.cfg.NewEmbeddingInit {
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
	fmt.Fprintf(t.log, "resized the embeddings from %d to %d rows for the tokenizer (%s initialization of the new rows)\n", old, n, t.cfg.NewEmbeddingInit)
	return nil
}

// selectParams picks what trains in full and freeze runs, and allocates
// gradients for it only.
func (t *Tuned) selectParams() error {
	m, c := t.Model, t.cfg
	nl := m.Config.NumHiddenLayers
	trainable := func(llama.Ref) bool { return true }
	if c.FinetuningType == "freeze" {
		n := c.FreezeTrainableLayer
		if n == 0 || abs(n) > nl {
			return fmt.Errorf("key freeze_trainable_layers: %d; use 1..%d (the last layers) or -1..-%d (the first)", n, nl, nl)
		}
		first, last := nl-n, nl-1 // the last n layers
		if n < 0 {
			first, last = 0, -n-1
		}
		trainable = func(r llama.Ref) bool {
			if r.Layer < first || r.Layer > last {
				return false
			}
			rest := strings.TrimPrefix(r.Name, fmt.Sprintf("model.layers.%d.", r.Layer))
			for _, mod := range c.FreezeTrainableMods {
				if mod == "all" || strings.HasPrefix(rest, mod+".") || strings.Contains(rest, "."+mod+".") {
					return true
				}
			}
			return false
		}
	}
	g := &llama.Model{Config: m.Config}
	for _, r := range m.Refs() {
		if !trainable(r) {
			continue
		}
		if err := t.trainWhole(g, r, r.Name); err != nil {
			return err
		}
	}
	return t.setGrads(g, fmt.Sprintf("check freeze_trainable_modules %v", c.FreezeTrainableMods))
}

// trainWhole trains ref whole under name, its gradient in g.
func (t *Tuned) trainWhole(g *llama.Model, ref llama.Ref, name string) error {
	gr, err := g.Tensor(ref.Name)
	if err != nil {
		return err
	}
	*gr.Data = make([]float32, len(*ref.Data))
	t.params = append(t.params, optim.Param{Name: name, Data: *ref.Data, Grad: *gr.Data, Group: group(ref)})
	return nil
}

// setGrads keeps g as the gradient holder (its head tied as the model's),
// or says why nothing trains.
func (t *Tuned) setGrads(g *llama.Model, why string) error {
	if len(t.params) == 0 {
		return fmt.Errorf("nothing to train: %s", why)
	}
	if g.Config.TieWordEmbeddings {
		g.LMHead = g.Embed
	}
	t.Grads = g
	return nil
}

// group puts norm weights in the no-decay group.
func group(r llama.Ref) int {
	if r.Matrix {
		return decayGroup
	}
	return noDecayGroup
}

func abs(x int) int { return max(x, -x) }

// selectLoRA adds adapters (new, or adapter_name_or_path's to train on)
// and trains them and additional_target's modules whole; the base stays
// frozen.
func (t *Tuned) selectLoRA() error {
	m, c := t.Model, t.cfg
	if c.AdapterNameOrPath != "" {
		ac, _, err := hfdir.LoadAdapter(m, c.AdapterNameOrPath, llama.DefaultAdapter)
		if err != nil {
			return err
		}
		c.LoraRank, c.LoraAlpha, c.LoraDropout, c.UseRSLoRA = ac.R, ac.LoraAlpha, ac.LoraDropout, ac.UseRSLoRA
		c.AdditionalTarget = append(c.AdditionalTarget, ac.ModulesToSave...)
		fmt.Fprintf(t.log, "training adapter %s further (r %d, alpha %g, targets %v)\n", c.AdapterNameOrPath, ac.R, ac.LoraAlpha, ac.TargetModules)
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
		m.AddLoRA(llama.DefaultAdapter, targets, c.LoraRank, float32(scale), c.LoraDropout, c.Seed)
	}
	if m.Config.VocabSize != t.baseVocab {
		for _, mod := range []string{"embed_tokens", "lm_head"} {
			if !slices.Contains(c.AdditionalTarget, mod) {
				c.AdditionalTarget = append(c.AdditionalTarget, mod)
				fmt.Fprintf(t.log, "the vocabulary was resized: training %s whole beside the adapters\n", mod)
			}
		}
	}
	g := m.LoRAGrads()
	for _, a := range m.Adapters(llama.DefaultAdapter) {
		gr, err := g.Tensor(a.Name)
		if err != nil {
			return err
		}
		gl := gr.Weight.Adapter(llama.DefaultAdapter)
		ka, kb := hfdir.LoRAKeys(a.Name)
		t.params = append(t.params, optim.Param{Name: ka, Data: a.LoRA.A, Grad: gl.A}, optim.Param{Name: kb, Data: a.LoRA.B, Grad: gl.B})
	}
	t.saved = nil
	for _, mod := range c.AdditionalTarget {
		name, ok := llama.SavedModules[mod]
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
		ref, err := m.Tensor(name)
		if err != nil {
			return err
		}
		if err := t.trainWhole(g, ref, hfdir.SavedModuleKey(name)); err != nil {
			return err
		}
		t.saved = append(t.saved, name)
	}
	return t.setGrads(g, fmt.Sprintf("lora_target %v matched no projection", c.LoraTarget))
}

// adapterConfig describes the run's adapter as PEFT's adapter_config.json.
func (t *Tuned) adapterConfig() hfdir.AdapterConfig {
	c := t.cfg
	var targets []string
	for _, a := range t.Model.Adapters(llama.DefaultAdapter) {
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
	return hfdir.AdapterConfig{BaseModel: c.ModelNameOrPath, R: c.LoraRank, LoraAlpha: c.LoraAlpha, LoraDropout: c.LoraDropout,
		TargetModules: hfdir.Modules{List: targets}, ModulesToSave: saved, UseRSLoRA: c.UseRSLoRA}
}

// Save writes the model as a Hugging Face directory, or with LoRA the
// adapter as PEFT's, with the tokenizer; after a stage that trains on
// conversations, tokenizer_config.json carries the template's Jinja as
// chat_template, so chat, serve, transformers and llama.cpp build the
// prompts training did.
func (t *Tuned) Save(dir string) error {
	if t.cfg.FinetuningType == "lora" {
		if err := hfdir.SaveAdapter(t.Model, dir, llama.DefaultAdapter, t.adapterConfig(), t.saved); err != nil {
			return err
		}
	} else if err := hfdir.Save(t.Model, dir, "float32", 0); err != nil {
		return err
	}
	chat := ""
	if t.cfg.Stage != "pt" {
		tpl, err := template.Get(t.cfg.Template)
		if err != nil {
			return err
		}
		chat = tpl.Jinja()
	}
	return hfdir.SaveTokenizer(dir, t.Tok, chat)
}

// numTrained counts the trained values.
func (t *Tuned) numTrained() int {
	n := 0
	for _, p := range t.params {
		n += len(p.Data)
	}
	return n
}

// padID is the id batches are padded with: the pad piece, else EOS as
// LLaMA-Factory pads when there is none, else 0.
func (t *Tuned) padID() int32 { return PadID(t.Tok) }

// newActs are activations for rows × bt tokens, checkpointed when the run
// asks for gradient checkpointing.
func (t *Tuned) newActs(rows, bt int) *llama.Acts {
	if t.cfg.GradientCheckpoint {
		return t.Model.NewCheckpointedActs(rows, bt)
	}
	return t.Model.NewActs(rows, bt)
}

// backwardSeq takes gradients with respect to each row's sequence
// log-probability back through the LM head and the model (after the
// forward pass that left b's activations in a).
func (t *Tuned) backwardSeq(a *llama.Acts, b Batch, g []float64, buf *[]float32) {
	dLogp := spreadSeqGrad(b, g, buf)
	dHidden := t.Model.TokenLogProbsBackward(a, b.Labels, dLogp, t.Grads)
	t.Model.Backward(a, dHidden, t.Grads)
}

// shareResult is a micro-batch's Result with its loss and metrics as
// share of the step's means, and the tokens it fed.
func shareResult(b Batch, loss, share float64, metrics map[string]float64) Result {
	r := Result{Loss: loss * share, Metrics: map[string]float64{}}
	for k, v := range metrics {
		r.Metrics[k] = v * share
	}
	for _, ok := range b.Valid {
		if ok {
			r.Inputs++
		}
	}
	return r
}

// batchesOf calls f with consecutive batches of up to size of the indices
// 0..total−1, each with its share of the whole.
func batchesOf(total, size int, f func(batch []int, w float64)) {
	for lo := 0; lo < total; lo += size {
		batch := make([]int, 0, size)
		for k := lo; k < min(lo+size, total); k++ {
			batch = append(batch, k)
		}
		f(batch, float64(len(batch))/float64(total))
	}
}

// addWeighted adds w times a batch's loss and metrics to an evaluation's
// means.
func addWeighted(out map[string]float64, loss float64, metrics map[string]float64, w float64) {
	out["loss"] += loss * w
	for k, v := range metrics {
		out[k] += v * w
	}
}
