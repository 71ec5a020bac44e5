// Package spm reads, writes, trains and runs SentencePiece models
// (tokenizer.model files): the ModelProto format, the normalizer, the BPE and
// Unigram encoders, the decoder, a BPE trainer and vocabulary merging.
package spm

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"zhllama/internal/atomicfile"
)

// PieceType is ModelProto.SentencePiece.Type.
type PieceType int32

// Piece types, numbered as in sentencepiece_model.proto.
const (
	Normal      PieceType = 1
	Unknown     PieceType = 2
	Control     PieceType = 3
	UserDefined PieceType = 4
	Unused      PieceType = 5
	Byte        PieceType = 6
)

func (t PieceType) String() string {
	switch t {
	case Normal:
		return "NORMAL"
	case Unknown:
		return "UNKNOWN"
	case Control:
		return "CONTROL"
	case UserDefined:
		return "USER_DEFINED"
	case Unused:
		return "UNUSED"
	case Byte:
		return "BYTE"
	}
	return "TYPE_" + strconv.Itoa(int(t))
}

// Model types of TrainerSpec.model_type.
const (
	ModelUnigram = 1
	ModelBPE     = 2
	ModelWord    = 3
	ModelChar    = 4
)

// ModelTypeName names a TrainerSpec.model_type value as spm_train spells it.
func ModelTypeName(t int) string {
	switch t {
	case ModelUnigram:
		return "unigram"
	case ModelBPE:
		return "bpe"
	case ModelWord:
		return "word"
	case ModelChar:
		return "char"
	}
	return "type_" + strconv.Itoa(t)
}

// Piece is one vocabulary entry.
type Piece struct {
	Piece string
	Score float32
	Type  PieceType

	// Presence bits and unknown fields, so that a piece is written back as it was read.
	hasScore, hasType bool
	extra             fields
}

// NewPiece returns a piece whose score and type are written explicitly.
func NewPiece(piece string, score float32, typ PieceType) Piece {
	return Piece{Piece: piece, Score: score, Type: typ, hasScore: true, hasType: typ != Normal}
}

// Spec is a TrainerSpec or NormalizerSpec message. It keeps every field in
// wire order, known or not; the accessors read and write single fields.
type Spec struct {
	f fields
}

// Field numbers of NormalizerSpec.
const (
	NormName                   = 1
	NormPrecompiledCharsmap    = 2
	NormAddDummyPrefix         = 3
	NormRemoveExtraWhitespaces = 4
	NormEscapeWhitespaces      = 5
	NormRuleTSV                = 6
)

// Field numbers of TrainerSpec that the package reads or writes.
const (
	TrInput                     = 1
	TrModelPrefix               = 2
	TrModelType                 = 3
	TrVocabSize                 = 4
	TrSelfTestSampleSize        = 6
	TrInputFormat               = 7
	TrCharacterCoverage         = 10
	TrInputSentenceSize         = 11
	TrSeedSentencepieceSize     = 14
	TrShrinkingFactor           = 15
	TrNumThreads                = 16
	TrNumSubIterations          = 17
	TrMaxSentenceLength         = 18
	TrShuffleInputSentence      = 19
	TrMaxSentencepieceLength    = 20
	TrSplitByUnicodeScript      = 21
	TrSplitByWhitespace         = 22
	TrSplitByNumber             = 23
	TrTreatWhitespaceAsSuffix   = 24
	TrSplitDigits               = 25
	TrAllowWhitespaceOnlyPieces = 26
	TrControlSymbols            = 30
	TrUserDefinedSymbols        = 31
	TrVocabularyOutputScore     = 32
	TrHardVocabLimit            = 33
	TrUseAllVocab               = 34
	TrByteFallback              = 35
	TrRequiredChars             = 36
	TrUnkID                     = 40
	TrBosID                     = 41
	TrEosID                     = 42
	TrPadID                     = 43
	TrUnkSurface                = 44
	TrUnkPiece                  = 45
	TrBosPiece                  = 46
	TrEosPiece                  = 47
	TrPadPiece                  = 48
	TrTrainExtremelyLargeCorpus = 49
)

// Has reports whether field num is present.
func (s *Spec) Has(num int) bool { _, ok := s.f.last(num); return ok }

// String returns string/bytes field num, or def when absent.
func (s *Spec) String(num int, def string) string {
	if f, ok := s.f.last(num); ok && f.wire == wireBytes {
		return string(f.data)
	}
	return def
}

// Strings returns every value of repeated string field num.
func (s *Spec) Strings(num int) []string {
	var out []string
	for _, f := range s.f {
		if f.num == num && f.wire == wireBytes {
			out = append(out, string(f.data))
		}
	}
	return out
}

// Int returns varint field num as a signed value, or def when absent.
func (s *Spec) Int(num int, def int64) int64 {
	if f, ok := s.f.last(num); ok && f.wire == wireVarint {
		return int64(f.val)
	}
	return def
}

