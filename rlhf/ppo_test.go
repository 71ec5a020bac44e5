package rlhf

import (
	"math"
	"testing"
)

// The spec's PPO numbers (shared/specs/rlhf.md §6.2–6.6), measured with
// TRL 0.9.6's code, here on the masked-in (response) positions.
func TestPPORewardsAndGAEGolden(t *testing.T) {
	logp := [][]float64{{-1, -.5, -2}, {-.3, -1.2, -.8, -.1}}
	ref := [][]float64{{-1.2, -.4, -2.5}, {-.5, -1, -1, -.2}}
	values := [][]float64{{.5, .4, .2}, {-.2, 0, .3, .6}}
	scores := []float64{1, -.5}
	want := map[string][][]float64{
		"kl":  {{-0.04, 0.02, 0.9}, {-0.04, 0.04, -0.04, -0.52}},
		"abs": {{-0.04, -0.02, 0.9}, {-0.04, -0.04, -0.04, -0.52}},
		"mse": {{-0.004, -0.001, 0.975}, {-0.004, -0.004, -0.004, -0.501}},
	}
	for kind, w := range want {
		k := penalties(kind, logp, ref)
		r, sums := TokenRewards(k, scores, 0.2)
		for i := range w {
			near(t, kind+" rewards", r[i], w[i], 1e-12)
		}
		if kind == "kl" {
			near(t, "objective/kl", []float64{(sums[0] + sums[1]) / 2}, []float64{0.45}, 1e-12)
		}
	}
	r, _ := TokenRewards(penalties("kl", logp, ref), scores, 0.2)
	adv, ret, err := GAE(r, values, nil, 1, 0.95, false)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "returns0", ret[0], []float64{0.82075, 0.885, 0.9}, 1e-12)
	near(t, "returns1", ret[1], []float64{-0.44261, -0.4238, -0.504, -0.52}, 1e-12)
	near(t, "advantages0", adv[0], []float64{0.6964404027, 0.9369070679, 1.2516731745}, 1e-9)
	near(t, "advantages1", adv[1], []float64{-0.1283346383, -0.3936019446, -0.9502255434, -1.4128585187}, 1e-9)

	adv, ret, err = GAE(r, values, []int{1, 0}, 1, 0.95, true)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "whitened-reward advantages0", adv[0], []float64{0.8495311548, 1.0546123564, 1.2432435654}, 1e-9)
	near(t, "whitened-reward advantages1", adv[1], []float64{-0.5734242681, -0.6382503497, -0.894491567, -1.0412208917}, 1e-9)
	near(t, "whitened-reward returns0", ret[0], []float64{1.6694162032, 1.901506147, 2.006958461}, 1e-9)
	near(t, "whitened-reward returns1", ret[1], []float64{-1.3347890709, -1.2397625626, -1.3546964072, -1.2922966007}, 1e-9)

	near(t, "full KL", []float64{FullKL([]float32{1, 2, .5}, []float32{1.5, 1, .5}), FullKL([]float32{0, 0, 3}, []float32{.2, .1, 2})},
		[]float64{0.2288206569, 0.0746723976}, 1e-7)
	if _, _, err := GAE([][]float64{{}}, [][]float64{{}}, nil, 1, 0.95, false); err == nil {
		t.Error("GAE over no response token: no error")
	}
}

func penalties(kind string, logp, ref [][]float64) [][]float64 {
	out := make([][]float64, len(logp))
	for i := range logp {
		for t := range logp[i] {
			out[i] = append(out[i], KLPenalty(kind, logp[i][t], ref[i][t]))
		}
	}
	return out
}

