package rlhf

import (
	"fmt"
	"math"
)

// PPO's arithmetic as TRL 0.9.6 computes it under LLaMA-Factory. A batch of
// rollouts is held per row over its response tokens only: row i's slices
// have one entry per response token (logp[i][t] is the policy's
// log-probability of response token t, values[i][t] the critic's value of
// the state before it). Positions outside the response carry nothing in
// TRL's masked sums, so this is the same arithmetic without the masks.

// KLPenalty is the per-token penalty kind (kl_penalty): kl = logp − ref,
// abs = |logp − ref|, mse = ½(logp − ref)². "full" (the KL over the
// vocabulary) is computed from the logits by the caller.
func KLPenalty(kind string, logp, ref float64) float64 {
	d := logp - ref
	switch kind {
	case "abs":
		return math.Abs(d)
	case "mse":
		return 0.5 * d * d
	}
	return d
}

// ValidKLPenalty checks a kl_penalty name.
func ValidKLPenalty(kind string) error {
	switch kind {
	case "kl", "abs", "mse", "full":
		return nil
	}
	return fmt.Errorf("kl_penalty %q: use kl, abs, mse or full", kind)
}

// TokenRewards are the per-token rewards: −coef·k_t on every response
// token, plus the row's score on its last token. It also returns each
// row's summed penalty k (objective/kl is their mean).
func TokenRewards(kl [][]float64, scores []float64, coef float64) (rewards [][]float64, klSum []float64) {
	rewards, klSum = make([][]float64, len(kl)), make([]float64, len(kl))
	for i, k := range kl {
		r := make([]float64, len(k))
		for t, v := range k {
			r[t] = -coef * v
			klSum[i] += v
		}
		if len(r) > 0 {
			r[len(r)-1] += scores[i]
		}
		rewards[i] = r
	}
	return rewards, klSum
}

// Moments are the mean and the unbiased variance of every value of x.
func Moments(x [][]float64) (mean, variance float64, err error) {
	n := 0
	for _, row := range x {
		for _, v := range row {
			mean += v
			n++
		}
	}
	if n == 0 {
		return 0, 0, fmt.Errorf("no response token to whiten over: every response is empty")
	}
	mean /= float64(n)
	for _, row := range x {
		for _, v := range row {
			variance += (v - mean) * (v - mean)
		}
	}
	variance /= float64(n)
	if n == 1 {
		// Bessel's correction of one value. TRL's masked variance is then
		// 0·∞ = NaN and so are its advantages; +Inf whitens them to 0.
		return mean, math.Inf(1), nil
	}
	return mean, variance * float64(n) / float64(n-1), nil
}

// Whiten is TRL's masked_whiten over all values of x: (x − μ)/√(var + 1e-8),
// plus μ again when !shiftMean.
func Whiten(x [][]float64, shiftMean bool) ([][]float64, error) {
	mean, variance, err := Moments(x)
	if err != nil {
		return nil, err
	}
	scale := 1 / math.Sqrt(variance+1e-8)
	out := make([][]float64, len(x))
	for i, row := range x {
		out[i] = make([]float64, len(row))
		for t, v := range row {
			out[i][t] = (v - mean) * scale
			if !shiftMean {
				out[i][t] += mean
			}
		}
	}
	return out, nil
}

// GAE computes advantages and returns backwards over each row:
// δ_t = r_t + γV_{t+1} − V_t (V after the last token is 0),
// A_t = δ_t + γλA_{t+1}, returns = A + V; the advantages are whitened, as
// TRL does. With whitenRewards the rewards are whitened first (shift_mean
// false), and then, as in TRL, the pad[i] positions of padding after row
// i's response hold the whitened zero and carry back into its advantages:
// pass each row's padding in the batch TRL would have built (the longest
// query+response less its own) to match TRL exactly, or nil for none.
func GAE(rewards, values [][]float64, pad []int, gamma, lam float64, whitenRewards bool) (adv, returns [][]float64, err error) {
	tail := 0.0 // the whitened reward of a padding position
	if whitenRewards {
		mean, variance, err := Moments(rewards)
		if err != nil {
			return nil, nil, err
		}
		tail = mean * (1 - 1/math.Sqrt(variance+1e-8))
		if rewards, err = Whiten(rewards, false); err != nil {
			return nil, nil, err
		}
	}
	adv, returns = make([][]float64, len(rewards)), make([][]float64, len(rewards))
	for i, r := range rewards {
		v := values[i]
		a, ret := make([]float64, len(r)), make([]float64, len(r))
		next, nextV := 0.0, 0.0
		if whitenRewards && pad != nil {
			for range pad[i] {
				next = tail + gamma*lam*next
			}
		}
		for t := len(r) - 1; t >= 0; t-- {
			delta := r[t] + gamma*nextV - v[t]
			next = delta + gamma*lam*next
			a[t], ret[t] = next, next+v[t]
			nextV = v[t]
		}
		adv[i], returns[i] = a, ret
	}
	if adv, err = Whiten(adv, true); err != nil {
		return nil, nil, err
	}
	return adv, returns, nil
}

// Clip are PPO's clipping settings.
type Clip struct {
	Range, ValueRange, VFCoef, RatioThreshold float64
}

// PPOStats are one mini-batch's loss terms and statistics, TRL's ppo/*.
type PPOStats struct {
	Policy, Value, Total                      float64
	PolicyClipFrac, ValueClipFrac             float64
	ApproxKL, PolicyKL, Ratio, AdvantagesMean float64
	Skipped                                   bool // mean ratio above ratio_threshold: the batch adds nothing
	tokens                                    int
}

