package spm

import (
	"fmt"
	"sort"
	"strings"
)

// DecodeWithControls is the text of ids with control pieces (<s>, </s>)
// written out, each run of text between them decoded on its own, as
// Hugging Face's decode(skip_special_tokens=False) writes it.
func (p *Processor) DecodeWithControls(ids []int32) (string, error) {
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
		if id < 0 || int(id) >= len(p.types) {
			return "", fmt.Errorf("invalid id %d at position %d: the model has ids 0..%d", id, i, len(p.types)-1)
		}
		if p.types[id] == Control {
			if err := flush(); err != nil {
				return "", err
			}
			b.WriteString(p.model.Pieces[id].Piece)
			continue
		}
		run = append(run, int(id))
	}
	err := flush()
	return b.String(), err
}

// EncodeWithControls is DecodeWithControls' inverse: the control pieces
// written in text become their ids, and each run of text between them is
// encoded on its own (with the dummy prefix), as Hugging Face's tokenizers
// read special tokens in text. No BOS is added.
func (p *Processor) EncodeWithControls(text string) []int32 {
	var controls []string
	for id, t := range p.types {
		if t == Control && p.model.Pieces[id].Piece != "" {
			controls = append(controls, p.model.Pieces[id].Piece)
		}
	}
	// The longest first, so that a control that contains another wins.
	sort.Slice(controls, func(i, j int) bool { return len(controls[i]) > len(controls[j]) })
	var ids []int32
	run := func(s string) {
		for _, id := range p.Encode(s) {
			ids = append(ids, int32(id))
		}
	}
	for text != "" {
		at, which := -1, ""
		for _, c := range controls {
			if j := strings.Index(text, c); j >= 0 && (at < 0 || j < at) {
				at, which = j, c
			}
		}
		if at < 0 {
			run(text)
			break
		}
		if at > 0 {
			run(text[:at])
		}
		ids = append(ids, int32(p.PieceToID(which)))
		text = text[at+len(which):]
	}
	return ids
}
