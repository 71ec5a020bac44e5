package llama

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"zhllama/internal/testenv"
)

// attachLoRA puts an adapter with random A and B on every linear weight of
// m, and the matching gradient holders on g.
func attachLoRA(m, g *Model, r int, dropout float64) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, ref := range m.Refs() {
		if !ref.LoRA {
			continue
		}
		lo := NewLoRA(ref.Shape[0], ref.Shape[1], r, 0.5, dropout, rng)
		lo.key = adapterKey(ref.Name, lo.Name)
		for i := range lo.B {
			lo.B[i] = float32(rng.NormFloat64() * 0.3)
		}
		ref.Weight.Attach(lo)
		gr, _ := g.Tensor(ref.Name)
		gr.Weight.Attach(&LoRA{Name: lo.Name, A: make([]float32, len(lo.A)), B: make([]float32, len(lo.B)), R: r})
	}
}

// LoRA's A and B gradients (with and without dropout, whose masks repeat
// for the same seed) against central differences, the base weights frozen.
func TestLoRAGradients(t *testing.T) {
	for _, dropout := range []float64{0, 0.3} {
		m := tinyModel(t, false, 2)
		grads := &Model{Config: m.Config, Layers: make([]Layer, m.Config.NumHiddenLayers)}
		attachLoRA(m, grads, 3, dropout)
		ids := []int32{3, 7, 11, 2, 9, 4, 4, 20, 0, 0}
		valid := []bool{true, true, true, true, true, true, true, true, false, false}
		labels := append([]int32(nil), ids...)
		labels[8], labels[9] = -100, -100
		a := m.NewActs(2, 5)
		a.Dropout, a.Seed = true, 11
		loss := func() float64 {
			m.Forward(a, ids, valid)
			l, _, _ := m.LMLoss(a, labels, 0, nil)
			return l
		}
		m.Forward(a, ids, valid)
		_, _, dHidden := m.LMLoss(a, labels, 0, grads)
		m.Backward(a, dHidden, grads)
		rng := rand.New(rand.NewPCG(1, 2))
		for _, ref := range m.Refs() {
			if !ref.LoRA {
				continue
			}
			{
				gr, _ := grads.Tensor(ref.Name)
				lo, glo := ref.Weight.Adapters[0], gr.Weight.Adapters[0]
				for _, pair := range [][2][]float32{{lo.A, glo.A}, {lo.B, glo.B}} {
					for s := 0; s < 2; s++ {
						i := rng.IntN(len(pair[0]))
						num, got := testenv.NumericGrad(loss, pair[0], []int{i}, 1e-2)[0], float64(pair[1][i])
						if math.Abs(num-got) > 1e-2*math.Max(0.1, math.Abs(num)) {
							t.Errorf("dropout %g: %s LoRA grad[%d] = %g, numeric %g", dropout, ref.Name, i, got, num)
						}
					}
				}
			}
		}
	}
}

// Merging folds the adapter into W without changing the logits.
func TestLoRAMerge(t *testing.T) {
	m := tinyModel(t, false, 2)
	attachLoRA(m, &Model{Config: m.Config, Layers: make([]Layer, m.Config.NumHiddenLayers)}, 2, 0)
	ids := []int32{3, 7, 11, 2, 9}
	ca := m.NewCache(1, 8, false)
	before := append([]float32(nil), m.Step(ca, [][]int32{ids})...)
	if err := m.MergeLoRA(); err != nil {
		t.Fatal(err)
	}
	after := m.Step(m.NewCache(1, 8, false), [][]int32{ids})
	for i := range before {
		if math.Abs(float64(before[i]-after[i])) > 1e-4 {
			t.Fatalf("logit %d: %g with the adapter, %g merged", i, before[i], after[i])
		}
	}
}

// A pass without dropout (evaluation) then one with it leaves the input
// untouched: the dropped copy never lands in the caller's buffer.
func TestLoRADropoutKeepsInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	l := NewLoRA(6, 5, 2, 1, 0.5, rng)
	x := make([]float32, 3*5)
	for i := range x {
		x[i] = float32(i + 1)
	}
	keep := append([]float32(nil), x...)
	y := make([]float32, 3*6)
	p := &Pass{}
	l.forward(p, y, x, 3, 5, 6)
	p.Dropout, p.Seed = true, 9
	l.forward(p, y, x, 3, 5, 6)
	for i := range x {
		if x[i] != keep[i] {
			t.Fatalf("input[%d] became %g", i, x[i])
		}
	}
}

// Named adapters: a pass applies all, some or none of them (none is the
// base model), and two passes through the same adapters keep their own
// activations, so each one's gradients are those of a pass run alone.
func TestNamedAdapters(t *testing.T) {
	m := tinyModel(t, false, 2)
	ids := []int32{3, 7, 11, 2, 9, 4, 4, 20}
	logits := func(use func(string) bool) []float32 {
		a := m.NewActs(1, len(ids))
		a.Adapters = use
		m.Forward(a, ids, nil)
		out := make([]float32, len(ids)*m.Config.VocabSize)
		m.Logits(a, out)
		return out
	}
	base := logits(nil)
	m.AddLoRA("policy", LoRAModules, 2, 1, 0, 1)
	m.AddLoRA("reward", []string{"q_proj", "v_proj"}, 3, 1, 0, 2)
	for _, ad := range m.Adapters("") {
		for i := range ad.LoRA.B {
			ad.LoRA.B[i] = 0.1 * float32(i%7-3)
		}
	}
	same := func(a, b []float32) bool { return slices.Equal(a, b) }
	if !same(logits(NoAdapters), base) {
		t.Error("no adapters is not the base model")
	}
	all, policy := logits(nil), logits(OnlyAdapters("policy"))
	if same(all, base) || same(policy, base) || same(all, policy) {
		t.Error("adapters change nothing")
	}
	if len(m.Adapters("reward")) != 2*m.Config.NumHiddenLayers || len(m.Adapters("")) != 9*m.Config.NumHiddenLayers {
		t.Errorf("%d reward and %d adapters in all", len(m.Adapters("reward")), len(m.Adapters("")))
	}
	labels := append([]int32(nil), ids...)
	backward := func(a *Acts, grads *Model) {
		_, _, dh := m.LMLoss(a, labels, 0, grads)
		m.Backward(a, dh, grads)
	}
	alone := m.LoRAGrads()
	a1 := m.NewActs(1, len(ids))
	m.Forward(a1, ids, nil)
	backward(a1, alone)
	// Two passes in flight: the second forward runs before the first's backward.
	interleaved, other := m.LoRAGrads(), m.LoRAGrads()
	a2, a3 := m.NewActs(1, len(ids)), m.NewActs(1, len(ids))
	a3.Adapters = OnlyAdapters("reward")
	m.Forward(a2, ids, nil)
	m.Forward(a3, []int32{5, 5, 6, 6, 7, 7, 8, 8}, nil)
	backward(a2, interleaved)
	want, got := alone.Adapters(""), interleaved.Adapters("")
	for i := range want {
		if !same(want[i].LoRA.A, got[i].LoRA.A) || !same(want[i].LoRA.B, got[i].LoRA.B) {
			t.Fatalf("%s %s: gradients differ with another pass in flight", want[i].Name, want[i].LoRA.Name)
		}
	}
	backward(a3, other)
	for _, ad := range other.Adapters("policy") {
		for _, v := range ad.LoRA.B {
			if v != 0 {
				t.Fatalf("%s: a pass without the policy adapter gave it a gradient", ad.Name)
			}
		}
	}
}
