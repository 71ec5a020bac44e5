package spm

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"unicode/utf8"
)

// Processor encodes and decodes text with a model, as sentencepiece's
// SentencePieceProcessor does. It is safe for concurrent use.
type Processor struct {
	model *Model
	norm  *Normalizer
	typ   int

	pieces   map[string]int32 // NORMAL, USER_DEFINED and UNUSED pieces
	reserved map[string]int32 // CONTROL, UNKNOWN and BYTE pieces
	types    []PieceType
	scores   []float32
	unkID    int32
	byteIDs  [256]int32
	fallback bool
	user     *prefixMatcher
	unkSurf  string

	specialsOnce sync.Once
	specials     *specials // see EncodeSpecial

	// BPE: merged piece of two adjacent pieces, keyed by left<<32|right.
	merges    map[uint64]int32
	hasUnused bool
	wordSplit bool // see encodeBPE

	// Unigram: a byte trie over the pieces and the score bounds.
	trie               *byteTrie
	minScore, maxScore float32
}

// LoadProcessor loads a tokenizer.model (or a model directory's) ready to
// encode and decode; errors name the file.
func LoadProcessor(path string) (*Processor, error) {
	m, err := Load(path)
	if err != nil {
		return nil, err
	}
	p, err := NewProcessor(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// NewProcessor prepares a validated model for encoding and decoding.
func NewProcessor(m *Model) (*Processor, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	p := &Processor{
		model:    m,
		typ:      m.ModelType(),
		pieces:   make(map[string]int32, len(m.Pieces)),
		reserved: make(map[string]int32),
		types:    make([]PieceType, len(m.Pieces)),
		scores:   make([]float32, len(m.Pieces)),
		fallback: m.ByteFallback(),
		unkSurf:  " \u2047 ",
	}
	if m.Trainer != nil && m.Trainer.Has(TrUnkSurface) {
		p.unkSurf = m.Trainer.String(TrUnkSurface, "")
	}
	var user []string
	bytesFound := 0
	for i := range p.byteIDs {
		p.byteIDs[i] = -1
	}
	for i, pc := range m.Pieces {
		id := int32(i)
		p.types[i] = pc.Type
		p.scores[i] = pc.Score
		switch pc.Type {
		case Normal, UserDefined, Unused:
			p.pieces[pc.Piece] = id
		default:
			p.reserved[pc.Piece] = id
		}
		switch pc.Type {
		case UserDefined:
			user = append(user, pc.Piece)
		case Unused:
			p.hasUnused = true
		case Unknown:
			p.unkID = id
		case Byte:
			if !p.fallback {
				return nil, fmt.Errorf("byte piece %q (id %d) found although byte_fallback is false", pc.Piece, i)
			}
			b, _ := pieceToByte(pc.Piece)
			p.byteIDs[b] = id
			bytesFound++
		}
	}
	if p.fallback && bytesFound != 256 {
		return nil, fmt.Errorf("byte_fallback is true but the model has %d of the 256 byte pieces", bytesFound)
	}
	p.user = newPrefixMatcher(user)
	suffix := m.Trainer != nil && m.Trainer.Bool(TrTreatWhitespaceAsSuffix, false)
	var err error
	if p.norm, err = newNormalizer(m.Normalizer, suffix, p.user); err != nil {
		return nil, err
	}
	switch p.typ {
	case ModelBPE:
		p.buildMerges()
		p.wordSplit = p.canSplitWords()
	case ModelUnigram:
		// sentencepiece starts from FLT_MAX and FLT_MIN (the smallest normal
		// float, not the lowest value), so maxScore is never below it.
		p.minScore, p.maxScore = math.MaxFloat32, 1.17549435e-38
		for _, pc := range m.Pieces {
			if pc.Type == Normal {
				p.minScore = min(p.minScore, pc.Score)
				p.maxScore = max(p.maxScore, pc.Score)
			}
		}
		p.trie = newByteTrie(p.pieces)
	}
	return p, nil
}

// Model returns the processor's model.
func (p *Processor) Model() *Model { return p.model }

// Normalizer returns the processor's normalizer.
func (p *Processor) Normalizer() *Normalizer { return p.norm }

// Size is the number of pieces.
func (p *Processor) Size() int { return len(p.types) }

// PieceToID returns the id of piece, or the unknown id.
func (p *Processor) PieceToID(piece string) int {
	if id, ok := p.reserved[piece]; ok {
		return int(id)
	}
	if id, ok := p.pieces[piece]; ok {
		return int(id)
	}
	return int(p.unkID)
}

// IDToPiece returns the piece of id; it panics when id is out of range.
func (p *Processor) IDToPiece(id int) string { return p.model.Pieces[id].Piece }

// Type returns the type of piece id.
func (p *Processor) Type(id int) PieceType { return p.types[id] }

// UnkID is the id of the unknown piece.
func (p *Processor) UnkID() int { return int(p.unkID) }

// SpecialID returns the id of the bos, eos or pad piece that the trainer
// spec names ("bos", "eos" or "pad"), or -1 when the model has none.
func (p *Processor) SpecialID(which string) int {
	var num int
	var piece string
	switch which {
	case "bos":
		num, piece = TrBosPiece, "<s>"
	case "eos":
		num, piece = TrEosPiece, "</s>"
	case "pad":
		num, piece = TrPadPiece, "<pad>"
	default:
		return -1
	}
	if t := p.model.Trainer; t != nil && t.String(num, "") != "" {
		piece = t.String(num, "")
	}
	id := p.PieceToID(piece)
	if p.types[id] == Unknown {
		return -1
	}
	return id
}

// token is one encoder result: a span of the normalized text and its id.
type token struct {
	start, end int32
	id         int32
}

// ModelInput is what a LLaMA model is fed for text: [BOS] (when the model
// has one) and the text's ids, as int32.
func (p *Processor) ModelInput(text string) []int32 {
	var ids []int32
	if bos := p.SpecialID("bos"); bos >= 0 {
		ids = append(ids, int32(bos))
	}
	for _, id := range p.Encode(text) {
		ids = append(ids, int32(id))
	}
	return ids
}

// Encode returns the ids of text.
func (p *Processor) Encode(text string) []int {
	return p.AppendIDs(nil, text, &Scratch{})
}

// Scratch holds buffers that one goroutine reuses across calls.
type Scratch struct {
	norm []byte
	toks []token
	bpe  bpeScratch
	uni  []bestNode
}

// AppendIDs appends the ids of text to dst, reusing scratch's buffers.
func (p *Processor) AppendIDs(dst []int, text string, s *Scratch) []int {
	norm, toks := p.encode(text, s)
	prevUnk := false
	for _, t := range toks {
		isUnk := t.id == p.unkID
		switch {
		case isUnk && p.fallback:
			for _, b := range norm[t.start:t.end] {
				dst = append(dst, int(p.byteIDs[b]))
			}
		case isUnk && prevUnk:
			// sentencepiece merges a run of unknown pieces into one.
		default:
			dst = append(dst, int(t.id))
		}
		prevUnk = isUnk
	}
	return dst
}

// EncodePieces returns the pieces of text.
func (p *Processor) EncodePieces(text string) []string {
	norm, toks := p.encode(text, &Scratch{})
	var out []string
	prevUnk := false
	for _, t := range toks {
		isUnk := t.id == p.unkID
		w := string(norm[t.start:t.end])
		switch {
		case isUnk && p.fallback:
			for i := 0; i < len(w); i++ {
				out = append(out, ByteToPiece(w[i]))
			}
		case isUnk && prevUnk:
			out[len(out)-1] += w
		default:
			out = append(out, w)
		}
		prevUnk = isUnk
	}
	return out
}

func (p *Processor) encode(text string, s *Scratch) ([]byte, []token) {
	s.norm = p.norm.Append(s.norm[:0], text)
	s.toks = s.toks[:0]
	if len(s.norm) == 0 {
		return s.norm, s.toks
	}
	if p.typ == ModelBPE {
		s.toks = p.encodeBPE(s.norm, &s.bpe, s.toks)
	} else {
		s.toks = p.encodeUnigram(s.norm, s, s.toks)
	}
	return s.norm, s.toks
}

// Decode returns the text of ids.
func (p *Processor) Decode(ids []int) (string, error) {
	pieces := make([]string, len(ids))
	for i, id := range ids {
		if id < 0 || id >= len(p.types) {
			return "", fmt.Errorf("invalid id %d at position %d: the model has ids 0..%d", id, i, len(p.types)-1)
		}
		pieces[i] = p.model.Pieces[id].Piece
	}
	return p.decode(pieces, ids), nil
}

// DecodePieces returns the text of pieces; unknown pieces stand for themselves.
func (p *Processor) DecodePieces(pieces []string) string {
	ids := make([]int, len(pieces))
	for i, pc := range pieces {
		ids[i] = p.PieceToID(pc)
	}
	return p.decode(pieces, ids)
}

func (p *Processor) decode(pieces []string, ids []int) string {
	var sb strings.Builder
	stripAll := p.norm.removeExtraSpaces
	stripFirst := p.norm.addDummyPrefix || p.norm.removeExtraSpaces
	bosWS, bosSeen := true, false
	var bytes []byte
	flush := func() {
		WriteBytesText(&sb, bytes)
		bytes = bytes[:0]
	}
	for i, id := range ids {
		t := p.types[id]
		if t == Byte {
			b, _ := pieceToByte(p.model.Pieces[id].Piece)
			bytes = append(bytes, b)
			continue
		}
		flush()
		if bosSeen || sb.Len() > 0 {
			bosWS = false
		}
		piece := pieces[i]
		bosSeen = false
		switch t {
		case Control:
			continue
		case Unknown:
			if p.model.Pieces[id].Piece == piece {
				sb.WriteString(p.unkSurf)
			} else {
				sb.WriteString(piece)
			}
			continue
		}
		if bosWS && stripFirst {
			if rest, ok := strings.CutPrefix(piece, SpaceSymbol); ok {
				piece = rest
				bosSeen = !stripAll
			}
		}
		sb.WriteString(strings.ReplaceAll(piece, SpaceSymbol, " "))
	}
	flush()
	return sb.String()
}

// WriteBytesText writes the bytes of a run of byte pieces as text, as
// sentencepiece decodes them: valid UTF-8 as it is, each invalid byte as U+FFFD.
func WriteBytesText(sb *strings.Builder, b []byte) {
	for len(b) > 0 {
		r, l := utf8.DecodeRune(b)
		if r == utf8.RuneError && l == 1 {
			sb.WriteString("\uFFFD")
		} else {
			sb.Write(b[:l])
		}
		b = b[l:]
	}
}
