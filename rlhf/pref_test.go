package rlhf

import (
	"math"
	"testing"
)

func near(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	for i := range want {
		if math.Abs(got[i]-want[i]) > tol*math.Max(1, math.Abs(want[i])) {
			t.Errorf("%s[%d] = %.10g, want %.10g", name, i, got[i], want[i])
		}
	}
}

// The spec's numbers (shared/specs/rlhf.md §6.1), measured with
// LLaMA-Factory's code: scores taken at the last real token, loss and
// strict accuracy.
func TestRankLossGolden(t *testing.T) {
	loss, dc, dr, acc := RankLoss([]float64{0.5, 1.2}, []float64{-0.2, 1.5})
	near(t, "loss", []float64{loss, acc}, []float64{0.62877065, 0.5}, 1e-6)
	// ∂/∂c = −σ(r − c)/n.
	near(t, "dChosen", dc, []float64{-sigmoid(-0.7) / 2, -sigmoid(0.3) / 2}, 1e-12)
	near(t, "dRejected", dr, []float64{sigmoid(-0.7) / 2, sigmoid(0.3) / 2}, 1e-12)
}

// §6.7 and §6.8: TRL's DPO losses and LLaMA-Factory's ORPO and SimPO.
func TestPrefLossGolden(t *testing.T) {
	pc, pr := []float64{-12, -30.5, -7.25}, []float64{-15, -29, -9}
	rc, rr := []float64{-13, -31, -7}, []float64{-14, -30, -8.5}
	res, _ := Pref{Loss: "sigmoid", Beta: 0.1}.Compute(pc, pr, rc, rr, nil)
	near(t, "sigmoid loss", []float64{res.Loss}, []float64{0.665774607}, 1e-9)
	near(t, "sigmoid ∂π_c", res.DChosen, []float64{-0.0150055334, -0.0170832465, -0.0164583442}, 1e-8)
	near(t, "sigmoid ∂π_r", res.DRejected, []float64{0.0150055334, 0.0170832465, 0.0164583442}, 1e-8)
	m := res.Metrics(pc, pr)
	near(t, "rewards", []float64{m["rewards/accuracies"], m["rewards/margins"]}, []float64{0.6666666667, 0.0583333333}, 1e-9)
	near(t, "rewards/chosen", res.RewardsChosen, []float64{0.1, 0.05, -0.025}, 1e-12)

	res, _ = Pref{Loss: "sigmoid", Beta: 0.1, LabelSmoothing: 0.1}.Compute(pc, pr, rc, rr, nil)
	near(t, "cDPO", append([]float64{res.Loss}, res.DChosen...), []float64{0.6716079403, -0.0116722001, -0.0137499132, -0.0131250109}, 1e-8)
	res, _ = Pref{Loss: "hinge", Beta: 0.1}.Compute(pc, pr, rc, rr, nil)
	near(t, "hinge", append([]float64{res.Loss}, res.DChosen...), []float64{(0.8 + 1.05 + 0.975) / 3, -0.1 / 3, -0.1 / 3, -0.1 / 3}, 1e-9)
	res, _ = Pref{Loss: "ipo", Beta: 0.1}.Compute(pc, pr, rc, rr, nil)
	near(t, "ipo", []float64{res.Loss}, []float64{(9 + 30.25 + 22.5625) / 3}, 1e-9)

	ac, ar := []float64{-0.8, -1.5, -0.3}, []float64{-1.1, -1.4, -0.9}
	res, _ = Pref{Loss: "orpo", Beta: 0.1}.Compute(ac, ar, nil, nil, nil)
	near(t, "orpo", []float64{res.Loss}, []float64{0.9150881555}, 1e-9)
	near(t, "orpo ∂π̄_c", res.DChosen, []float64{-0.3563028159, -0.3561866562, -0.358200004}, 1e-8)
	near(t, "orpo ∂π̄_r", res.DRejected, []float64{0.0189597969, 0.0235651523, 0.0108605636}, 1e-8)
	res, _ = Pref{Loss: "simpo", Beta: 0.1, SimPOGamma: 0.5}.Compute(ac, ar, nil, nil, nil)
	near(t, "simpo β 0.1", []float64{res.Loss}, []float64{0.9576589933}, 1e-9)
	res, _ = Pref{Loss: "simpo", Beta: 2, SimPOGamma: 0.5}.Compute(ac, ar, nil, nil, nil)
	near(t, "simpo β 2", append([]float64{res.Loss}, res.DChosen...), []float64{0.7169229193, -0.3166805417, -0.4454585148, -0.2212081519}, 1e-8)

	// With the reference equal to the policy, DPO starts at ln 2 (§6.11c).
	res, _ = Pref{Loss: "sigmoid", Beta: 0.1}.Compute(pc, pr, pc, pr, nil)
	if math.Abs(res.Loss-math.Ln2) > 1e-12 || res.Metrics(pc, pr)["rewards/accuracies"] != 0 {
		t.Errorf("reference = policy: loss %g", res.Loss)
	}
	for _, bad := range []Pref{{Loss: "kto_pair", Beta: 0.1}, {Loss: "hinge", Beta: 0.1, LabelSmoothing: 0.2}, {Loss: "sigmoid"}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// §6.10: TRL's KTO loss with its KL estimate from the mismatched rows.
func TestKTOGolden(t *testing.T) {
	k := KTO{Beta: 0.1, ChosenWeight: 1, RejectedWeight: 1}
	res := k.Compute([]float64{-10, -20}, []float64{-15}, []float64{-11, -19.5}, []float64{-14},
		[]float64{-30, -25, -28}, []float64{-31, -26, -27})
	near(t, "kl, loss", []float64{res.KL, res.Loss}, []float64{0.3333333333, 0.4902922502}, 1e-9)
	near(t, "rewards", []float64{res.Metrics["rewards/chosen"], res.Metrics["rewards/rejected"]}, []float64{(0.1 - 0.05) / 2, -0.1}, 1e-12)
	// The gradient by central differences of the loss.
	const h = 1e-6
	for i := range 2 {
		pc := []float64{-10, -20}
		pc[i] += h
		up := k.Compute(pc, []float64{-15}, []float64{-11, -19.5}, []float64{-14}, []float64{-30, -25, -28}, []float64{-31, -26, -27}).Loss
		pc[i] -= 2 * h
		down := k.Compute(pc, []float64{-15}, []float64{-11, -19.5}, []float64{-14}, []float64{-30, -25, -28}, []float64{-31, -26, -27}).Loss
		near(t, "∂/∂π_c", []float64{res.DChosen[i]}, []float64{(up - down) / (2 * h)}, 1e-8)
	}
	up := k.Compute([]float64{-10, -20}, []float64{-15 + h}, []float64{-11, -19.5}, []float64{-14}, []float64{-30, -25, -28}, []float64{-31, -26, -27}).Loss
	down := k.Compute([]float64{-10, -20}, []float64{-15 - h}, []float64{-11, -19.5}, []float64{-14}, []float64{-30, -25, -28}, []float64{-31, -26, -27}).Loss
	near(t, "∂/∂π_r", res.DRejected, []float64{(up - down) / (2 * h)}, 1e-8)
}
