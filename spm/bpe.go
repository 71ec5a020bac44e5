package spm

import (
	"slices"
	"strings"
	"unsafe"
)

// BPE encoding as sentencepiece does it: split the normalized text into
// characters (user-defined symbols whole and frozen), then repeatedly merge
// the adjacent pair whose concatenation is the highest-scoring piece, the
// leftmost first among equal scores.

type bpeSym struct {
	start, end int32 // byte span in the normalized text; start==end once merged away
	prev, next int32
	id         int32 // id among NORMAL/USER_DEFINED/UNUSED pieces, or -1
	freeze     bool
}

type bpePair struct {
	left, right int32
	score       float32
	size        int32
	id          int32
}

type bpeScratch struct {
	syms  []bpeSym
	heap  heap[bpePair]
	rev   map[string][2]string
	cache map[string][]token // word -> tokens, offsets from the word's start
}

// canSplitWords reports whether no piece holds a U+2581 right after another
// character, so that BPE merges never cross the start of a word.
func (p *Processor) canSplitWords() bool {
	for piece := range p.pieces {
		for i := 1; i < len(piece); {
			l := charLen(piece[i:])
			if piece[i:i+l] == SpaceSymbol {
				if prev := piece[:i]; !strings.HasSuffix(prev, SpaceSymbol) {
					return false
				}
			}
			i += l
		}
	}
	return true
}

// buildMerges records, for every piece that splits into two pieces, the pair
// of ids that forms it, so that encoding looks up ids instead of strings.
func (p *Processor) buildMerges() {
	p.merges = make(map[uint64]int32, 2*len(p.pieces))
	for piece, id := range p.pieces {
		for k := 1; k < len(piece); k++ {
			l, ok := p.pieces[piece[:k]]
			if !ok {
				continue
			}
			if r, ok := p.pieces[piece[k:]]; ok {
				p.merges[uint64(l)<<32|uint64(uint32(r))] = id
			}
		}
	}
}

// pairLess orders the agenda: higher score first, then the leftmost pair.
func pairLess(a, b *bpePair) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.left < b.left
}

// encodeBPE encodes normalized text. When no piece can span the start of a
// word (a U+2581 after another character), words are encoded one by one, and
// frequent short words come from a cache: the result is the same, since
// merges never cross those points, and long lines no longer grow one big heap.
func (p *Processor) encodeBPE(norm []byte, s *bpeScratch, out []token) []token {
	// The normalized buffer is not modified during the call, so a string view
	// of it makes substring lookups free of copies.
	text := unsafe.String(&norm[0], len(norm))
	if !p.wordSplit {
		return p.encodeBPESegment(text, 0, s, out)
	}
	const ws = SpaceSymbol
	start := 0
	for i := 0; i < len(text); {
		l := charLen(text[i:])
		if i > start && l == len(ws) && text[i:i+l] == ws && text[i-len(ws):i] != ws {
			out = p.encodeBPEWord(text[start:i], int32(start), s, out)
			start = i
		}
		i += l
	}
	return p.encodeBPEWord(text[start:], int32(start), s, out)
}

const (
	bpeCacheMaxWord = 48      // bytes; longer words are not cached
	bpeCacheSize    = 1 << 15 // entries before the cache is cleared
)

func (p *Processor) encodeBPEWord(w string, base int32, s *bpeScratch, out []token) []token {
	if len(w) > bpeCacheMaxWord {
		return p.encodeBPESegment(w, base, s, out)
	}
	if toks, ok := s.cache[w]; ok {
		for _, t := range toks {
			out = append(out, token{t.start + base, t.end + base, t.id})
		}
		return out
	}
	n := len(out)
	out = p.encodeBPESegment(w, 0, s, out)
	if s.cache == nil || len(s.cache) >= bpeCacheSize {
		s.cache = make(map[string][]token, 1024)
	}
	s.cache[strings.Clone(w)] = slices.Clone(out[n:])
	for i := n; i < len(out); i++ {
		out[i].start += base
		out[i].end += base
	}
	return out
}

// encodeBPESegment encodes text; token offsets are relative to text plus base.
func (p *Processor) encodeBPESegment(text string, base int32, s *bpeScratch, out []token) []token {
	syms := s.syms[:0]
	for pos := 0; pos < len(text); {
		l := p.user.match(text[pos:])
		freeze := l > 0
		if !freeze {
			l = charLen(text[pos:])
		}
		id, ok := p.pieces[text[pos:pos+l]]
		if !ok {
			id = -1
		}
		n := int32(len(syms))
		syms = append(syms, bpeSym{start: int32(pos), end: int32(pos + l), prev: n - 1, next: n + 1, id: id, freeze: freeze})
		pos += l
	}
	syms[len(syms)-1].next = -1
	h := &s.heap
	h.items, h.less = h.items[:0], pairLess
	if p.hasUnused && s.rev == nil {
		s.rev = map[string][2]string{}
	}
	clear(s.rev)
	add := func(l, r int32) {
		if l < 0 || r < 0 || syms[l].freeze || syms[r].freeze {
			return
		}
		a, b := &syms[l], &syms[r]
		var id int32
		if a.id >= 0 && b.id >= 0 {
			var ok bool
			if id, ok = p.merges[uint64(a.id)<<32|uint64(uint32(b.id))]; !ok {
				return
			}
		} else {
			// A character outside the vocabulary can still start a piece.
			var ok bool
			if id, ok = p.pieces[text[a.start:b.end]]; !ok {
				return
			}
		}
		h.push(bpePair{left: l, right: r, score: p.scores[id], size: b.end - a.start, id: id})
		if p.hasUnused && p.types[id] == Unused {
			s.rev[text[a.start:b.end]] = [2]string{text[a.start:a.end], text[b.start:b.end]}
		}
	}
	for i := 1; i < len(syms); i++ {
		add(int32(i-1), int32(i))
	}
	for len(h.items) > 0 {
		top := h.pop()
		a, b := &syms[top.left], &syms[top.right]
		if a.start == a.end || b.start == b.end || (a.end-a.start)+(b.end-b.start) != top.size {
			continue // stale
		}
		a.end = b.end
		a.id = top.id
		a.next = b.next
		if b.next >= 0 {
			syms[b.next].prev = top.left
		}
		b.start = b.end
		add(a.prev, top.left)
		add(top.left, a.next)
	}
	for i := int32(0); i != -1; i = syms[i].next {
		sy := &syms[i]
		if sy.id >= 0 && (!p.hasUnused || p.types[sy.id] != Unused) {
			out = append(out, token{sy.start + base, sy.end + base, sy.id})
			continue
		}
		n := len(out)
		out = p.resegment(text, sy.start, sy.end, s.rev, out)
		for k := n; k < len(out); k++ {
			out[k].start += base
			out[k].end += base
		}
	}
	s.syms = syms
	return out
}

// resegment splits an UNUSED piece back into the pieces it was merged from,
// and maps a piece outside the vocabulary to its reserved id or unknown.
func (p *Processor) resegment(text string, start, end int32, rev map[string][2]string, out []token) []token {
	w := text[start:end]
	id := int32(p.PieceToID(w))
	if id == p.unkID || p.types[id] != Unused {
		return append(out, token{start, end, id})
	}
	lr, ok := rev[w]
	if !ok {
		return append(out, token{start, end, id})
	}
	mid := start + int32(len(lr[0]))
	out = p.resegment(text, start, mid, rev, out)
	return p.resegment(text, mid, end, rev, out)
}
