package rlhf

import "math"

// KTO is TRL's Kahneman-Tversky loss (stage kto) with LLaMA-Factory's keys.
type KTO struct {
	Beta                         float64 // pref_beta
	ChosenWeight, RejectedWeight float64 // kto_chosen_weight, kto_rejected_weight
}

// KTOResult is a batch's loss, its gradients and TRL's metrics.
type KTOResult struct {
	Loss float64
	// ∂Loss/∂π for each desirable and undesirable example.
	DChosen, DRejected []float64
	KL                 float64 // the batch's reference point, clamp≥0(mean(π_KL − ρ_KL))
	Metrics            map[string]float64
}

// Compute is the loss over a batch's desirable (pc, rc) and undesirable
// (pr, rr) examples, the policy's and the reference's summed answer
// log-probabilities, with the reference point estimated from the
// mismatched KL rows (pKL, rKL; no gradient flows through it). The mean
// is over all the batch's examples.
func (k KTO) Compute(pc, pr, rc, rr, pKL, rKL []float64) KTOResult {
	res := KTOResult{DChosen: make([]float64, len(pc)), DRejected: make([]float64, len(pr))}
	for i := range pKL {
		res.KL += (pKL[i] - rKL[i]) / float64(len(pKL))
	}
	res.KL = max(res.KL, 0)
	n := float64(len(pc) + len(pr))
	if n == 0 {
		res.Loss = math.NaN()
		return res
	}
	b := k.Beta
	m := map[string]float64{"kl": res.KL}
	for i := range pc {
		logr := pc[i] - rc[i]
		s := sigmoid(b * (logr - res.KL))
		res.Loss += k.ChosenWeight * (1 - s) / n
		res.DChosen[i] = -k.ChosenWeight * b * s * (1 - s) / n
		m["rewards/chosen"] += b * logr / float64(len(pc))
		m["logps/chosen"] += pc[i] / float64(len(pc))
	}
	for i := range pr {
		logr := pr[i] - rr[i]
		s := sigmoid(b * (res.KL - logr))
		res.Loss += k.RejectedWeight * (1 - s) / n
		res.DRejected[i] = k.RejectedWeight * b * s * (1 - s) / n
		m["rewards/rejected"] += b * logr / float64(len(pr))
		m["logps/rejected"] += pr[i] / float64(len(pr))
	}
	m["rewards/margins"] = m["rewards/chosen"] - m["rewards/rejected"]
	res.Metrics = m
	return res
}
