package train

import (
	"math/rand/v2"

	"zhllama/tensor"
)

// headDropout is the dropout TRL's value head applies to its input (the
// final hidden states) in training: summary_dropout_prob, default 0.1.
type headDropout struct {
	p             float64
	dropped, mask []float32
}

// input is the head's input: hidden through dropout drawn from seed, or
// hidden itself when seed is 0 (evaluation) or p is 0.
func (d *headDropout) input(hidden []float32, seed uint64) []float32 {
	if seed == 0 || d.p <= 0 {
		d.mask = d.mask[:0]
		return hidden
	}
	d.dropped, d.mask = grow(&d.dropped, len(hidden)), grow(&d.mask, len(hidden))
	tensor.Dropout(d.dropped, d.mask, hidden, d.p, rand.New(rand.NewPCG(seed, 0xd0)))
	return d.dropped
}

// last is the input the last call returned, for the head's backward pass.
func (d *headDropout) last(hidden []float32) []float32 {
	if len(d.mask) > 0 {
		return d.dropped
	}
	return hidden
}

// back takes a gradient with respect to the head's input back through
// the dropout.
func (d *headDropout) back(dInput []float32) {
	for i, m := range d.mask {
		dInput[i] *= m
	}
}
