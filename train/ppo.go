package train

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/optim"
	"zhllama/rlhf"
	"zhllama/tensor"
)

// PPO is stage ppo, TRL 0.9.6's PPOTrainer as LLaMA-Factory drives it. Each
// step takes an experience batch of per_device_train_batch_size ×
// gradient_accumulation_steps × ppo_buffer_size prompts, generates the
// policy's responses, scores them with the reward model, computes the
// per-token KL-penalised rewards against the reference and GAE with the
// critic (the policy's trunk plus a value head), then makes ppo_epochs
// passes over the batch in shuffled mini-batches, one optimizer update per
// gradient_accumulation_steps mini-batches. The KL coefficient and the
// running score statistics are part of the checkpoint, so a resumed run
// continues exactly.
type PPO struct {
	*Tuned
	Prompts            Source
	Critic, criticGrad *llama.ValueHead
	Reward             Scorer
	KL                 rlhf.KLController
	Moments            rlhf.RunningMoments
	Clip               rlhf.Clip

	sampling   llama.Sampling
	ref        *llama.Model      // nil: the policy with its adapters off
	policy     func(string) bool // the policy's adapters (nil: all)
	drop       headDropout
	acts       *llama.Acts
	refActs    *llama.Acts
	params     []optim.Param
	pad        int32
	batch      int // rollouts per step
	perEpoch   int
	order      []int
	orderEpoch int
	logpBuf    []float32
	valueBuf   []float32
	logitsBuf  [2][]float32
	dValues    []float32
	dCritic    []float32
	dLogpBuf   []float32
}

// rollout is one prompt's experience: the sequence, where the response
// starts, and per response token the old log-probabilities, values,
// penalties, advantages and returns.
type rollout struct {
	seq                   []int32
	qlen                  int
	logp, ref, values, kl []float64
	adv, ret              []float64
	raw, score            float64 // the reward model's score, and as normalised
}

// NewPPO sets up stage ppo over t on the given number of ranks: prompts,
// critic head, reward model and reference.
func NewPPO(t *Tuned, prompts Source, ranks int) (*PPO, error) {
	c := t.cfg
	h := t.Model.Config.HiddenSize
	o := &PPO{Tuned: t, Prompts: prompts, criticGrad: llama.NewValueHead(h), orderEpoch: -1,
		batch: c.BatchSize * c.GradAccum * ranks * c.PPOBufferSize,
		KL:    rlhf.KLController{Value: c.InitKLCoef, Horizon: c.Horizon}, Moments: rlhf.NewRunningMoments(),
		Clip: rlhf.Clip{Range: c.ClipRange, ValueRange: c.ClipRangeValue, VFCoef: c.VFCoef, RatioThreshold: c.RatioThreshold}}
	if c.AdapKLCtrl {
		o.KL.Target = c.PPOTarget
	}
	o.drop.p = 0.1
	if p := t.Model.Config.SummaryDropoutProb; p != nil {
		o.drop.p = *p
	}
	if prompts.Len() < o.batch {
		return nil, fmt.Errorf("stage ppo: %d prompts, fewer than one experience batch of %d (per_device_train_batch_size × gradient_accumulation_steps × ranks × ppo_buffer_size)", prompts.Len(), o.batch)
	}
	o.perEpoch = prompts.Len() / o.batch // TRL's loader drops the last partial batch
	o.pad = t.padID()
	o.sampling = llama.Sampling{MaxNewTokens: c.MaxNewTokens, Temperature: c.Temperature, TopK: c.TopK, TopP: c.TopP, RepetitionPenalty: c.RepetitionPenalty}
	if !c.DoSample {
		o.sampling.Temperature = 0
	}
	if err := o.sampling.Validate(); err != nil {
		return nil, fmt.Errorf("key %w", err)
	}
	if eos := t.Tok.SpecialID("eos"); eos >= 0 {
		o.sampling.StopIDs = []int{eos}
	}
	rows, bt := c.BatchSize, roundUp(min(prompts.MaxLen()+c.MaxNewTokens, t.Model.Config.MaxPositionEmbeddings))
	o.acts = t.newActs(rows, bt)
	if err := o.loadCritic(); err != nil {
		return nil, err
	}
	var err error
	if o.Reward, err = newRewardScorer(c, t, o.acts, rows, o.pad); err != nil {
		return nil, err
	}
	if c.RewardModelType == "lora" {
		o.policy = llama.OnlyAdapters(llama.DefaultAdapter)
	}
	o.sampling.Adapters = o.policy
	if o.ref, err = t.referenceModel(); err != nil {
		return nil, err
	}
	if o.ref != nil {
		o.refActs = o.ref.NewActs(rows, bt)
	}
	o.params = append(append([]optim.Param(nil), t.params...),
		optim.Param{Name: llama.ValueHeadWeight, Data: o.Critic.W, Grad: o.criticGrad.W, Group: decayGroup},
		optim.Param{Name: llama.ValueHeadBias, Data: o.Critic.B, Grad: o.criticGrad.B, Group: noDecayGroup})
	return o, nil
}

