package spm

import (
	"fmt"
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
