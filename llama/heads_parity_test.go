package llama_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/llama"
)

// Per-token log-probabilities and a value head, with the gradients of a
// loss over both taken through the trunk, agree with PyTorch.
func TestHeadsParityWithPyTorch(t *testing.T) {
	needTorch(t)
	dir, m := parityModel(t, 2, false, "float32")
	b, tt := 2, 12
	ids, valid, labels := parityBatch(t, b, tt)
	h := m.Config.HiddenSize
	rng := rand.New(rand.NewPCG(4, 5))
	vh := llama.NewValueHead(h)
	vh.Init(rng)
	dlogp, dvalue := make([]float32, b*tt), make([]float32, b*tt)
	for i := range dlogp {
		dlogp[i] = float32(rng.NormFloat64())
		if valid[i] {
			dvalue[i] = float32(rng.NormFloat64())
		}
	}
	get := runReference(t, dir, map[string]any{"ids": [][]int32{ids[:tt], ids[tt:]}, "valid": [][]bool{valid[:tt], valid[tt:]},
		"labels": [][]int32{labels[:tt], labels[tt:]}, "v_head_weight": vh.W, "v_head_bias": vh.B,
		"dlogp": [][]float32{dlogp[:tt], dlogp[tt:]}, "dvalue": [][]float32{dvalue[:tt], dvalue[tt:]}}, "heads", dir)

	a := m.NewActs(b, tt)
	m.Forward(a, ids, valid)
	logp := make([]float32, b*tt)
	if n := m.TokenLogProbs(a, labels, logp); n != countLearned(labels, tt) {
		t.Errorf("%d scored positions", n)
	}
	if d := testenv.ScaledDiff(logp, get("logp")); d > 1e-5 {
		t.Errorf("log-probabilities differ by %.2e relative", d)
	}
	values := make([]float32, b*tt)
	vh.Forward(values, a.Hidden, b*tt)
	refValues := get("values")
	var gotV, refV []float32
	for i, ok := range valid {
		if ok {
			gotV, refV = append(gotV, values[i]), append(refV, refValues[i])
		}
	}
	if d := testenv.ScaledDiff(gotV, refV); d > 1e-5 {
		t.Errorf("values differ by %.2e relative", d)
	}

	grads, gv := llama.NewModel(m.Config), llama.NewValueHead(h)
	dHidden := m.TokenLogProbsBackward(a, labels, dlogp, grads)
	vh.Backward(dHidden, gv, dvalue, a.Hidden, b*tt)
	m.Backward(a, dHidden, grads)
	worst := 0.0
	check := func(name string, got []float32) {
		d := testenv.ScaledDiff(got, get("grad."+name))
		worst = math.Max(worst, d)
		if d > 1e-4 {
			t.Errorf("gradient of %s differs by %.2e relative", name, d)
		}
	}
	for _, prm := range grads.Named() {
		check(prm.Name, prm.Data)
	}
	check(llama.ValueHeadWeight, gv.W)
	check(llama.ValueHeadBias, gv.B)
	t.Logf("worst gradient difference %.2e relative", worst)
}

// countLearned counts the labels a shifted head scores: every one but the
// first of each sequence that is not -100.
func countLearned(labels []int32, tt int) int {
	n := 0
	for i, l := range labels {
		if i%tt != 0 && l != -100 {
			n++
		}
	}
	return n
}
