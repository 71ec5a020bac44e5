// Package sample picks the next token from a decoder's logits as Hugging
// Face's generate() does: repetition penalty, then greedy, or temperature,
// top-k and top-p before drawing.
package sample

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"zhllama/tensor"
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
	p     Params
	rng   *rand.Rand
	seen  map[int]bool
	cand  []cand
	prob  []float64
	order []int
	all   []float32 // every token's weight when nothing is filtered
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

type cand struct {
	id int
	l  float64 // logit over temperature, then probability (unnormalised)
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
	if (p.TopK <= 0 || p.TopK >= len(logits)) && (p.TopP <= 0 || p.TopP >= 1) {
		// Nothing filtered: weigh every token with the vector exp.
		s.all = grow(s.all, len(logits))
		r := s.rng.Float64() * tensor.SoftmaxWeights(s.all, logits, float32(1/p.Temperature))
		last := 0
		for id, w := range s.all {
			if w > 0 {
				if r -= float64(w); r < 0 {
					return id
				}
				last = id
			}
		}
		return last
	}
	cands := s.weights(logits)
	var sum float64
	for _, c := range cands {
		sum += c.l
	}
	// Walk the candidates in id order, as torch.multinomial walks the vocabulary.
	r := s.rng.Float64() * sum
	for _, c := range cands {
		if r -= c.l; r < 0 {
			return c.id
		}
	}
	return cands[len(cands)-1].id
}

// weights returns the tokens kept by top-k and top-p, in id order, each
// with its probability up to a common factor, as transformers' warpers
// keep them: top-k keeps every token at least as likely as the k-th; top-p
// then drops the least likely tokens while their share of the mass is at
// most 1 − top_p, keeping at least one. No full sort of the vocabulary:
// the k-th value is found by selection, and only the tokens top-k keeps
// are sorted for top-p.
func (s *Sampler) weights(logits []float32) []cand {
	p := &s.p
	cands := s.cand[:0]
	for i, v := range logits {
		cands = append(cands, cand{i, float64(v) / p.Temperature})
	}
	s.cand = cands
	if p.TopK > 0 && p.TopK < len(cands) {
		vals := s.prob[:0]
		for _, c := range cands {
			vals = append(vals, c.l)
		}
		s.prob = vals
		kth := kthLargest(vals, p.TopK)
		kept := cands[:0]
		for _, c := range cands {
			if c.l >= kth {
				kept = append(kept, c)
			}
		}
		cands = kept
	}
	mx := math.Inf(-1)
	for _, c := range cands {
		mx = max(mx, c.l)
	}
	var sum float64
	for i := range cands {
		cands[i].l = math.Exp(cands[i].l - mx)
		sum += cands[i].l
	}
	if p.TopP > 0 && p.TopP < 1 && len(cands) > 1 {
		order := s.order[:0]
		for i := range cands {
			order = append(order, i)
		}
		s.order = order
		// Least likely first; among equals the higher id goes first.
		sort.Slice(order, func(i, j int) bool {
			a, b := cands[order[i]], cands[order[j]]
			return a.l < b.l || a.l == b.l && a.id > b.id
		})
		cum := 0.0
		for _, i := range order[:len(order)-1] {
			if cum += cands[i].l / sum; cum > 1-p.TopP {
				break
			}
			cands[i].l = 0
		}
		kept := cands[:0]
		for _, c := range cands {
			if c.l > 0 {
				kept = append(kept, c)
			}
		}
		cands = kept
	}
	return cands
}

// kthLargest returns the k-th largest of vals (1-based), reordering vals:
// quickselect with a median-of-three pivot.
func kthLargest(vals []float64, k int) float64 {
	lo, hi, want := 0, len(vals)-1, k-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		a, b, c := vals[lo], vals[mid], vals[hi]
		pivot := max(min(a, b), min(max(a, b), c))
		i, j := lo, hi
		for i <= j {
			for vals[i] > pivot {
				i++
			}
			for vals[j] < pivot {
				j--
			}
			if i <= j {
				vals[i], vals[j] = vals[j], vals[i]
				i++
				j--
			}
		}
		switch {
		case want <= j:
			hi = j
		case want >= i:
			lo = i
		default:
			return vals[want]
		}
	}
	return vals[want]
}