// PPOLoss is TRL's clipped loss over a mini-batch's response tokens (all
// means over the tokens): pg = mean max(−A·ρ, −A·clip(ρ, 1±ε)),
// vf = ½ mean max((v − R)², (clip(v, V_old ± ε_v) − R)²), loss = pg + c·vf,
// with ρ = exp(logp − oldLogp). It returns the gradients of the loss with
// respect to each logp and vpred. A batch whose mean ratio passes the
// threshold counts zero, as TRL skips it.
func (c Clip) PPOLoss(logp, oldLogp, vpred, oldValues, adv, returns [][]float64) (st PPOStats, dLogp, dV [][]float64) {
	n := 0
	for _, row := range logp {
		n += len(row)
	}
	st.tokens = n
	dLogp, dV = make([][]float64, len(logp)), make([][]float64, len(logp))
	if n == 0 {
		return st, dLogp, dV
	}
	inv := 1 / float64(n)
	for i, row := range logp {
		dLogp[i], dV[i] = make([]float64, len(row)), make([]float64, len(row))
		for t, lp := range row {
			a, ret := adv[i][t], returns[i][t]
			ratio := math.Exp(lp - oldLogp[i][t])
			clipped := min(max(ratio, 1-c.Range), 1+c.Range)
			pg1, pg2 := -a*ratio, -a*clipped
			if pg2 > pg1 {
				st.Policy += pg2 * inv
				st.PolicyClipFrac += inv
				// The clipped term is flat in ratio unless ratio lies inside the range.
				if ratio > 1-c.Range && ratio < 1+c.Range {
					dLogp[i][t] = -a * ratio * inv
				}
			} else {
				st.Policy += pg1 * inv
				dLogp[i][t] = -a * ratio * inv
			}
			v, old := vpred[i][t], oldValues[i][t]
			vc := min(max(v, old-c.ValueRange), old+c.ValueRange)
			e1, e2 := (v-ret)*(v-ret), (vc-ret)*(vc-ret)
			if e2 > e1 {
				st.Value += 0.5 * e2 * inv
				st.ValueClipFrac += inv
				if v > old-c.ValueRange && v < old+c.ValueRange {
					dV[i][t] = c.VFCoef * (vc - ret) * inv
				}
			} else {
				st.Value += 0.5 * e1 * inv
				dV[i][t] = c.VFCoef * (v - ret) * inv
			}
			d := lp - oldLogp[i][t]
			st.ApproxKL += 0.5 * d * d * inv
			st.PolicyKL -= d * inv
			st.Ratio += ratio * inv
			st.AdvantagesMean += a * inv
		}
	}
	st.Total = st.Policy + c.VFCoef*st.Value
	if st.Ratio > c.RatioThreshold {
		st.Policy, st.Value, st.Total, st.Skipped = 0, 0, 0, true
		for i := range dLogp {
			clear(dLogp[i])
			clear(dV[i])
		}
	}
	return st, dLogp, dV
}

// KLController is the KL coefficient: adaptive (TRL's
// AdaptiveKLController) when Target > 0, else fixed.
type KLController struct {
	Value, Target, Horizon float64
}

// Update moves the coefficient after a batch of n rollouts with mean KL kl:
// β ← β·(1 + clip(kl/target − 1, ±0.2)·n/horizon).
func (k *KLController) Update(kl float64, n int) {
	if k.Target <= 0 {
		return
	}
	e := min(max(kl/k.Target-1, -0.2), 0.2)
	k.Value *= 1 + e*float64(n)/k.Horizon
}

// RunningMoments are the running mean and deviation of the scores
// (ppo_score_norm), as TRL keeps them, in float32 as TRL's tensors are.
type RunningMoments struct {
	Mean, Std, Var, Count float64
}

// NewRunningMoments starts the statistics as TRL does.
func NewRunningMoments() RunningMoments { return RunningMoments{Mean: 0, Std: 1, Var: 1, Count: 1e-24} }

// Update adds a batch and returns it normalised, (x − mean)/(std + eps),
// by the statistics including it.
func (m *RunningMoments) Update(xs []float64) []float64 {
	n := float64(len(xs))
	var bm, bv float64
	for _, x := range xs {
		bm += float64(float32(x))
	}
	bm = float64(float32(bm / n))
	for _, x := range xs {
		d := float64(float32(x)) - bm
		bv += d * d
	}
	bv = float64(float32(bv / n))
	delta := bm - m.Mean
	total := m.Count + n
	m.Mean = float64(float32(m.Mean + delta*n/total))
	m.Var = float64(float32((m.Var*m.Count + delta*delta*m.Count*n/total + bv*n) / total))
	m.Std = float64(float32(math.Sqrt(m.Var * total / (total - 1))))
	m.Count = total
	out := make([]float64, len(xs))
	const eps = 1.1920929e-07 // float32's epsilon
	for i, x := range xs {
		out[i] = (x - m.Mean) / (m.Std + eps)
	}
	return out
}

// FullKL is Σ_v π(v)(log π(v) − log π_ref(v)) from the two models' logits
// at one position (kl_penalty full).
func FullKL(policy, ref []float32) float64 {
	lp, lr := logSoftmax(policy), logSoftmax(ref)
	kl := 0.0
	for v := range lp {
		kl += math.Exp(lp[v]) * (lp[v] - lr[v])
	}
	return kl
}

func logSoftmax(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, float64(v))
	}
	s := 0.0
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) - m - math.Log(s)
	}
	return out
}
