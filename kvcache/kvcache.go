// Package kvcache holds the keys and values a decoder has computed for the
// tokens each sequence has seen, so that a new token costs one step
// instead of a pass over the whole sequence. Each sequence is a slot that
// grows as tokens come, up to a fixed most, and can be emptied for reuse
// (a server's continuous batching, PPO's rollouts).
package kvcache

import "fmt"

// Cache is the past keys and values of a batch of sequences, per layer.
// A layer's keys (and values) are kept head by head, each head's
// positions one after another, so that attention for one head reads one
// contiguous run of memory instead of a strided slice of every position.
type Cache struct {
	layers, heads, headDim, most int
	seqs                         []seq
}

type seq struct {
	k, v [][]float32 // per layer [heads × room × headDim]
	room []int       // per layer: positions each head has room for
	n    int         // tokens seen
}

// New makes a cache for batch sequences of up to most tokens each, with
// layers layers of heads key/value heads of headDim values. Memory is
// taken as sequences grow.
func New(batch, layers, heads, headDim, most int) *Cache {
	return &Cache{layers: layers, heads: heads, headDim: headDim, most: most, seqs: make([]seq, batch)}
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

// Put stores the keys and values k, v [rows × heads × headDim] of sequence
// b's next rows tokens (positions Len(b) on) in layer l, and returns the
// layer's keys and values of every position so far, the new ones
// included: position j of head h at h·stride + j·headDim. The sequence's
// length moves on with Advance, once every layer has put its part.
func (c *Cache) Put(b, l int, k, v []float32) (keys, vals []float32, stride int) {
	s := &c.seqs[b]
	width := c.heads * c.headDim
	rows := len(k) / width
	if s.k == nil {
		s.k, s.v, s.room = make([][]float32, c.layers), make([][]float32, c.layers), make([]int, c.layers)
	}
	if s.room[l] < s.n+rows {
		// Double, at least 16 tokens, at most the cache's size.
		room := min(c.most, max(16, 2*s.room[l], s.n+rows))
		s.k[l] = c.regrow(s.k[l], s.room[l], room, s.n)
		s.v[l] = c.regrow(s.v[l], s.room[l], room, s.n)
		s.room[l] = room
	}
	stride = s.room[l] * c.headDim
	for r := range rows {
		for h := range c.heads {
			at := h*stride + (s.n+r)*c.headDim
			src := r*width + h*c.headDim
			copy(s.k[l][at:at+c.headDim], k[src:src+c.headDim])
			copy(s.v[l][at:at+c.headDim], v[src:src+c.headDim])
		}
	}
	return s.k[l], s.v[l], stride
}

// regrow moves the first n positions of each head from a layer laid out
// with room old to one with room positions.
func (c *Cache) regrow(kv []float32, old, room, n int) []float32 {
	grown := make([]float32, c.heads*room*c.headDim)
	for h := range c.heads {
		copy(grown[h*room*c.headDim:], kv[h*old*c.headDim:h*old*c.headDim+n*c.headDim])
	}
	return grown
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
			n += 4 * int64(len(s.k[l])+len(s.v[l]))
		}
	}
	return n
}
