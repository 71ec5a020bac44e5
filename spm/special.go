package spm

import (
	"sort"
	"strings"
)

// EncodeSpecial encodes text in which control and user-defined pieces
// (<s>, </s>, ...) may appear written out, as llama.cpp and a slow
// LlamaTokenizer do with special tokens parsed: the text is cut at each
// such piece (the longest where several match), the piece becomes its id,
// and every stretch of text between them is encoded on its own, with the
// dummy prefix. A rendered chat template is tokenized this way.
func (p *Processor) EncodeSpecial(text string) []int {
	specials := p.specialPieces()
	var ids []int
	start := 0
	for i := 0; i < len(text); {
		id, n := 0, 0
		if specials.starts[text[i]] {
			id, n = specials.match(text[i:])
		}
		if n == 0 {
			i++
			continue
		}
		if start < i {
			ids = append(ids, p.Encode(text[start:i])...)
		}
		ids = append(ids, id)
		i += n
		start = i
	}
	if start < len(text) {
		ids = append(ids, p.Encode(text[start:])...)
	}
	return ids
}

// DecodeSpecial decodes ids, writing control pieces out as their text
// (<s>, </s>) where Decode drops them: the inverse of EncodeSpecial.
func (p *Processor) DecodeSpecial(ids []int) string {
	var b strings.Builder
	var run []int
	flush := func() {
		if len(run) > 0 {
			s, _ := p.Decode(run)
			b.WriteString(s)
			run = run[:0]
		}
	}
	for _, id := range ids {
		if id >= 0 && id < p.Size() && p.Type(id) == Control {
			flush()
			b.WriteString(p.IDToPiece(id))
			continue
		}
		run = append(run, id)
	}
	flush()
	return b.String()
}

// specials is the set of pieces EncodeSpecial cuts at, longest first.
type specials struct {
	starts [256]bool // some piece starts with this byte
	pieces []string
	ids    []int
}

func (s *specials) match(text string) (int, int) {
	for i, piece := range s.pieces {
		if strings.HasPrefix(text, piece) {
			return s.ids[i], len(piece)
		}
	}
	return 0, 0
}

func (p *Processor) specialPieces() *specials {
	p.specialsOnce.Do(func() {
		s := &specials{}
		for id := range p.Size() {
			if t := p.Type(id); t != Control && t != UserDefined {
				continue
			}
			piece := p.IDToPiece(id)
			if piece == "" {
				continue
			}
			s.pieces, s.ids = append(s.pieces, piece), append(s.ids, id)
			s.starts[piece[0]] = true
		}
		order := make([]int, len(s.pieces))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return len(s.pieces[order[a]]) > len(s.pieces[order[b]]) })
		pieces, ids := make([]string, len(order)), make([]int, len(order))
		for i, o := range order {
			pieces[i], ids[i] = s.pieces[o], s.ids[o]
		}
		s.pieces, s.ids = pieces, ids
		p.specials = s
	})
	return p.specials
}
