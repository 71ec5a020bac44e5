package spm

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"
)

// CorpusStats summarizes how a model tokenizes a corpus.
type CorpusStats struct {
	Lines, Chars, Bytes int64
	Tokens              int64
	ByteTokens          int64 // byte-fallback pieces
	UnkTokens           int64
}

// CharsPerToken is characters per token (higher is better compression).
func (s CorpusStats) CharsPerToken() float64 { return float64(s.Chars) / float64(max(s.Tokens, 1)) }

// TokensPerChar is tokens per character.
func (s CorpusStats) TokensPerChar() float64 { return float64(s.Tokens) / float64(max(s.Chars, 1)) }

// Stats encodes every line of r and counts tokens, characters, byte-fallback
// and unknown tokens.
func (p *Processor) Stats(r io.Reader, threads int) (CorpusStats, error) {
	threads = threadCount(threads)
	parts := make([]CorpusStats, threads)
	scratch := make([]Scratch, threads)
	ids := make([][]int, threads)
	err := batchLines(r, threads, func(w int, lines []string) []byte {
		st := &parts[w]
		for _, l := range lines {
			st.Lines++
			st.Bytes += int64(len(l))
			st.Chars += int64(utf8.RuneCountInString(l))
			ids[w] = p.AppendIDs(ids[w][:0], l, &scratch[w])
			st.Tokens += int64(len(ids[w]))
			for _, id := range ids[w] {
				switch p.types[id] {
				case Byte:
					st.ByteTokens++
				case Unknown:
					st.UnkTokens++
				}
			}
		}
		return nil
	}, func([]byte) error { return nil })
	var total CorpusStats
	for _, s := range parts {
		total.Lines += s.Lines
		total.Chars += s.Chars
		total.Bytes += s.Bytes
		total.Tokens += s.Tokens
		total.ByteTokens += s.ByteTokens
		total.UnkTokens += s.UnkTokens
	}
	return total, err
}

// Describe returns a human-readable summary of a model: type, size,
// normalizer, trainer spec, special ids and counts per piece type.
func Describe(m *Model) string {
	var b strings.Builder
	if m.Trainer == nil && m.Normalizer == nil {
		// sentencepiece writes both after the pieces: a file that ends
		// between pieces reads as a smaller, valid-looking model.
		fmt.Fprintf(&b, "warning: no trainer_spec and no normalizer_spec; sentencepiece writes both after the pieces, so this file may be cut short (the model type below is a guess)\n")
	}
	fmt.Fprintf(&b, "model type:  %s\n", ModelTypeName(m.ModelType()))
	fmt.Fprintf(&b, "pieces:      %d\n", len(m.Pieces))
	counts := map[PieceType]int{}
	for _, p := range m.Pieces {
		counts[p.Type]++
	}
	var types []PieceType
	for t := range counts {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
	for _, t := range types {
		fmt.Fprintf(&b, "  %-13s %d\n", t.String()+":", counts[t])
	}
	b.WriteString("special pieces:\n")
	for i, p := range m.Pieces {
		if p.Type == Unknown || p.Type == Control || p.Type == UserDefined {
			fmt.Fprintf(&b, "  %6d  %-14s %s\n", i, p.Piece, p.Type)
		}
	}
	if n := m.Normalizer; n != nil {
		b.WriteString("normalizer:\n")
		fmt.Fprintf(&b, "  name:                     %s\n", n.String(NormName, ""))
		fmt.Fprintf(&b, "  precompiled_charsmap:     %d bytes\n", len(n.String(NormPrecompiledCharsmap, "")))
		fmt.Fprintf(&b, "  add_dummy_prefix:         %v\n", n.Bool(NormAddDummyPrefix, true))
		fmt.Fprintf(&b, "  remove_extra_whitespaces: %v\n", n.Bool(NormRemoveExtraWhitespaces, true))
		fmt.Fprintf(&b, "  escape_whitespaces:       %v\n", n.Bool(NormEscapeWhitespaces, true))
	}
	if t := m.Trainer; t != nil {
		b.WriteString("trainer spec:\n")
		for _, f := range trainerFieldNames {
			if !t.Has(f.num) {
				continue
			}
			var v string
			switch f.kind {
			case 's':
				v = fmt.Sprintf("%q", strings.Join(t.Strings(f.num), ","))
			case 'i':
				v = fmt.Sprint(int32(t.Int(f.num, 0)))
			case 'b':
				v = fmt.Sprint(t.Bool(f.num, false))
			case 'f':
				v = fmt.Sprint(t.Float(f.num, 0))
			case 't':
				v = ModelTypeName(int(t.Int(f.num, 0)))
			}
			fmt.Fprintf(&b, "  %-29s %s\n", f.name+":", v)
		}
	}
	return b.String()
}

var trainerFieldNames = []struct {
	num  int
	name string
	kind byte
}{
	{TrInput, "input", 's'}, {TrModelPrefix, "model_prefix", 's'}, {TrModelType, "model_type", 't'},
	{TrVocabSize, "vocab_size", 'i'}, {TrCharacterCoverage, "character_coverage", 'f'},
	{TrInputSentenceSize, "input_sentence_size", 'i'}, {TrShuffleInputSentence, "shuffle_input_sentence", 'b'},
	{TrMaxSentenceLength, "max_sentence_length", 'i'}, {TrMaxSentencepieceLength, "max_sentencepiece_length", 'i'},
	{TrNumThreads, "num_threads", 'i'}, {TrSplitByUnicodeScript, "split_by_unicode_script", 'b'},
	{TrSplitByWhitespace, "split_by_whitespace", 'b'}, {TrSplitByNumber, "split_by_number", 'b'},
	{TrTreatWhitespaceAsSuffix, "treat_whitespace_as_suffix", 'b'}, {TrSplitDigits, "split_digits", 'b'},
	{TrAllowWhitespaceOnlyPieces, "allow_whitespace_only_pieces", 'b'}, {TrControlSymbols, "control_symbols", 's'},
	{TrUserDefinedSymbols, "user_defined_symbols", 's'}, {TrRequiredChars, "required_chars", 's'},
	{TrByteFallback, "byte_fallback", 'b'}, {TrHardVocabLimit, "hard_vocab_limit", 'b'},
	{TrUseAllVocab, "use_all_vocab", 'b'}, {TrUnkID, "unk_id", 'i'}, {TrBosID, "bos_id", 'i'},
	{TrEosID, "eos_id", 'i'}, {TrPadID, "pad_id", 'i'}, {TrUnkPiece, "unk_piece", 's'},
	{TrBosPiece, "bos_piece", 's'}, {TrEosPiece, "eos_piece", 's'}, {TrPadPiece, "pad_piece", 's'},
	{TrUnkSurface, "unk_surface", 's'},
}
