package spm

import "unsafe"

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
	syms []bpeSym
	heap []bpePair
	rev  map[string][2]string
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

func heapPush(h []bpePair, x bpePair) []bpePair {
	h = append(h, x)
	i := len(h) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !pairLess(&h[i], &h[parent]) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
	return h
}

func heapPop(h []bpePair) (bpePair, []bpePair) {
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && pairLess(&h[r], &h[l]) {
			c = r
		}
		if !pairLess(&h[c], &h[i]) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	return top, h
}

func (p *Processor) encodeBPE(norm []byte, s *bpeScratch, out []token) []token {
	syms := s.syms[:0]
	// The normalized buffer is not modified during the call, so a string view
	// of it makes substring lookups free of copies.
	text := unsafe.String(&norm[0], len(norm))
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
	h := s.heap[:0]
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
		h = heapPush(h, bpePair{left: l, right: r, score: p.scores[id], size: b.end - a.start, id: id})
		if p.hasUnused && p.types[id] == Unused {
			s.rev[text[a.start:b.end]] = [2]string{text[a.start:a.end], text[b.start:b.end]}
		}
	}
	for i := 1; i < len(syms); i++ {
		add(int32(i-1), int32(i))
	}
	for len(h) > 0 {
		var top bpePair
		top, h = heapPop(h)
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
			out = append(out, token{sy.start, sy.end, sy.id})
			continue
		}
		out = p.resegment(text, sy.start, sy.end, s.rev, out)
	}
	s.syms, s.heap = syms, h
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