// Bool returns bool field num, or def when absent.
func (s *Spec) Bool(num int, def bool) bool {
	if f, ok := s.f.last(num); ok && f.wire == wireVarint {
		return f.val != 0
	}
	return def
}

// Float returns float field num, or def when absent.
func (s *Spec) Float(num int, def float32) float32 {
	if f, ok := s.f.last(num); ok && f.wire == wireFixed32 {
		return math.Float32frombits(uint32(f.val))
	}
	return def
}

// SetString sets string/bytes field num.
func (s *Spec) SetString(num int, v string) {
	s.f.set(field{num: num, wire: wireBytes, data: []byte(v)})
}

// SetStrings replaces repeated string field num by vs, placed where the
// field was or in field-number order.
func (s *Spec) SetStrings(num int, vs []string) {
	at := len(s.f)
	for i, f := range s.f {
		if f.num == num || f.num > num {
			at = i
			break
		}
	}
	s.f.remove(num)
	at = min(at, len(s.f))
	add := make(fields, len(vs))
	for i, v := range vs {
		add[i] = field{num: num, wire: wireBytes, data: []byte(v)}
	}
	s.f = append(s.f[:at:at], append(add, s.f[at:]...)...)
}

// SetInt sets varint field num; negative values use ten bytes as int32 does.
func (s *Spec) SetInt(num int, v int64) {
	s.f.set(field{num: num, wire: wireVarint, val: uint64(v)})
}

// SetBool sets bool field num.
func (s *Spec) SetBool(num int, v bool) {
	var x uint64
	if v {
		x = 1
	}
	s.f.set(field{num: num, wire: wireVarint, val: x})
}

// SetFloat sets float field num.
func (s *Spec) SetFloat(num int, v float32) { s.f.set(float32Field(num, v)) }

// Clone returns an independent copy.
func (s *Spec) Clone() *Spec {
	if s == nil {
		return nil
	}
	c := &Spec{f: make(fields, len(s.f))}
	for i, f := range s.f {
		f.data = append([]byte(nil), f.data...)
		c.f[i] = f
	}
	return c
}

// Model is a parsed ModelProto.
type Model struct {
	Pieces       []Piece
	Trainer      *Spec // nil when absent
	Normalizer   *Spec
	Denormalizer *Spec

	top fields // top-level fields other than pieces, in wire order (specs re-encoded on write)
}

// Top-level field numbers of ModelProto.
const (
	mpPieces       = 1
	mpTrainer      = 2
	mpNormalizer   = 3
	mpSelfTest     = 4
	mpDenormalizer = 5
)

// Parse decodes a ModelProto. It checks only the wire format; Validate checks
// that the model can be used for encoding.
func Parse(b []byte) (*Model, error) {
	fs, err := parseFields(b)
	if err != nil {
		return nil, err
	}
	m := &Model{}
	for _, f := range fs {
		switch f.num {
		case mpPieces:
			if f.wire != wireBytes {
				return nil, fmt.Errorf("pieces field has wire type %d, want 2", f.wire)
			}
			p, err := parsePiece(f.data)
			if err != nil {
				return nil, fmt.Errorf("piece %d: %w", len(m.Pieces), err)
			}
			m.Pieces = append(m.Pieces, p)
			continue
		case mpTrainer, mpNormalizer, mpDenormalizer:
			if f.wire != wireBytes {
				return nil, fmt.Errorf("field %d has wire type %d, want 2", f.num, f.wire)
			}
			sf, err := parseFields(f.data)
			if err != nil {
				return nil, fmt.Errorf("field %d: %w", f.num, err)
			}
			s := &Spec{f: sf}
			switch f.num {
			case mpTrainer:
				m.Trainer = s
			case mpNormalizer:
				m.Normalizer = s
			default:
				m.Denormalizer = s
			}
		}
		m.top = append(m.top, f)
	}
	return m, nil
}

func parsePiece(b []byte) (Piece, error) {
	fs, err := parseFields(b)
	if err != nil {
		return Piece{}, err
	}
	p := Piece{Type: Normal}
	hasPiece := false
	for _, f := range fs {
		switch {
		case f.num == 1 && f.wire == wireBytes:
			p.Piece = string(f.data)
			hasPiece = true
		case f.num == 2 && f.wire == wireFixed32:
			p.Score = math.Float32frombits(uint32(f.val))
			p.hasScore = true
		case f.num == 3 && f.wire == wireVarint:
			p.Type = PieceType(int32(f.val))
			p.hasType = true
		default:
			p.extra = append(p.extra, f)
		}
	}
	if !hasPiece {
		return p, fmt.Errorf("piece has no text")
	}
	return p, nil
}

