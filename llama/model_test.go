package llama

import (
	"math"
	"math/rand/v2"
	"testing"
)

func tinyModel(t *testing.T, tied bool, kvHeads int) *Model {
	c, _ := Preset("tiny")
	c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 50, 16, 24, 2, 4, kvHeads
	c.HeadDim, c.TieWordEmbeddings = 4, tied
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewModel(c)
	rng := rand.New(rand.NewPCG(1, uint64(kvHeads)))
	for _, p := range m.Named() {
		for i := range p.Data {
			p.Data[i] = float32(rng.NormFloat64() * 0.3)
		}
	}
	return m
}

// The whole model's gradients against central differences of the loss,
// for multi-head and grouped-query attention, tied and untied heads, and a
// right-padded batch.
func TestModelGradients(t *testing.T) {
	for _, c := range []struct {
		tied    bool
		kvHeads int
	}{{false, 4}, {true, 2}, {false, 1}} {
		m := tinyModel(t, c.tied, c.kvHeads)
		b, tt := 2, 5
		ids := []int32{3, 7, 11, 2, 9, 4, 4, 20, 0, 0}
		valid := []bool{true, true, true, true, true, true, true, true, false, false}
		labels := append([]int32(nil), ids...)
		labels[8], labels[9] = -100, -100
		a := m.NewActs(b, tt)
		loss := func() float64 {
			m.Forward(a, ids, valid)
			l, _, _ := m.LMLoss(a, labels, NewModel(m.Config), nil)
			return l
		}
		grads := NewModel(m.Config)
		m.Forward(a, ids, valid)
		_, n, dHidden := m.LMLoss(a, labels, grads, nil)
		if n != 6 {
			t.Fatalf("%d counted tokens, want 6", n)
		}
		m.Backward(a, dHidden, grads)
		rng := rand.New(rand.NewPCG(5, 6))
		gp := grads.Named()
		for pi, p := range m.Named() {
			for s := 0; s < 3; s++ {
				i := rng.IntN(len(p.Data))
				orig := p.Data[i]
				const h = 1e-2
				p.Data[i] = orig + h
				lp := loss()
				p.Data[i] = orig - h
				lm := loss()
				p.Data[i] = orig
				num := (lp - lm) / (2 * h)
				got := float64(gp[pi].Data[i])
				if math.Abs(num-got) > 1e-2*math.Max(0.1, math.Abs(num)) {
					t.Errorf("tied %v kv %d: d%s[%d] = %g, numeric %g", c.tied, c.kvHeads, p.Name, i, got, num)
				}
			}
		}
	}
}
