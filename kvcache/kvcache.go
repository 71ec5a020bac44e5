// Package kvcache holds the keys and values a decoder has computed for the
// tokens each sequence has seen, so that a new token costs one step
// instead of a pass over the whole sequence. Each sequence is a slot that
// grows as tokens come, up to a fixed most, and can be emptied for reuse
// (a server's continuous batching, PPO's rollouts).
package kvcache

import (
	"fmt"

	"zhllama/tensor"
)

// Cache is the past keys and values of a batch of sequences, per layer.
// A layer's keys (and values) are kept head by head, each head's
// positions one after another, so that attention for one head reads one
// contiguous run of memory instead of a strided slice of every position.
type Cache struct {
	layers, heads, headDim, most int
	half                         bool
	seqs                         []seq
}

type seq struct {
	k, v     [][]float32 // per layer [heads × room × headDim]
	k16, v16 [][]uint16  // the same, in a float16 cache
	room     []int       // per layer: positions each head has room for
	n        int         // tokens seen
}

// New makes a cache for batch sequences of up to most tokens each, with
// layers layers of heads key/value heads of headDim values. Memory is
// taken as sequences grow. A half cache keeps keys and values as IEEE
// float16 (rounded to nearest even): half the memory, and half what
// attention reads a token, as in llama.cpp's default cache.
func New(batch, layers, heads, headDim, most int, half bool) *Cache {
	return &Cache{layers: layers, heads: heads, headDim: headDim, most: most, half: half, seqs: make([]seq, batch)}
}

// Half reports whether the cache keeps float16 keys and values.
func (c *Cache) Half() bool { return c.half }

// Layer is one layer's keys and values of a sequence, head by head:
// position j of head h at h·Stride + j·headDim, in K and V, or in K16 and
// V16 in a half cache. A head's run has room for Stride/headDim positions,
// of which the sequence's hold values.
type Layer struct {
	K, V     []float32
	K16, V16 []uint16
	Stride   int
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
// included. The sequence's length moves on with Advance, once every layer
// has put its part.
func (c *Cache) Put(b, l int, k, v []float32) Layer {
	s := &c.seqs[b]
	width := c.heads * c.headDim
	rows := len(k) / width
	if s.room == nil {
		s.room = make([]int, c.layers)
		if c.half {
			s.k16, s.v16 = make([][]uint16, c.layers), make([][]uint16, c.layers)
		} else {
			s.k, s.v = make([][]float32, c.layers), make([][]float32, c.layers)
		}
	}
	if s.room[l] < s.n+rows {
		// Double, at least 16 tokens, at most the cache's size.
		room := min(c.most, max(16, 2*s.room[l], s.n+rows))
		if c.half {
			s.k16[l] = regrow(s.k16[l], c.heads, c.headDim, s.room[l], room, s.n)
			s.v16[l] = regrow(s.v16[l], c.heads, c.headDim, s.room[l], room, s.n)
		} else {
			s.k[l] = regrow(s.k[l], c.heads, c.headDim, s.room[l], room, s.n)
			s.v[l] = regrow(s.v[l], c.heads, c.headDim, s.room[l], room, s.n)
		}
		s.room[l] = room
	}
	stride := s.room[l] * c.headDim
	for r := range rows {
		for h := range c.heads {
			at, src := h*stride+(s.n+r)*c.headDim, r*width+h*c.headDim
			if c.half {
				tensor.NarrowF16(s.k16[l][at:at+c.headDim], k[src:src+c.headDim])
				tensor.NarrowF16(s.v16[l][at:at+c.headDim], v[src:src+c.headDim])
			} else {
				copy(s.k[l][at:at+c.headDim], k[src:src+c.headDim])
				copy(s.v[l][at:at+c.headDim], v[src:src+c.headDim])
			}
		}
	}
	if c.half {
		return Layer{K16: s.k16[l], V16: s.v16[l], Stride: stride}
	}
	return Layer{K: s.k[l], V: s.v[l], Stride: stride}
}

// regrow moves the first n positions of each of heads heads from a layer
// laid out with room old to one with room positions.
func regrow[T float32 | uint16](kv []T, heads, headDim, old, room, n int) []T {
	grown := make([]T, heads*room*headDim)
	for h := range heads {
		copy(grown[h*room*headDim:], kv[h*old*headDim:h*old*headDim+n*headDim])
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
		for l := range s.k16 {
			n += 2 * int64(len(s.k16[l])+len(s.v16[l]))
		}
	}
	return n
}