func (p *Piece) appendTo(b []byte) []byte {
	b = field{num: 1, wire: wireBytes, data: []byte(p.Piece)}.appendTo(b)
	if p.hasScore || p.Score != 0 || math.Signbit(float64(p.Score)) {
		b = float32Field(2, p.Score).appendTo(b)
	}
	if p.hasType || p.Type != Normal {
		b = field{num: 3, wire: wireVarint, val: uint64(int64(p.Type))}.appendTo(b)
	}
	return p.extra.appendTo(b)
}

// Marshal encodes the model. A model read by Parse and not changed is written
// back byte for byte.
func (m *Model) Marshal() []byte {
	top := append(fields(nil), m.top...)
	for _, sp := range []struct {
		num  int
		spec *Spec
	}{{mpTrainer, m.Trainer}, {mpNormalizer, m.Normalizer}, {mpDenormalizer, m.Denormalizer}} {
		if sp.spec == nil {
			top.remove(sp.num)
		} else {
			top.set(field{num: sp.num, wire: wireBytes, data: sp.spec.f.appendTo(nil)})
		}
	}
	var b []byte
	var tmp []byte
	for i := range m.Pieces {
		tmp = m.Pieces[i].appendTo(tmp[:0])
		b = appendVarint(b, mpPieces<<3|wireBytes)
		b = appendVarint(b, uint64(len(tmp)))
		b = append(b, tmp...)
	}
	return top.appendTo(b)
}

// Load reads and validates a model file.
func Load(path string) (*Model, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "tokenizer.model") // a model directory, as train takes it
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := Parse(b)
	if err != nil {
		if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			return nil, fmt.Errorf("%s is a JSON file (a Hugging Face tokenizer.json?), not a SentencePiece model: give the tokenizer.model beside it", path)
		}
		return nil, fmt.Errorf("%s: not a valid SentencePiece model (truncated or corrupt?): %w", path, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Save writes the model to path through a temporary file, so that a failed
// write never leaves a partial model behind.
func (m *Model) Save(path string) error {
	return atomicfile.WriteFile(path, m.Marshal())
}

// Validate checks what the encoders rely on: pieces present, non-empty and
// unique, known types, exactly one unknown piece, well-formed byte pieces.
func (m *Model) Validate() error {
	if len(m.Pieces) == 0 {
		return fmt.Errorf("not a SentencePiece model: it has no pieces")
	}
	seen := make(map[string]int, len(m.Pieces))
	unk := -1
	for i, p := range m.Pieces {
		if p.Piece == "" {
			return fmt.Errorf("piece %d is empty", i)
		}
		if j, ok := seen[p.Piece]; ok {
			return fmt.Errorf("piece %q is defined twice (ids %d and %d)", p.Piece, j, i)
		}
		seen[p.Piece] = i
		switch p.Type {
		case Normal, Control, UserDefined, Unused:
		case Unknown:
			if unk >= 0 {
				return fmt.Errorf("two unknown pieces: ids %d and %d", unk, i)
			}
			unk = i
		case Byte:
			if _, ok := pieceToByte(p.Piece); !ok {
				return fmt.Errorf("piece %d %q has type BYTE but is not of the form <0xXX>", i, p.Piece)
			}
		default:
			return fmt.Errorf("piece %d %q has unknown type %d", i, p.Piece, p.Type)
		}
	}
	if unk < 0 {
		return fmt.Errorf("the model has no piece of type UNKNOWN (<unk>)")
	}
	if t := m.ModelType(); t != ModelBPE && t != ModelUnigram {
		return fmt.Errorf("model type %s is not supported (only bpe and unigram)", ModelTypeName(t))
	}
	return nil
}

// ModelType returns TrainerSpec.model_type (UNIGRAM when unset, as in the proto).
func (m *Model) ModelType() int {
	if m.Trainer == nil {
		return ModelUnigram
	}
	return int(m.Trainer.Int(TrModelType, ModelUnigram))
}

// ByteFallback reports TrainerSpec.byte_fallback.
func (m *Model) ByteFallback() bool {
	return m.Trainer != nil && m.Trainer.Bool(TrByteFallback, false)
}

// Clone returns a deep copy.
func (m *Model) Clone() *Model {
	c := &Model{
		Pieces:       append([]Piece(nil), m.Pieces...),
		Trainer:      m.Trainer.Clone(),
		Normalizer:   m.Normalizer.Clone(),
		Denormalizer: m.Denormalizer.Clone(),
		top:          append(fields(nil), m.top...),
	}
	return c
}

// pieceToByte parses "<0xXX>".
func pieceToByte(s string) (byte, bool) {
	if len(s) != 6 || !strings.HasPrefix(s, "<0x") || s[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(s[3:5], 16, 8)
	if err != nil || ByteToPiece(byte(v)) != s {
		return 0, false // sentencepiece knows only the upper-case spelling
	}
	return byte(v), true
}

// ByteToPiece returns the piece of a byte-fallback token, "<0xXX>".
func ByteToPiece(b byte) string {
	const hex = "0123456789ABCDEF"
	return string([]byte{'<', '0', 'x', hex[b>>4], hex[b&15], '>'})
}
