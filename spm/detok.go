package spm

import (
	"strings"
	"unicode/utf8"
)

// Detokenizer turns ids into text one at a time, as they are generated:
// the pieces of text it returns, joined, are exactly Decode of all the ids
// it was given, and each is returned as soon as it is final (a character
// split over byte pieces waits for its last byte). Nothing is decoded twice.
type Detokenizer struct {
	p                    *Processor
	bytes                []byte // a run of byte pieces not yet written
	written, bosSeen     bool
	pastStart            bool // the leading-space rule no longer applies
	stripAll, stripFirst bool
}

// NewDetokenizer starts decoding a sequence.
func (p *Processor) NewDetokenizer() *Detokenizer {
	return &Detokenizer{p: p, stripAll: p.norm.removeExtraSpaces, stripFirst: p.norm.addDummyPrefix || p.norm.removeExtraSpaces}
}

// Add decodes id and returns the text that became final with it.
func (d *Detokenizer) Add(id int) string {
	if id < 0 || id >= len(d.p.types) {
		return ""
	}
	var sb strings.Builder
	t := d.p.types[id]
	piece := d.p.model.Pieces[id].Piece
	if t == Byte {
		b, _ := pieceToByte(piece)
		d.bytes = append(d.bytes, b)
		d.writeComplete(&sb)
		return d.out(&sb)
	}
	d.flush(&sb)
	if d.bosSeen || d.written || sb.Len() > 0 {
		d.pastStart = true
	}
	bosWS := !d.pastStart
	d.bosSeen = false
	switch t {
	case Control:
		return d.out(&sb)
	case Unknown:
		sb.WriteString(d.p.unkSurf)
		return d.out(&sb)
	}
	if bosWS && d.stripFirst {
		if rest, ok := strings.CutPrefix(piece, SpaceSymbol); ok {
			piece = rest
			d.bosSeen = !d.stripAll
		}
	}
	sb.WriteString(strings.ReplaceAll(piece, SpaceSymbol, " "))
	return d.out(&sb)
}

// Flush returns what is held back: the bytes of an unfinished character,
// each written as U+FFFD as Decode writes them.
func (d *Detokenizer) Flush() string {
	var sb strings.Builder
	d.flush(&sb)
	return d.out(&sb)
}

func (d *Detokenizer) out(sb *strings.Builder) string {
	if sb.Len() > 0 {
		d.written = true
	}
	return sb.String()
}

func (d *Detokenizer) flush(sb *strings.Builder) {
	WriteBytesText(sb, d.bytes)
	d.bytes = d.bytes[:0]
}

// writeComplete writes the leading bytes whose meaning can no longer
// change: whole characters, and bytes that cannot start one.
func (d *Detokenizer) writeComplete(sb *strings.Builder) {
	b := d.bytes
	for len(b) > 0 && utf8.FullRune(b) {
		r, l := utf8.DecodeRune(b)
		if r == utf8.RuneError && l == 1 {
			sb.WriteString("\uFFFD")
		} else {
			sb.Write(b[:l])
		}
		b = b[l:]
	}
	d.bytes = append(d.bytes[:0], b...)
}
