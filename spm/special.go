package spm

import (
	"fmt"
	"slices"
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
// (<s>, </s>) where Decode drops them, each run of text between them
// decoded on its own: the inverse of EncodeSpecial, and what Hugging
// Face's decode(skip_special_tokens=False) gives. An id out of range is an
// error naming its position.
func (p *Processor) DecodeSpecial(ids []int) (string, error) {
	var b strings.Builder
	var run []int
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		s, err := p.Decode(run)
		b.WriteString(s)
		run = run[:0]
		return err
	}
	for i, id := range ids {
		if id < 0 || id >= p.Size() {
			return "", fmt.Errorf("invalid id %d at position %d: the model has ids 0..%d", id, i, p.Size()-1)
		}
		if p.Type(id) == Control {
			if err := flush(); err != nil {
				return "", err
			}
			b.WriteString(p.IDToPiece(id))
			continue
		}
		run = append(run, id)
	}
	err := flush()
	return b.String(), err
}

// specials is the set of pieces EncodeSpecial cuts at, longest first.
type specials struct {
	starts [256]bool // some piece starts with this byte
	pieces []special
}

type special struct {
	piece string
	id    int
}

func (s *specials) match(text string) (int, int) {
	for _, sp := range s.pieces {
		if strings.HasPrefix(text, sp.piece) {
			return sp.id, len(sp.piece)
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
			if piece := p.IDToPiece(id); piece != "" {
				s.pieces = append(s.pieces, special{piece, id})
				s.starts[piece[0]] = true
			}
		}
		// The longest first, so that a piece holding another wins.
		slices.SortStableFunc(s.pieces, func(a, b special) int { return len(b.piece) - len(a.piece) })
		p.specials = s
	})
	return p.specials
}