// loadCritic reads the critic's value head from adapter_name_or_path or
// model_name_or_path, as LLaMA-Factory does, or starts a new one.
func (o *PPO) loadCritic() error {
	c, h := o.cfg, o.Model.Config.HiddenSize
	for _, dir := range []string{c.AdapterNameOrPath, c.ModelNameOrPath} {
		if _, err := os.Stat(filepath.Join(dir, hfdir.ValueHeadFile)); dir != "" && err == nil {
			v, err := hfdir.LoadValueHead(dir, h)
			if err != nil {
				return err
			}
			o.Critic = v
			fmt.Fprintf(o.log, "critic: value head from %s\n", dir)
			return nil
		}
	}
	o.Critic = llama.NewValueHead(h)
	o.Critic.Init(rand.New(rand.NewPCG(c.Seed, 0xc41)))
	fmt.Fprintf(o.log, "critic: a new value head (no %s beside the model or adapter)\n", hfdir.ValueHeadFile)
	return nil
}

func (o *PPO) Len() int               { return o.Prompts.Len() }
func (o *PPO) StepsPerEpoch() int     { return o.perEpoch }
func (o *PPO) Trained() []optim.Param { return o.params }

// Weight and Accumulate are not used: PPO takes its own steps (Stepper).
func (o *PPO) Weight(batch []int) int                                 { return len(batch) }
func (o *PPO) Accumulate(batch []int, denom int, micro uint64) Result { return Result{} }

// Evaluate: PPO has no validation set (LLaMA-Factory forbids one).
func (o *PPO) Evaluate() (map[string]float64, bool) { return nil, false }

// Save writes the policy (model or adapter) and the critic's value head.
func (o *PPO) Save(dir string) error {
	if err := o.Tuned.Save(dir); err != nil {
		return err
	}
	return hfdir.SaveValueHead(dir, o.Critic)
}

// ppoState is what a checkpoint keeps beyond the tensors.
type ppoState struct {
	KLCoef  float64             `json:"kl_coef"`
	Moments rlhf.RunningMoments `json:"score_moments"`
}

func (o *PPO) State() any { return ppoState{o.KL.Value, o.Moments} }

func (o *PPO) SetState(b []byte) error {
	var s ppoState
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s: %w", objectiveStateFile, err)
	}
	o.KL.Value, o.Moments = s.KLCoef, s.Moments
	return nil
}

// prompts returns step s's experience batch: consecutive prompts of an
// order shuffled by the seed and the epoch.
func (o *PPO) prompts(s int) []int {
	epoch, u := s/o.perEpoch, s%o.perEpoch
	if o.orderEpoch != epoch {
		o.order, o.orderEpoch = shuffled(o.Prompts.Len(), o.cfg.Seed, epoch), epoch
	}
	return o.order[u*o.batch : (u+1)*o.batch]
}

// stepSeed is step s's random stream (sampling, shuffles, dropout): drawn
// from the seed and the step alone, so a resumed run repeats it.
func (o *PPO) stepSeed(s int) uint64 {
	return o.cfg.Seed ^ (uint64(s)+1)*0x9e3779b97f4a7c15
}

