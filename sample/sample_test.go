package sample

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func logitsOf(p ...float64) []float32 {
	out := make([]float32, len(p))
	for i, x := range p {
		out[i] = float32(math.Log(x))
	}
	return out
}

// Greedy takes the argmax; top-k 1 and a tiny top-p are greedy too.
func TestGreedyLimits(t *testing.T) {
	l := logitsOf(0.1, 0.5, 0.3, 0.1)
	for _, p := range []Params{{}, {Temperature: 1, TopK: 1, Seed: 3}, {Temperature: 1.5, TopP: 0.01, Seed: 4}} {
		s := New(p, 0)
		for range 20 {
			if id := s.Next(append([]float32(nil), l...)); id != 1 {
				t.Fatalf("%+v picked %d", p, id)
			}
		}
	}
}

// Draws follow the distribution within top-k and top-p, from a stream
// that repeats for the same seed and stream number.
func TestDrawsFollowTheDistribution(t *testing.T) {
	l := logitsOf(0.1, 0.5, 0.3, 0.1)
	count := make([]int, 4)
	s := New(Params{Temperature: 1, TopK: 3, TopP: 0.79, Seed: 1}, 0)
	const n = 20000
	for range n {
		count[s.Next(append([]float32(nil), l...))]++
	}
	// top-k 3 keeps 1, 2 and both 0.1s (ties with the 3rd); top-p 0.79 then keeps 0.5 and 0.3.
	if count[0]+count[3] != 0 || math.Abs(float64(count[1])/n-0.625) > 0.02 {
		t.Errorf("counts %v, want about 62.5%% for id 1 and none outside the nucleus", count)
	}
	a, b, c := New(Params{Temperature: 1, Seed: 9}, 2), New(Params{Temperature: 1, Seed: 9}, 2), New(Params{Temperature: 1, Seed: 9}, 3)
	same, differ := true, false
	for range 50 {
		x, y, z := a.Next(append([]float32(nil), l...)), b.Next(append([]float32(nil), l...)), c.Next(append([]float32(nil), l...))
		same = same && x == y
		differ = differ || x != z
	}
	if !same || !differ {
		t.Errorf("same stream repeats: %v, other stream differs: %v", same, differ)
	}
}

// The repetition penalty divides positive logits and multiplies negative
// ones of tokens seen, as transformers does.
func TestRepetitionPenalty(t *testing.T) {
	s := New(Params{RepetitionPenalty: 2}, 0)
	s.Observe(0, 2)
	l := []float32{3, 2, -1, -0.5}
	if id := s.Next(l); id != 1 {
		t.Errorf("picked %d from %v", id, l)
	}
	if l[0] != 1.5 || l[2] != -2 || l[1] != 2 {
		t.Errorf("penalized logits %v", l)
	}
}

// The tokens kept and their weights equal a plain reading of
// transformers' warpers that sorts the whole vocabulary: top-k keeps
// every token at least as likely as the k-th, top-p drops the least likely
// while their cumulative share is at most 1 − top_p. Logits with many ties
// (rounded to a coarse grid) check the edges.
func TestWeightsMatchSortedReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		v := 1 + rng.IntN(300)
		logits := make([]float32, v)
		for i := range logits {
			logits[i] = float32(rng.NormFloat64() * 3)
			if trial%2 == 0 {
				logits[i] = float32(math.Round(float64(logits[i])))
			}
		}
		p := Params{Temperature: 0.5 + rng.Float64(), TopK: rng.IntN(v + 2), TopP: []float64{0, 1, 0.3, 0.9, 0.99, 1e-9}[rng.IntN(6)]}
		got := New(p, 0).weights(logits)
		want := referenceWeights(logits, p)
		if len(got) != len(want) {
			t.Fatalf("trial %d %+v: kept %d tokens, reference %d", trial, p, len(got), len(want))
		}
		var gs, ws float64
		for i := range got {
			gs, ws = gs+got[i].l, ws+want[i].l
		}
		for i := range got {
			if got[i].id != want[i].id || math.Abs(got[i].l/gs-want[i].l/ws) > 1e-12 {
				t.Fatalf("trial %d %+v: token %d: %v, reference %v", trial, p, i, got[i], want[i])
			}
		}
	}
}

func referenceWeights(logits []float32, p Params) []cand {
	type tok struct {
		id int
		l  float64
	}
	all := make([]tok, len(logits))
	for i, x := range logits {
		all[i] = tok{i, float64(x) / p.Temperature}
	}
	sorted := append([]tok(nil), all...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].l > sorted[j].l })
	keep := make([]bool, len(all))
	for i := range keep {
		keep[i] = p.TopK <= 0 || p.TopK >= len(all) || all[i].l >= sorted[p.TopK-1].l
	}
	mx, sum := sorted[0].l, 0.0
	for i, x := range all {
		if keep[i] {
			sum += math.Exp(x.l - mx)
		}
	}
	if p.TopP > 0 && p.TopP < 1 {
		// Ascending by probability, ties with the higher id first.
		asc := make([]tok, 0, len(all))
		for i, x := range all {
			if keep[i] {
				asc = append(asc, x)
			}
		}
		sort.Slice(asc, func(i, j int) bool { return asc[i].l < asc[j].l || asc[i].l == asc[j].l && asc[i].id > asc[j].id })
		cum := 0.0
		for _, x := range asc[:len(asc)-1] {
			if cum += math.Exp(x.l-mx) / sum; cum > 1-p.TopP {
				break
			}
			keep[x.id] = false
		}
	}
	var out []cand
	for i, x := range all {
		if keep[i] {
			out = append(out, cand{i, math.Exp(x.l - mx)})
		}
	}
	return out
}

// With nothing filtered, draws (weighed by the vector exp) follow the
// tempered distribution.
func TestUnfilteredDraws(t *testing.T) {
	l := logitsOf(0.1, 0.5, 0.3, 0.1)
	s := New(Params{Temperature: 0.5, Seed: 2}, 1)
	count := make([]int, 4)
	const n = 40000
	for range n {
		count[s.Next(append([]float32(nil), l...))]++
	}
	// Temperature 0.5 squares the probabilities: 0.01, 0.25, 0.09, 0.01 over 0.36.
	for i, p := range []float64{0.01, 0.25, 0.09, 0.01} {
		if got := float64(count[i]) / n; math.Abs(got-p/0.36) > 0.01 {
			t.Errorf("token %d drawn %.4f of the time, want %.4f", i, got, p/0.36)
		}
	}
}
