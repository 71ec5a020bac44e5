package llama

import (
	"math"
	"math/rand/v2"
	"testing"

	"zhllama/internal/testenv"
)

// The LM head in chunks of a few rows gives the loss and gradients of the
// head in one chunk, and token log-probabilities are the loss's terms.
func TestHeadChunks(t *testing.T) {
	m := tinyModel(t, false, 2)
	ids := []int32{3, 7, 11, 2, 9, 4, 4, 20, 0, 0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	labels := append([]int32(nil), ids...)
	labels[8], labels[9] = -100, -100
	run := func() (float64, *Model, []float32) {
		a := m.NewActs(2, 10)
		m.Forward(a, ids, nil)
		g := NewModel(m.Config)
		loss, n, dh := m.LMLoss(a, labels, 0, g)
		logp := make([]float32, 20)
		if k := m.TokenLogProbs(a, labels, logp); k != n || n != 16 {
			t.Errorf("%d log-probabilities, %d counted tokens, want 16", k, n)
		}
		var sum float64
		for _, v := range logp {
			sum -= float64(v)
		}
		if math.Abs(sum/float64(n)-loss) > 1e-5*loss {
			t.Errorf("mean −log p %g, loss %g", sum/float64(n), loss)
		}
		return loss, g, append([]float32(nil), dh...)
	}
	whole, gw, dw := run()
	defer func(b int) { headBytes = b }(headBytes)
	headBytes = 4 * m.Config.VocabSize * 3 // chunks of 16 rows: the least
	chunked, gc, dc := run()
	if math.Abs(whole-chunked) > 1e-6*whole {
		t.Errorf("loss %g in one chunk, %g in several", whole, chunked)
	}
	for i := range dw {
		if math.Abs(float64(dw[i]-dc[i])) > 1e-6 {
			t.Fatalf("dHidden[%d] %g in one chunk, %g in several", i, dw[i], dc[i])
		}
	}
	for i := range gw.LMHead.W {
		if math.Abs(float64(gw.LMHead.W[i]-gc.LMHead.W[i])) > 1e-6 {
			t.Fatalf("lm_head grad[%d] %g in one chunk, %g in several", i, gw.LMHead.W[i], gc.LMHead.W[i])
		}
	}
}

// Token log-probabilities' backward, the value head's and the trunk's
// behind them against central differences of Σ dlogp·logp + Σ dv·values.
func TestHeadGradients(t *testing.T) {
	m := tinyModel(t, false, 2)
	ids := []int32{3, 7, 11, 2, 9, 4, 4, 20, 0, 0}
	valid := []bool{true, true, true, true, true, true, true, true, false, false}
	labels := append([]int32(nil), ids...)
	labels[8], labels[9] = -100, -100
	rng := rand.New(rand.NewPCG(9, 9))
	vh := NewValueHead(m.Config.HiddenSize)
	vh.Init(rng)
	dlogp, dv := make([]float32, 10), make([]float32, 10)
	for i := range dlogp {
		dlogp[i], dv[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	a := m.NewActs(2, 5)
	objective := func() float64 {
		m.Forward(a, ids, valid)
		logp, values := make([]float32, 10), make([]float32, 10)
		m.TokenLogProbs(a, labels, logp)
		vh.Forward(values, a.Hidden, 10)
		var s float64
		for i := range logp {
			s += float64(dlogp[i])*float64(logp[i]) + float64(dv[i])*float64(values[i])
		}
		return s
	}
	objective()
	grads, gv := NewModel(m.Config), NewValueHead(m.Config.HiddenSize)
	dh := m.TokenLogProbsBackward(a, labels, dlogp, grads)
	vh.Backward(dh, gv, dv, a.Hidden, 10)
	m.Backward(a, dh, grads)
	check := func(name string, p, g []float32, k int) {
		for s := 0; s < k; s++ {
			i := rng.IntN(len(p))
			num := testenv.NumericGrad(objective, p, []int{i}, 1e-2)[0]
			if math.Abs(num-float64(g[i])) > 2e-2*math.Max(0.1, math.Abs(num)) {
				t.Errorf("%s grad[%d] = %g, numeric %g", name, i, g[i], num)
			}
		}
	}
	gp := grads.Named()
	for i, p := range m.Named() {
		check(p.Name, p.Data, gp[i].Data, 2)
	}
	check("v_head weight", vh.W, gv.W, 4)
	check("v_head bias", vh.B, gv.B, 1)
}