func TestPPOLossGolden(t *testing.T) {
	c := Clip{Range: 0.2, ValueRange: 0.2, VFCoef: 0.1, RatioThreshold: 10}
	oldLp := [][]float64{{-1, -.5, -2}, {-.3, -1.2, -.8, -.1}}
	newLp := [][]float64{{-.6, -.5, -2.5}, {-.2, -1.5, -.8, -.5}}
	vOld := [][]float64{{.5, .4, .2}, {-.2, 0, .3, .6}}
	vpred := [][]float64{{.9, .3, .2}, {-.2, .25, 0, .6}}
	adv := [][]float64{{1, -.5, .8}, {-1.2, .7, .3, -.4}}
	ret := [][]float64{{1.1, .2, .5}, {-.9, .6, .2, .9}}
	st, dLp, dV := c.PPOLoss(newLp, oldLp, vpred, vOld, adv, ret)
	near(t, "losses", []float64{st.Policy, st.Value, st.Total}, []float64{-0.0510845972, 0.0742857143, -0.0436560258}, 1e-9)
	near(t, "stats", []float64{st.PolicyClipFrac, st.ValueClipFrac, st.ApproxKL, st.PolicyKL},
		[]float64{0.2857143, 0.2857143, 0.0478571429, 0.1}, 1e-7)
	near(t, "∂/∂logp 0", dLp[0], []float64{0, 0.0714285714, -0.0693177897}, 1e-9)
	near(t, "∂/∂logp 1", dLp[1], []float64{0.1894578717, -0.0740818221, -0.0428571429, 0}, 1e-9)
	near(t, "∂/∂v 0", dV[0], []float64{0, 0.0014285714, -0.0042857143}, 1e-9)
	near(t, "∂/∂v 1", dV[1], []float64{0.01, 0, -0.0028571429, -0.0042857143}, 1e-9)

	// A mean ratio above the threshold skips the batch: all zero.
	far := [][]float64{{3, 3, 3}, {3, 3, 3, 3}}
	st, dLp, _ = c.PPOLoss(far, oldLp, vpred, vOld, adv, ret)
	if !st.Skipped || st.Total != 0 || st.Policy != 0 || st.Value != 0 || dLp[0][0] != 0 {
		t.Errorf("ratio %g above 10: %+v, want a skipped batch with zero losses", st.Ratio, st)
	}
}

func TestKLControllerGolden(t *testing.T) {
	k := KLController{Value: 0.2, Target: 6, Horizon: 10000}
	for _, s := range []struct {
		kl   float64
		n    int
		want float64
	}{{8, 8, 0.200032}, {3, 8, 0.19999999488}, {6.6, 128, 0.200255994873}, {0, 128, 0.199743339527}} {
		k.Update(s.kl, s.n)
		near(t, "kl_coef", []float64{k.Value}, []float64{s.want}, 1e-11)
	}
	fixed := KLController{Value: 0.2}
	fixed.Update(100, 128)
	if fixed.Value != 0.2 {
		t.Errorf("fixed controller moved to %g", fixed.Value)
	}
}

func TestRunningMomentsGolden(t *testing.T) {
	m := NewRunningMoments()
	out := m.Update([]float64{1, 2, 3, 4})
	near(t, "moments", []float64{m.Mean, m.Var, m.Std}, []float64{2.5, 1.25, 1.2909944057}, 1e-7)
	near(t, "normalised", out, []float64{-1.1618950426, -0.3872983475, 0.3872983475, 1.1618950426}, 1e-6)
	out = m.Update([]float64{10, 20})
	near(t, "moments 2", []float64{m.Mean, m.Var, m.Std}, []float64{6.6666665077, 43.888885498, 7.2571802139}, 1e-7)
	near(t, "normalised 2", out, []float64{0.4593152428, 1.8372609056}, 1e-6)
	one := NewRunningMoments()
	if out := one.Update([]float64{3}); !math.IsInf(one.Std, 1) || out[0] != 0 {
		t.Errorf("a first batch of one score: std %g, normalised %g; TRL gives inf and 0", one.Std, out[0])
	}
}

func TestWhitenGolden(t *testing.T) {
	x := [][]float64{{1, 2}, {4, 6}} // the masked-in values of §6.6
	w, err := Whiten(x, true)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "whiten", append(w[0], w[1]...), []float64{-1.0147221368, -0.5637345204, 0.3382407123, 1.2402159449}, 1e-9)
	w, _ = Whiten(x, false)
	near(t, "whiten unshifted", append(w[0], w[1]...), []float64{-1.0147221368 + 3.25, -0.5637345204 + 3.25, 0.3382407123 + 3.25, 1.2402159449 + 3.25}, 1e-9)
}
