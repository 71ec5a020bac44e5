package llama

import (
	"math"
	"math/rand/v2"
	"testing"

	"zhllama/internal/testenv"
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
			l, _, _ := m.LMLoss(a, labels, 0, NewModel(m.Config))
			return l
		}
		grads := NewModel(m.Config)
		m.Forward(a, ids, valid)
		_, n, dHidden := m.LMLoss(a, labels, 0, grads)
		if n != 6 {
			t.Fatalf("%d counted tokens, want 6", n)
		}
		m.Backward(a, dHidden, grads)
		rng := rand.New(rand.NewPCG(5, 6))
		gp := grads.Named()
		for pi, p := range m.Named() {
			for s := 0; s < 3; s++ {
				i := rng.IntN(len(p.Data))
				num := testenv.NumericGrad(loss, p.Data, []int{i}, 1e-2)[0]
				got := float64(gp[pi].Data[i])
				if math.Abs(num-got) > 1e-2*math.Max(0.1, math.Abs(num)) {
					t.Errorf("tied %v kv %d: d%s[%d] = %g, numeric %g", c.tied, c.kvHeads, p.Name, i, got, num)
				}
			}
		}
	}
}

// Decoding with the KV cache gives the full forward pass's logits at every
// position, fed a prompt at once (long enough for the prompt's attention)
// then token by token; a float16 cache gives them to float16's precision.
func TestCacheMatchesForward(t *testing.T) {
	m := tinyModel(t, false, 2)
	ids := []int32{3, 7, 11, 2, 9, 4, 20, 5, 5, 1, 8, 30, 2, 6, 17, 12, 3, 9, 14, 2, 7}
	a := m.NewActs(1, len(ids))
	m.Forward(a, ids, nil)
	full := make([]float32, len(ids)*m.Config.VocabSize)
	m.Logits(a, full)
	v := m.Config.VocabSize
	for _, half := range []bool{false, true} {
		tol := 1e-4
		if half {
			tol = 1e-2
		}
		check := func(pos int, got []float32) {
			for i := 0; i < v; i++ {
				if d := math.Abs(float64(got[i] - full[pos*v+i])); d > tol {
					t.Fatalf("half=%v: position %d logit %d: cache %g, forward %g", half, pos, i, got[i], full[pos*v+i])
				}
			}
		}
		for _, first := range []int{3, 17} {
			ca := m.NewCache(1, len(ids), half)
			check(first-1, m.Step(ca, [][]int32{ids[:first]}))
			for p := first; p < len(ids); p++ {
				check(p, m.Step(ca, [][]int32{ids[p : p+1]}))
			}
			if ca.KV.Half() != half {
				t.Fatalf("NewCache(half=%v) made a cache with Half() = %v", half, ca.KV.Half())
			}
		}
	}
}

// Decoding a batch of prompts of different lengths together gives each
// the tokens it gets alone.
func TestGenerateBatch(t *testing.T) {
	m := tinyModel(t, false, 2)
	prompts := [][]int32{{1, 5, 9}, {2}, {7, 7, 3, 12, 30, 4, 8, 1, 6, 2}}
	for _, s := range []Sampling{{MaxNewTokens: 6}, {MaxNewTokens: 5, Temperature: 0.8, TopP: 0.9, Seed: 4}} {
		batch := must(m.GenerateBatch(prompts, s, nil))
		for b, p := range prompts {
			one := s
			one.Seed += uint64(b)
			if alone := must(m.Generate(p, one, nil)); !equalInts(alone, batch[b]) {
				t.Errorf("prompt %d: batched %v, alone %v", b, batch[b], alone)
			}
		}
	}
	stop := must(m.Generate(prompts[0], Sampling{MaxNewTokens: 6}, nil))[1]
	got := must(m.GenerateBatch(prompts, Sampling{MaxNewTokens: 6, StopIDs: []int{stop}}, nil))
	if len(got[0]) != 2 {
		t.Errorf("sequence 0 did not stop at %d: %v", stop, got[0])
	}
}

func TestSampling(t *testing.T) {
	m := tinyModel(t, true, 4)
	prompt := []int32{1, 5, 9}
	greedy := must(m.Generate(prompt, Sampling{MaxNewTokens: 8}, nil))
	if k1 := must(m.Generate(prompt, Sampling{MaxNewTokens: 8, Temperature: 0.7, TopK: 1, Seed: 3}, nil)); !equalInts(k1, greedy) {
		t.Errorf("top_k 1 %v differs from greedy %v", k1, greedy)
	}
	s := Sampling{MaxNewTokens: 8, Temperature: 1, TopP: 0.9, RepetitionPenalty: 1.3, Seed: 11}
	if a, b := must(m.Generate(prompt, s, nil)), must(m.Generate(prompt, s, nil)); !equalInts(a, b) {
		t.Errorf("the same seed gave %v and %v", a, b)
	}
	stop := greedy[2]
	got := must(m.Generate(prompt, Sampling{MaxNewTokens: 8, StopIDs: []int{stop}}, nil))
	if got[len(got)-1] != stop || len(got) > 3 {
		t.Errorf("did not stop at %d: %v", stop, got)
	}
	n := 0
	m.Generate(prompt, Sampling{MaxNewTokens: 8}, func(int) bool { n++; return n < 2 })
	if n != 2 {
		t.Errorf("emit was called %d times after asking to stop at 2", n)
	}
}

// must is v, failing the test run on err.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Gradient checkpointing recomputes the same activations: the gradients
// are identical, with one layer's buffers instead of all.
func TestCheckpointedActs(t *testing.T) {
	m := tinyModel(t, false, 2)
	ids := []int32{3, 7, 11, 2, 9, 4, 4, 20, 0, 0}
	valid := []bool{true, true, true, true, true, true, true, true, false, false}
	var named [2][]NamedParam
	for k, a := range []*Acts{m.NewActs(2, 5), m.NewCheckpointedActs(2, 5)} {
		g := NewModel(m.Config)
		m.Forward(a, ids, valid)
		_, _, dh := m.LMLoss(a, ids, 0, g)
		m.Backward(a, dh, g)
		named[k] = g.Named()
		if k == 1 && len(a.layers) != 1 {
			t.Errorf("checkpointed activations keep %d layers", len(a.layers))
		}
	}
	for i, p := range named[0] {
		for j, v := range p.Data {
			if named[1][i].Data[j] != v {
				t.Fatalf("%s[%d]: %g, checkpointed %g", p.Name, j, v, named[1][i].Data[j])
			}
		}
	}
	c := m.Config
	if c.ActivationBytes(8, 256, true) >= c.ActivationBytes(8, 256, false) {
		t.Error("checkpointing does not shrink the estimate")
	}
}