// Step runs one PPO step: generate, score, evaluate the experience, then
// ppo_epochs passes of updates. On several ranks, mini-batch m of the
// experience batch is generated, scored and evaluated by rank m mod N and
// the ranks share the rollouts; the updates combine gradients as the Loop
// does (see parallel). Every mini-batch is computed alone with its own
// random stream, so the run is the one process makes with
// gradient_accumulation_steps × N, bit for bit.
func (o *PPO) Step(l *Loop) StepResult {
	c := o.cfg
	r := StepResult{LR: optim.LR(c.LRSchedulerType, c.LearningRate, l.Step, l.Warmup, l.Total)}
	seed := o.stepSeed(l.Step)
	idx := o.prompts(l.Step)
	var mine [][]*rollout
	start := time.Now()
	for m := l.Comm.Rank(); m*c.BatchSize < len(idx); m += l.Comm.Size() {
		rolls, err := o.generateMini(idx[m*c.BatchSize:min((m+1)*c.BatchSize, len(idx))], miniSeed(seed, m))
		if err != nil {
			r.Err = err
			return r
		}
		mine = append(mine, rolls)
	}
	genTime := time.Since(start)
	start = time.Now()
	for _, rolls := range mine {
		if r.Err = o.score(rolls); r.Err != nil {
			return r
		}
	}
	scoreTime := time.Since(start)
	start = time.Now()
	for _, rolls := range mine {
		o.evaluate(rolls)
	}
	rolls, err := o.share(l.Comm, mine, len(idx))
	if err != nil {
		r.Err = err
		return r
	}
	raw := make([]float64, len(rolls))
	for i, ro := range rolls {
		raw[i] = ro.raw
	}
	scores := raw
	if c.PPOScoreNorm {
		scores = o.Moments.Update(raw)
	}
	m, err := o.advantages(rolls, scores)
	if err != nil {
		r.Err = err
		return r
	}
	m["reward"] = mean(raw)
	stats, err := o.optimize(l, rolls, seed, &r)
	if err != nil {
		r.Err = err
		return r
	}
	for k, v := range stats {
		m[k] = v
	}
	m["time/generate"], m["time/score"], m["time/train"] = genTime.Seconds(), scoreTime.Seconds(), time.Since(start).Seconds()
	o.KL.Update(m["objective/kl"], len(rolls))
	r.Metrics = m
	r.Loss = m["ppo/loss/total"]
	for _, ro := range rolls {
		r.Inputs += len(ro.seq)
		r.Tokens += len(ro.seq) - ro.qlen
	}
	return r
}

// miniSeed is the random stream of mini-batch m of a step's experience.
func miniSeed(seed uint64, m int) uint64 {
	return seed ^ (uint64(m)+1)*0xbf58476d1ce4e5b9
}

// generate samples the responses to prompts idx, mini-batch by
// mini-batch of per_device_train_batch_size, as LLaMA-Factory does.
func (o *PPO) generate(idx []int, seed uint64) ([]*rollout, error) {
	b := o.cfg.BatchSize
	var all []*rollout
	for m := 0; m*b < len(idx); m++ {
		rolls, err := o.generateMini(idx[m*b:min((m+1)*b, len(idx))], miniSeed(seed, m))
		if err != nil {
			return nil, err
		}
		all = append(all, rolls...)
	}
	return all, nil
}

// generateMini samples a response to each prompt. A response keeps its
// EOS; one that is empty (the prompt filled the context) is a lone EOS, as
// LLaMA-Factory allows.
func (o *PPO) generateMini(idx []int, seed uint64) ([]*rollout, error) {
	queries := make([][]int32, len(idx))
	for i, k := range idx {
		queries[i] = o.Prompts.Example(k).IDs
	}
	s := o.sampling
	s.Seed = seed
	out, err := o.Model.GenerateBatch(queries, s, nil)
	if err != nil {
		return nil, fmt.Errorf("generating the rollouts: %w", err)
	}
	rolls := make([]*rollout, len(idx))
	for i, q := range queries {
		resp := out[i]
		if len(resp) == 0 {
			resp = []int{int(o.pad)}
		}
		seq := append(make([]int32, 0, len(q)+len(resp)), q...)
		for _, id := range resp {
			seq = append(seq, int32(id))
		}
		rolls[i] = &rollout{seq: seq, qlen: len(q)}
	}
	return rolls, nil
}

// score asks the reward model for the rollouts' raw scores.
func (o *PPO) score(rolls []*rollout) error {
	seqs := make([][]int32, len(rolls))
	for i, ro := range rolls {
		seqs[i] = ro.seq
	}
	raw, err := o.Reward.Score(seqs)
	if err != nil {
		return err
	}
	for i, ro := range rolls {
		ro.raw = raw[i]
	}
	return nil
}

