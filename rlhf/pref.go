// Package rlhf holds the losses of learning from preferences, as
// LLaMA-Factory and TRL compute them: the reward model's pairwise ranking
// loss and the DPO family (sigmoid with label smoothing, hinge, IPO,
// ORPO, SimPO). Each returns per-example losses and their gradients with
// respect to the scores or log-probabilities, for the heads of package
// llama to take back through the model.
package rlhf

import (
	"fmt"
	"math"
)

// logSigmoid is log σ(x), stable for large |x|.
func logSigmoid(x float64) float64 {
	if x >= 0 {
		return -math.Log1p(math.Exp(-x))
	}
	return x - math.Log1p(math.Exp(x))
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// RankLoss is the reward model's loss over n pairs: mean −log σ(c − r),
// with its gradients with respect to each score, and the pair accuracy
// (strict c > r: ties count as wrong).
func RankLoss(chosen, rejected []float64) (loss float64, dChosen, dRejected []float64, accuracy float64) {
	n := float64(len(chosen))
	dChosen, dRejected = make([]float64, len(chosen)), make([]float64, len(chosen))
	for i, c := range chosen {
		d := c - rejected[i]
		loss -= logSigmoid(d) / n
		g := -sigmoid(-d) / n
		dChosen[i], dRejected[i] = g, -g
		if d > 0 {
			accuracy += 1 / n
		}
	}
	return loss, dChosen, dRejected, accuracy
}

// Pref is a preference loss with LLaMA-Factory's keys.
type Pref struct {
	Loss           string  // pref_loss: sigmoid, hinge, ipo, orpo, simpo
	Beta           float64 // pref_beta
	LabelSmoothing float64 // dpo_label_smoothing (sigmoid only)
	SimPOGamma     float64 // simpo_gamma
	FTX            float64 // pref_ftx: weight of the chosen answers' NLL
}

// Validate checks the loss name and the keys that go with it.
func (p Pref) Validate() error {
	switch p.Loss {
	case "sigmoid", "hinge", "ipo", "orpo", "simpo":
	default:
		return fmt.Errorf("pref_loss %q: use sigmoid, hinge, ipo, orpo or simpo", p.Loss)
	}
	if p.LabelSmoothing > 1e-6 && p.Loss != "sigmoid" {
		return fmt.Errorf("dpo_label_smoothing %g works with pref_loss sigmoid only", p.LabelSmoothing)
	}
	if !(p.Beta > 0) {
		return fmt.Errorf("pref_beta %g must be positive", p.Beta)
	}
	return nil
}

// UsesReference reports whether the loss compares with a reference model
// (ORPO and SimPO do not).
func (p Pref) UsesReference() bool { return p.Loss != "orpo" && p.Loss != "simpo" }

// Averaged reports whether the log-probabilities are per-token averages
// rather than sums (IPO, ORPO, SimPO).
func (p Pref) Averaged() bool { return p.Loss == "ipo" || p.Loss == "orpo" || p.Loss == "simpo" }

// PrefResult is a batch's preference loss, its gradients and TRL's metrics.
type PrefResult struct {
	Loss               float64   // the batch mean
	DChosen, DRejected []float64 // ∂Loss/∂π_c, ∂Loss/∂π_r
	RewardsChosen      []float64 // β(π_c − ρ_c), or β π̄_c without a reference
	RewardsRejected    []float64
}

// Metrics are TRL's names for the batch: rewards/chosen, rewards/rejected,
// rewards/accuracies, rewards/margins, logps/chosen, logps/rejected.
func (r PrefResult) Metrics(pc, pr []float64) map[string]float64 {
	n := float64(len(pc))
	m := map[string]float64{"rewards/accuracies": 0}
	for i := range pc {
		m["rewards/chosen"] += r.RewardsChosen[i] / n
		m["rewards/rejected"] += r.RewardsRejected[i] / n
		m["rewards/margins"] += (r.RewardsChosen[i] - r.RewardsRejected[i]) / n
		m["logps/chosen"] += pc[i] / n
		m["logps/rejected"] += pr[i] / n
		if r.RewardsChosen[i] > r.RewardsRejected[i] {
			m["rewards/accuracies"] += 1 / n
		}
	}
	return m
}

// Compute is the loss of n pairs from the policy's log-probabilities of
// the chosen and rejected answers (sums, or per-token averages when
// Averaged) and the reference's (nil without a reference). chosenAvg is
// the policy's per-token average for the pref_ftx term (nil when FTX is
// 0); its gradient goes to dChosenAvg.
func (p Pref) Compute(pc, pr, rc, rr, chosenAvg []float64) (res PrefResult, dChosenAvg []float64) {
	n := len(pc)
	nf := float64(n)
	b := p.Beta
	res.DChosen, res.DRejected = make([]float64, n), make([]float64, n)
	res.RewardsChosen, res.RewardsRejected = make([]float64, n), make([]float64, n)
	for i := 0; i < n; i++ {
		var l, g float64 // per-pair loss and ∂l/∂π_c (∂l/∂π_r = −g unless set apart)
		gr := math.NaN()
		switch p.Loss {
		case "sigmoid", "hinge", "ipo":
			x := (pc[i] - pr[i]) - (rc[i] - rr[i])
			res.RewardsChosen[i], res.RewardsRejected[i] = b*(pc[i]-rc[i]), b*(pr[i]-rr[i])
			switch p.Loss {
			case "sigmoid":
				e := p.LabelSmoothing
				l = -(1-e)*logSigmoid(b*x) - e*logSigmoid(-b*x)
				g = -b * ((1-e)*sigmoid(-b*x) - e*sigmoid(b*x))
			case "hinge":
				l = math.Max(0, 1-b*x)
				if b*x < 1 {
					g = -b
				}
			case "ipo":
				d := x - 1/(2*b)
				l, g = d*d, 2*d
			}
		case "simpo":
			z := b*(pc[i]-pr[i]) - p.SimPOGamma
			l, g = -logSigmoid(z), -b*sigmoid(-z)
			res.RewardsChosen[i], res.RewardsRejected[i] = b*pc[i], b*pr[i]
		case "orpo":
			// −π̄_c + β·(−log σ(ℓ)), ℓ = (π̄_c − π̄_r) − (log(1−e^π̄_c) − log(1−e^π̄_r)).
			c, r := pc[i], pr[i]
			lo := (c - r) - (math.Log1p(-math.Exp(c)) - math.Log1p(-math.Exp(r)))
			l = -c - b*logSigmoid(lo)
			s := -b * sigmoid(-lo) // ∂(−β logσ(ℓ))/∂ℓ
			dlc := 1 + math.Exp(c)/(1-math.Exp(c))
			dlr := -1 - math.Exp(r)/(1-math.Exp(r))
			g, gr = -1+s*dlc, s*dlr
			res.RewardsChosen[i], res.RewardsRejected[i] = b*c, b*r
		}
		if math.IsNaN(gr) {
			gr = -g
		}
		res.Loss += l / nf
		res.DChosen[i], res.DRejected[i] = g/nf, gr/nf
	}
	if p.FTX > 1e-6 && chosenAvg != nil {
		dChosenAvg = make([]float64, n)
		for i := range chosenAvg {
			res.Loss += p.FTX * -chosenAvg[i] / nf
			dChosenAvg[i] = -p.FTX / nf
		}
	}
	return res, dChosenAvg
}
