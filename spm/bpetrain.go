package spm

import (
	"fmt"
	"strings"
)

// unkChar stands for characters outside the alphabet during training, and
// boundary ('\t') separates text that pieces may not span.
const (
	unkChar  = '\u2585'
	boundary = '\t'
)

// Train trains a BPE model as spm_train does: normalize, split into words
// at spaces, keep the characters that cover character_coverage of the text,
// then repeatedly merge the most frequent adjacent pair of symbols (ties go
// to the shorter, then the lexicographically smaller piece). Merges get
// scores 0, -1, -2, ... in order; the alphabet follows, most frequent first.
func Train(c TrainConfig) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	meta, err := c.metaPieces()
	if err != nil {
		return nil, err
	}
	ts, ns, err := c.specs()
	if err != nil {
		return nil, err
	}
	norm, err := newNormalizer(ns, c.TreatWhitespaceAsSuffix, nil)
	if err != nil {
		return nil, err
	}
	var metaStrs []string
	for _, p := range meta {
		metaStrs = append(metaStrs, p.Piece)
	}
	t := &bpeTrainer{c: &c, norm: norm, meta: newPrefixMatcher(metaStrs)}
	words, err := t.countWords()
	if err != nil {
		return nil, err
	}
	chars, err := t.alphabet(words, len(meta))
	if err != nil {
		return nil, err
	}
	if len(chars) == 0 || len(chars) == 1 && string(chars[0].r) == SpaceSymbol {
		return nil, fmt.Errorf("--input %s holds no characters to learn pieces from: only whitespace", strings.Join(c.Input, ","))
	}
	t.initSymbols(words, chars)
	target := c.VocabSize - len(meta) - len(chars)
	t.merge(target)

	m := &Model{Trainer: ts, Normalizer: ns}
	final := make([]Piece, 0, target+len(chars))
	for i, id := range t.merged {
		final = append(final, NewPiece(t.symStr[id], -float32(i), Normal))
	}
	for _, ch := range chars {
		final = append(final, NewPiece(string(ch.r), -float32(len(final)), Normal))
	}
	fid := 0
	for id := 0; id < c.VocabSize; id++ {
		if p, ok := meta[id]; ok {
			m.Pieces = append(m.Pieces, p)
		} else if fid < len(final) {
			m.Pieces = append(m.Pieces, final[fid])
			fid++
		}
	}
	if fid < len(final) {
		return nil, fmt.Errorf("internal error: %d pieces did not fit", len(final)-fid)
	}
	if c.HardVocabLimit && len(m.Pieces) != c.VocabSize {
		return nil, fmt.Errorf("--vocab_size=%d is too high for this corpus: only %d pieces can be made; set --vocab_size to at most %d (or --hard_vocab_limit=false)", c.VocabSize, len(m.Pieces), len(m.Pieces))
	}
	if !c.HardVocabLimit {
		m.Trainer.SetInt(TrVocabSize, int64(len(m.Pieces)))
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("internal error: trained model is invalid: %w", err)
	}
	return m, nil
}

// WriteVocab formats PREFIX.vocab: piece<TAB>score per line, as spm_train writes it.
func WriteVocab(m *Model, withScores bool) []byte {
	var b []byte
	for _, p := range m.Pieces {
		b = append(b, p.Piece...)
		if withScores {
			b = append(b, '\t')
			b = appendCFloat(b, p.Score)
		}
		b = append(b, '\n')
	}
	return b
}

// appendCFloat formats f as C++'s default ostream does (%g, 6 digits).
func appendCFloat(b []byte, f float32) []byte {
	s := fmt.Sprintf("%g", float64(f))
	if strings.ContainsAny(s, "e") || len(strings.TrimLeft(s, "-")) > 7 {
		s = fmt.Sprintf("%.6g", float64(f))
		if i := strings.IndexByte(s, 'e'); i >= 0 && len(s)-i == 3 {
			s = s[:i+2] + "0" + s[i+2:] // C writes at least two exponent digits
		}
	}
	return append(b, s...)
}

type bpeTrainer struct {
	c    *TrainConfig
	norm *Normalizer
	meta *prefixMatcher

	// Symbols: the alphabet first, then merged pieces.
	symStr  []string
	symRune [][]rune
	byStr   map[string]int32
	merged  []int32

	// Words as symbol sequences in one arena.
	arena        []int32
	wStart, wLen []int32
	wFreq        []int64
	mark         []uint32
	gen          uint32

	pairs   [][]pairStat // in blocks, so that millions of pairs are never copied
	nPairs  int32
	pairIdx map[uint64]int32
	heap    heap[pairEntry]
	touched []int32
}

type pairStat struct {
	a, b    int32
	count   int64
	words   []int32
	invalid bool
	touched uint32
}

type pairEntry struct {
	count int64
	pair  int32
}

// validPiece is spm_train's rule for what may become a piece.
func (c *TrainConfig) validPiece(rs []rune) bool {
	if len(rs) == 0 || len(rs) > c.MaxSentencepieceLength {
		return false
	}
	const ws = '\u2581'
	allWS := true
	for _, r := range rs {
		if r != ws {
			allWS = false
			break
		}
	}
	prev := scriptAny
	last := len(rs) - 1
	for pos, r := range rs {
		if r == unkChar || r == 0 || r == boundary || r == ' ' || !validCodepoint(r) {
			return false
		}
		if r == ws {
			if !c.AllowWhitespaceOnlyPieces || !allWS {
				if c.TreatWhitespaceAsSuffix {
					if (c.SplitByWhitespace && pos < last) || (!c.SplitByWhitespace && pos < last && pos == 0) {
						return false
					}
				} else if (c.SplitByWhitespace && pos > 0) || (!c.SplitByWhitespace && pos > 0 && pos == last) {
					return false
				}
			}
			continue
		}
		s := scriptOf(r)
		if s == scriptInherit {
			s = prev
		}
		isNum := r >= '0' && r <= '9'
		if !c.SplitByNumber && isNum {
			s = scriptAny
		}
		if c.SplitDigits && isNum && len(rs) > 1 {
			return false
		}
		if c.SplitByUnicodeScript && s != scriptAny && prev != scriptAny && prev != s {
			return false
		}
		prev = s
	}
	return true
}