// wireRollout is an evaluated rollout as the ranks exchange it.
type wireRollout struct {
	Seq                   []int32
	QLen                  int
	Logp, Ref, Values, KL []float64
	Raw                   float64
}

// share gives every rank all n rollouts of the step in global order: each
// sends its mini-batches (m = rank, rank+N, …), scored and evaluated.
func (o *PPO) share(comm Comm, mine [][]*rollout, n int) ([]*rollout, error) {
	size := comm.Size()
	if size == 1 {
		var all []*rollout
		for _, rolls := range mine {
			all = append(all, rolls...)
		}
		return all, nil
	}
	var send [][]wireRollout
	for _, rolls := range mine {
		w := make([]wireRollout, len(rolls))
		for i, ro := range rolls {
			w[i] = wireRollout{ro.seq, ro.qlen, ro.logp, ro.ref, ro.values, ro.kl, ro.raw}
		}
		send = append(send, w)
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(send); err != nil {
		return nil, err
	}
	msgs, err := comm.AllgatherBytes(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("sharing the rollouts: %w", err)
	}
	per := make([][][]wireRollout, size)
	for q, msg := range msgs {
		if err := gob.NewDecoder(bytes.NewReader(msg)).Decode(&per[q]); err != nil {
			return nil, fmt.Errorf("rank %d's rollouts: %w", q, err)
		}
	}
	all := make([]*rollout, 0, n)
	for m := 0; len(all) < n; m++ {
		q, j := m%size, m/size
		if j >= len(per[q]) {
			return nil, fmt.Errorf("rank %d sent %d mini-batches of rollouts, mini-batch %d is missing", q, len(per[q]), m)
		}
		for _, w := range per[q][j] {
			all = append(all, &rollout{seq: w.Seq, qlen: w.QLen, logp: w.Logp, ref: w.Ref, values: w.Values, kl: w.KL, raw: w.Raw})
		}
	}
	if len(all) != n {
		return nil, fmt.Errorf("the ranks sent %d rollouts, the step has %d", len(all), n)
	}
	return all, nil
}

// batchOf lays rollouts out as a right-padded batch whose labels are the
// response tokens alone.
func (o *PPO) batchOf(rolls []*rollout) Batch {
	exs := make([]Example, len(rolls))
	for i, ro := range rolls {
		labels := make([]int32, len(ro.seq))
		for t := range labels {
			labels[t] = tensor.IgnoreIndex
			if t >= ro.qlen {
				labels[t] = ro.seq[t]
			}
		}
		exs[i] = Example{IDs: ro.seq, Labels: labels}
	}
	return MakeBatch(exs, o.pad)
}

// forward runs m over rolls and returns, per response token, the
// log-probability (and with the critic, the value of the state before
// it). Position qlen−1+t predicts response token t.
func (o *PPO) forward(m *llama.Model, a *llama.Acts, adapters func(string) bool, rolls []*rollout, critic bool, dropSeed uint64) (b Batch, logp, values [][]float64) {
	b = o.batchOf(rolls)
	a.Adapters, a.Dropout, a.Seed = adapters, dropSeed != 0, dropSeed
	a.Reshape(&m.Config, b.B, b.T)
	m.Forward(a, b.IDs, b.Valid)
	o.logpBuf = grow(&o.logpBuf, b.B*b.T)
	m.TokenLogProbs(a, b.Labels, o.logpBuf)
	if critic {
		o.valueBuf = grow(&o.valueBuf, b.B*b.T)
		o.Critic.Forward(o.valueBuf, o.drop.input(a.Hidden, dropSeed), b.B*b.T)
	}
	logp, values = make([][]float64, len(rolls)), make([][]float64, len(rolls))
	for i, ro := range rolls {
		n := len(ro.seq) - ro.qlen
		logp[i] = make([]float64, n)
		for t := range n {
			logp[i][t] = float64(o.logpBuf[i*b.T+ro.qlen-1+t])
		}
		if critic {
			values[i] = make([]float64, n)
			for t := range n {
				values[i][t] = float64(o.valueBuf[i*b.T+ro.qlen-1+t])
			}
		}
	}
	return b, logp, values
}

// experience evaluates the rollouts mini-batch by mini-batch and computes
// their per-token rewards and advantages from scores.
func (o *PPO) experience(rolls []*rollout, scores []float64) (map[string]float64, error) {
	for lo := 0; lo < len(rolls); lo += o.cfg.BatchSize {
		o.evaluate(rolls[lo:min(lo+o.cfg.BatchSize, len(rolls))])
	}
	return o.advantages(rolls, scores)
}

// evaluate computes a mini-batch's old log-probabilities and values, the
// reference's log-probabilities and the per-token KL penalties, without
// gradients.
func (o *PPO) evaluate(mini []*rollout) {
	c := o.cfg
	full := c.KLPenalty == "full"
	b, logp, values := o.forward(o.Model, o.acts, o.policy, mini, true, 0)
	if full {
		o.logitsBuf[0] = o.logits(o.Model, o.acts, b, 0)
	}
	refModel, refActs, adapters := o.Model, o.acts, llama.NoAdapters
	if o.ref != nil {
		refModel, refActs, adapters = o.ref, o.refActs, nil
	}
	_, ref, _ := o.forward(refModel, refActs, adapters, mini, false, 0)
	if full {
		o.logitsBuf[1] = o.logits(refModel, refActs, b, 1)
	}
	o.acts.Adapters = nil
	v := o.Model.Config.VocabSize
	for i, ro := range mini {
		ro.logp, ro.values, ro.ref = logp[i], values[i], ref[i]
		ro.kl = make([]float64, len(ro.logp))
		for t := range ro.kl {
			if full {
				at := (i*b.T + ro.qlen - 1 + t) * v
				ro.kl[t] = rlhf.FullKL(o.logitsBuf[0][at:at+v], o.logitsBuf[1][at:at+v])
			} else {
				ro.kl[t] = rlhf.KLPenalty(c.KLPenalty, ro.logp[t], ro.ref[t])
			}
		}
	}
}

// advantages computes the per-token rewards and GAE of evaluated rollouts
// and returns TRL's objective/* and scores statistics.
func (o *PPO) advantages(rolls []*rollout, scores []float64) (map[string]float64, error) {
	c := o.cfg
	kl, values := make([][]float64, len(rolls)), make([][]float64, len(rolls))
	pad := make([]int, len(rolls))
	longest := 0
	for _, ro := range rolls {
		longest = max(longest, len(ro.seq))
	}
	for i, ro := range rolls {
		kl[i], values[i], pad[i] = ro.kl, ro.values, longest-len(ro.seq)
		ro.score = scores[i]
	}
	rewards, klSum := rlhf.TokenRewards(kl, scores, o.KL.Value)
	adv, ret, err := rlhf.GAE(rewards, values, pad, c.Gamma, c.Lam, c.PPOWhitenRewards)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{"objective/kl_coef": o.KL.Value}
	n := float64(len(rolls))
	var nonScore float64
	for i, ro := range rolls {
		ro.adv, ro.ret = adv[i], ret[i]
		m["objective/kl"] += klSum[i] / n
		for t, lp := range ro.logp {
			m["objective/entropy"] -= lp / n
			nonScore -= o.KL.Value * kl[i][t]
		}
		m["tokens/responses_len_mean"] += float64(len(ro.seq)-ro.qlen) / n
		m["tokens/queries_len_mean"] += float64(ro.qlen) / n
	}
	m["ppo/mean_non_score_reward"] = nonScore / n
	m["ppo/mean_scores"] = mean(scores)
	m["ppo/std_scores"] = stddev(scores)
	return m, nil
}

// logits is m's full logits over batch b, kept in buffer k (kl_penalty
// full compares both models' distributions at every response token).
func (o *PPO) logits(m *llama.Model, a *llama.Acts, b Batch, k int) []float32 {
	buf := grow(&o.logitsBuf[k], b.B*b.T*m.Config.VocabSize)
	m.Logits(a, buf)
	return buf
}

// optimize makes ppo_epochs passes over the rollouts in mini-batches, an
// optimizer update per gradient_accumulation_steps of them (× ranks, each
// rank taking its share as the Loop does), and returns the means of TRL's
// ppo/* statistics.
func (o *PPO) optimize(l *Loop, rolls []*rollout, seed uint64, r *StepResult) (map[string]float64, error) {
	c := o.cfg
	mb, ga := c.BatchSize, l.accum
	sum := map[string]float64{}
	minis := 0
	maxNorm := c.MaxGradNorm
	if maxNorm <= 0 {
		maxNorm = math.Inf(1)
	}
	train := func(batch []int, k uint64) Result {
		mini := make([]*rollout, len(batch))
		for i, j := range batch {
			mini[i] = rolls[j]
		}
		st := o.trainMini(mini, 1/float64(ga), seed^(k+1)<<16)
		m := map[string]float64{
			"ppo/loss/policy": st.Policy, "ppo/loss/value": st.Value, "ppo/loss/total": st.Total,
			"ppo/policy/clipfrac": st.PolicyClipFrac, "ppo/policy/approxkl": st.ApproxKL, "ppo/policy/policykl": st.PolicyKL,
			"ppo/policy/ratio": st.Ratio, "ppo/policy/advantages_mean": st.AdvantagesMean, "ppo/val/clipfrac": st.ValueClipFrac,
		}
		if st.Skipped {
			m["ppo/skipped_batches"] = 1
		}
		return Result{Metrics: m}
	}
	for epoch := range c.PPOEpochs {
		perm := epochOrder(seed, epoch, len(rolls))
		for lo := 0; lo < len(rolls); lo += mb * ga {
			var micro [][]int
			for k := lo; k < min(lo+mb*ga, len(rolls)); k += mb {
				micro = append(micro, perm[k:min(k+mb, len(rolls))])
			}
			results, err := l.par.accumulate(train, micro, uint64(minis))
			if err != nil {
				return nil, err
			}
			minis += len(micro)
			for _, res := range results {
				for name, v := range res.Metrics {
					sum[name] += v
				}
			}
			if r.GradNorm, err = l.par.clip(maxNorm); err != nil {
				return nil, err
			}
			if math.IsNaN(r.GradNorm) || math.IsInf(r.GradNorm, 0) {
				r.Skipped = true
				continue
			}
			l.Opt.Step(r.LR)
			if err := l.par.afterStep(); err != nil {
				return nil, err
			}
		}
	}
	for k, v := range sum {
		if k != "ppo/skipped_batches" {
			sum[k] = v / float64(minis)
		}
	}
	return sum, nil
}

// epochOrder is the order in which PPO epoch epoch of a step takes its n
// rollouts, drawn from the step's seed.
func epochOrder(seed uint64, epoch, n int) []int {
	return rand.New(rand.NewPCG(seed, uint64(epoch))).Perm(n)
}

// trainMini runs a mini-batch forward with dropout, computes the PPO loss
// and adds scale times its gradient to the trained tensors'.
func (o *PPO) trainMini(mini []*rollout, scale float64, dropSeed uint64) rlhf.PPOStats {
	b, logp, vpred := o.forward(o.Model, o.acts, o.policy, mini, true, dropSeed|1)
	old, oldV, adv, ret := make([][]float64, len(mini)), make([][]float64, len(mini)), make([][]float64, len(mini)), make([][]float64, len(mini))
	for i, ro := range mini {
		old[i], oldV[i], adv[i], ret[i] = ro.logp, ro.values, ro.adv, ro.ret
	}
	st, dLp, dV := o.Clip.PPOLoss(logp, old, vpred, oldV, adv, ret)
	rows, h := b.B*b.T, o.Model.Config.HiddenSize
	dLogp := grow(&o.dLogpBuf, rows)
	dValues := grow(&o.dValues, rows)
	clear(dLogp)
	clear(dValues)
	for i, ro := range mini {
		for t := range dLp[i] {
			at := i*b.T + ro.qlen - 1 + t
			dLogp[at], dValues[at] = float32(dLp[i][t]*scale), float32(dV[i][t]*scale)
		}
	}
	dHidden := o.Model.TokenLogProbsBackward(o.acts, b.Labels, dLogp, o.Grads)
	dCritic := grow(&o.dCritic, rows*h)
	clear(dCritic)
	o.Critic.Backward(dCritic, o.criticGrad, dValues, o.drop.last(o.acts.Hidden), rows)
	o.drop.back(dCritic)
	for i, d := range dCritic {
		dHidden[i] += d
	}
	o.Model.Backward(o.acts, dHidden, o.Grads)
	o.acts.Adapters = nil
	return st
}

func mean(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(max(1, len(x)))
}

// stddev is the unbiased standard deviation, as torch.std.
func stddev(x []float64) float64 {
	if len(x) < 2 {
		return math.NaN()
	}
	m, s := mean(x), 0.0
	for _, v := range x {
		s += (v - m) * (v - m)
	}
	return math.Sqrt(s / float64(len(x)-1))
}
