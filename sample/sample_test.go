package sample

import (
	"math"
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
	// top-k 3 keeps 1, 2 and one of the 0.1s; top-p 0.79 then keeps 0.5 and 0.3.
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
