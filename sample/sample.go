// Package sample picks the next token from a decoder's logits as Hugging
// Face's generate() does: repetition penalty, then greedy, or temperature,
// top-k and top-p before drawing.
package sample

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Params are the sampling settings, with transformers' meanings.
type Params struct {
	Temperature       float64 // 0: greedy
	TopK              int     // 0: off
	TopP              float64 // 1 (or 0, unset): off
	RepetitionPenalty float64 // 1 (or 0, unset): off
	Seed              uint64
}

// Validate checks the settings' ranges as transformers does, naming the
// setting and its value (0 stands for unset where noted).
func (p Params) Validate() error {
	switch {
	case math.IsNaN(p.Temperature) || math.IsInf(p.Temperature, 0) || p.Temperature < 0:
		return fmt.Errorf("temperature %g: use 0 (greedy) or a positive number", p.Temperature)
	case p.TopK < 0:
		return fmt.Errorf("top_k %d: use 0 (off) or a positive number", p.TopK)
	case !(p.TopP >= 0 && p.TopP <= 1):
		return fmt.Errorf("top_p %g: use a number in (0, 1], 1 for off", p.TopP)
	case !(p.RepetitionPenalty >= 0) || math.IsInf(p.RepetitionPenalty, 0):
		return fmt.Errorf("repetition_penalty %g: use a positive number, 1 for off", p.RepetitionPenalty)
	}
	return nil
}

// Sampler draws one sequence's tokens from a stream of its own, so that
// the sequence's output does not depend on what else is decoded with it.
type Sampler struct {
	p    Params
	rng  *rand.Rand
	seen map[int]bool
	cand []cand
	prob []float64
}

type cand struct {
	id int
	l  float64
}

// New makes the sampler of stream number stream (a sequence's index in
// its batch).
func New(p Params, stream uint64) *Sampler {
	return &Sampler{p: p, rng: rand.New(rand.NewPCG(p.Seed+stream, 0x9e11)), seen: map[int]bool{}}
}

// Observe records tokens the sequence holds (its prompt, its output), for
// the repetition penalty.
func (s *Sampler) Observe(ids ...int) {
	for _, id := range ids {
		s.seen[id] = true
	}
}

// Next picks the next token from logits (changed in place by the
// repetition penalty) and observes it.
func (s *Sampler) Next(logits []float32) int {
	id := s.pick(logits)
	s.seen[id] = true
	return id
}

func (s *Sampler) pick(logits []float32) int {
	p := &s.p
	if p.RepetitionPenalty > 0 && p.RepetitionPenalty != 1 {
		pen := float32(p.RepetitionPenalty)
		for id := range s.seen {
			if logits[id] < 0 {
				logits[id] *= pen
			} else {
				logits[id] /= pen
			}
		}
	}
	if p.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best
	}
	cands := s.cand[:0]
	for i, v := range logits {
		cands = append(cands, cand{i, float64(v) / p.Temperature})
	}
	s.cand = cands
	sort.Slice(cands, func(i, j int) bool {
		return cands[i].l > cands[j].l || cands[i].l == cands[j].l && cands[i].id < cands[j].id
	})
	if p.TopK > 0 && p.TopK < len(cands) {
		cands = cands[:p.TopK]
	}
	mx := cands[0].l
	probs := s.prob[:0]
	var sum float64
	for _, c := range cands {
		e := math.Exp(c.l - mx)
		probs = append(probs, e)
		sum += e
	}
	s.prob = probs
	if p.TopP > 0 && p.TopP < 1 {
		cum := 0.0
		for i := range probs {
			cum += probs[i] / sum
			if cum >= p.TopP {
				probs, cands = probs[:i+1], cands[:i+1]
				break
			}
		}
		sum = 0
		for _, q := range probs {
			sum += q
		}
	}
	r := s.rng.Float64() * sum
	for i, q := range probs {
		if r -= q; r < 0 {
			return cands[i].id
		}
	}
	return cands[len(cands)-1].id
}
