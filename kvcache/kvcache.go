// Package kvcache holds the keys and values a decoder has computed for the
// tokens each sequence has seen, so that a new token costs one step
// instead of a pass over the whole sequence. Each sequence is a slot that
// grows as tokens come, up to a fixed most, and can be emptied for reuse
// (a server's continuous batching, PPO's rollouts).
package kvcache

import "fmt"

// Cache is the past keys and values of a batch of sequences, per layer.
type Cache struct {
	layers, width, most int
	seqs                []seq
}

type seq struct {
	k, v [][]float32 // per layer [capacity × width]
	n    int         // tokens seen
}

// New makes a cache for batch sequences of up to most tokens each, with
// layers layers whose keys and values are width values a token. Memory is
// taken as sequences grow.
func New(batch, layers, width, most int) *Cache {
	return &Cache{layers: layers, width: width, most: most, seqs: make([]seq, batch)}
}

// Batch is the number of sequences.
func (c *Cache) Batch() int { return len(c.seqs) }

// Len is the number of tokens sequence b has seen.
func (c *Cache) Len(b int) int { return c.seqs[b].n }

// Most is the most tokens a sequence can hold.
func (c *Cache) Most() int { return c.most }

// Room reports an error when sequence b cannot take n more tokens.
func (c *Cache) Room(b, n int) error {
	if c.seqs[b].n+n > c.most {
		return fmt.Errorf("sequence %d: %d tokens cached and %d more pass the cache's %d", b, c.seqs[b].n, n, c.most)
	}
	return nil
}

// Put stores the keys and values k, v [rows × width] of sequence b's next
// rows tokens (positions Len(b) on) in layer l, and returns the layer's
// keys and values of every position so far, the new ones included. The
// sequence's length moves on with Advance, once every layer has put its
// part.
func (c *Cache) Put(b, l int, k, v []float32) (keys, vals []float32) {
	s := &c.seqs[b]
	rows := len(k) / c.width
	need := (s.n + rows) * c.width
	if s.k == nil {
		s.k, s.v = make([][]float32, c.layers), make([][]float32, c.layers)
	}
	if cap(s.k[l]) < need {
		// Double, at least 16 tokens, at most the cache's size.
		tokens := min(c.most, max(16, 2*cap(s.k[l])/c.width, s.n+rows))
		s.k[l] = append(make([]float32, 0, tokens*c.width), s.k[l][:s.n*c.width]...)
		s.v[l] = append(make([]float32, 0, tokens*c.width), s.v[l][:s.n*c.width]...)
	}
	s.k[l], s.v[l] = s.k[l][:need], s.v[l][:need]
	copy(s.k[l][s.n*c.width:], k)
	copy(s.v[l][s.n*c.width:], v)
	return s.k[l], s.v[l]
}

// Advance moves sequence b on by n tokens.
func (c *Cache) Advance(b, n int) { c.seqs[b].n += n }

// Reset empties sequence b, keeping its memory for the next one.
func (c *Cache) Reset(b int) { c.seqs[b].n = 0 }

// Bytes is the memory the cache holds.
func (c *Cache) Bytes() int64 {
	var n int64
	for _, s := range c.seqs {
		for l := range s.k {
			n += 4 * int64(cap(s.k[l])+cap(s.v[l]))
		}
	}
	return n
}
