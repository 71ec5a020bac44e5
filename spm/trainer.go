package spm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"zhllama/internal/cli"
)

// TrainConfig holds spm_train's options, under the same names.
type TrainConfig struct {
	Input                                              []string
	InputFormat                                        string
	ModelPrefix                                        string
	ModelType                                          string
	VocabSize                                          int
	CharacterCoverage                                  float64
	ByteFallback                                       bool
	SplitDigits                                        bool
	MaxSentenceLength                                  int
	MaxSentencepieceLength                             int
	NumThreads                                         int
	InputSentenceSize                                  int
	ShuffleInputSentence                               bool
	UserDefinedSymbols                                 []string
	ControlSymbols                                     []string
	NormalizationRuleName                              string
	AddDummyPrefix                                     bool
	RemoveExtraWhitespaces                             bool
	SplitByWhitespace                                  bool
	SplitByUnicodeScript                               bool
	SplitByNumber                                      bool
	AllowWhitespaceOnlyPieces                          bool
	TreatWhitespaceAsSuffix                            bool
	RequiredChars                                      string
	HardVocabLimit                                     bool
	UseAllVocab                                        bool
	VocabularyOutputPieceScore                         bool
	UnkID, BosID, EosID, PadID                         int
	UnkPiece, BosPiece, EosPiece, PadPiece, UnkSurface string
	Seed                                               uint64

	// Log receives progress lines; nil means silence.
	Log io.Writer
}

// DefaultTrainConfig returns spm_train's defaults, except that all CPUs are used.
func DefaultTrainConfig() TrainConfig {
	return TrainConfig{
		ModelType: "unigram", VocabSize: 8000, CharacterCoverage: 0.9995,
		MaxSentenceLength: 4192, MaxSentencepieceLength: 16, NumThreads: runtime.GOMAXPROCS(0),
		ShuffleInputSentence: true, NormalizationRuleName: "nmt_nfkc",
		AddDummyPrefix: true, RemoveExtraWhitespaces: true, SplitByWhitespace: true,
		SplitByUnicodeScript: true, SplitByNumber: true, HardVocabLimit: true,
		VocabularyOutputPieceScore: true,
		UnkID:                      0, BosID: 1, EosID: 2, PadID: -1,
		UnkPiece: "<unk>", BosPiece: "<s>", EosPiece: "</s>", PadPiece: "<pad>", UnkSurface: " \u2047 ",
		Seed: 0x5eed,
	}
}

// trainFlag binds one spm_train flag to a field of TrainConfig.
type trainFlag struct {
	name string
	ptr  any // *string, *[]string, *int, *float64, *bool, *uint64
	help string
}

func (c *TrainConfig) flags() []trainFlag {
	return []trainFlag{
		{"input", &c.Input, "comma-separated input files, one sentence a line (.gz read as gzip)"},
		{"input_format", &c.InputFormat, "text (default) or tsv: sentence<TAB>frequency"},
		{"model_prefix", &c.ModelPrefix, "output prefix: writes PREFIX.model and PREFIX.vocab"},
		{"model_type", &c.ModelType, "model type; only bpe is trained here"},
		{"vocab_size", &c.VocabSize, "vocabulary size"},
		{"character_coverage", &c.CharacterCoverage, "fraction of characters covered by the vocabulary"},
		{"byte_fallback", &c.ByteFallback, "add the 256 <0xXX> byte pieces and fall back to them"},
		{"split_digits", &c.SplitDigits, "keep every digit a piece of its own"},
		{"max_sentence_length", &c.MaxSentenceLength, "skip lines longer than this many bytes"},
		{"max_sentencepiece_length", &c.MaxSentencepieceLength, "longest piece, in characters"},
		{"num_threads", &c.NumThreads, "worker threads"},
		{"input_sentence_size", &c.InputSentenceSize, "sample at most this many sentences (0: all)"},
		{"shuffle_input_sentence", &c.ShuffleInputSentence, "sample sentences at random rather than the first ones"},
		{"user_defined_symbols", &c.UserDefinedSymbols, "comma-separated symbols always kept whole"},
		{"control_symbols", &c.ControlSymbols, "comma-separated control symbols"},
		{"normalization_rule_name", &c.NormalizationRuleName, "identity, nfkc or nmt_nfkc"},
		{"add_dummy_prefix", &c.AddDummyPrefix, "prefix the text with a space"},
		{"remove_extra_whitespaces", &c.RemoveExtraWhitespaces, "drop leading, trailing and repeated spaces"},
		{"split_by_whitespace", &c.SplitByWhitespace, "pieces do not cross spaces"},
		{"split_by_unicode_script", &c.SplitByUnicodeScript, "pieces do not mix scripts"},
		{"split_by_number", &c.SplitByNumber, "pieces do not mix digits and other characters"},
		{"allow_whitespace_only_pieces", &c.AllowWhitespaceOnlyPieces, "allow pieces made of spaces only"},
		{"treat_whitespace_as_suffix", &c.TreatWhitespaceAsSuffix, "spaces end pieces instead of starting them"},
		{"required_chars", &c.RequiredChars, "characters always in the vocabulary"},
		{"hard_vocab_limit", &c.HardVocabLimit, "fail unless exactly vocab_size pieces are found"},
		{"use_all_vocab", &c.UseAllVocab, "keep every character regardless of character_coverage"},
		{"vocabulary_output_piece_score", &c.VocabularyOutputPieceScore, "write scores in PREFIX.vocab"},
		{"unk_id", &c.UnkID, "id of <unk>"},
		{"bos_id", &c.BosID, "id of <s> (-1: none)"},
		{"eos_id", &c.EosID, "id of </s> (-1: none)"},
		{"pad_id", &c.PadID, "id of <pad> (-1: none)"},
		{"unk_piece", &c.UnkPiece, "text of the unknown piece"},
		{"bos_piece", &c.BosPiece, "text of the bos piece"},
		{"eos_piece", &c.EosPiece, "text of the eos piece"},
		{"pad_piece", &c.PadPiece, "text of the pad piece"},
		{"unk_surface", &c.UnkSurface, "text that decoding prints for <unk>"},
		{"random_seed", &c.Seed, "seed for sentence sampling"},
	}
}

// ParseTrainArgs parses spm_train-style arguments (--flag=value or --flag
// value; a bare --flag sets a boolean) over spm_train's defaults.
func ParseTrainArgs(args []string) (TrainConfig, error) {
	c := DefaultTrainConfig()
	byName := map[string]trainFlag{}
	for _, f := range c.flags() {
		byName[f.name] = f
	}
	err := cli.Parse(args, func(name string) (bool, error) {
		f, ok := byName[name]
		if !ok {
			return false, fmt.Errorf("unknown flag --%s (see 'zhllama tokenizer train --help')", name)
		}
		_, isBool := f.ptr.(*bool)
		return isBool, nil
	}, func(name, val string) error {
		if err := setFlag(byName[name].ptr, val); err != nil {
			return fmt.Errorf("flag --%s=%s: %v", name, val, err)
		}
		return nil
	})
	return c, err
}

func setFlag(ptr any, val string) error {
	switch p := ptr.(type) {
	case *string:
		*p = val
	case *[]string:
		*p = nil
		if val != "" {
			*p = strings.Split(val, ",")
		}
	case *int:
		v, err := strconv.Atoi(val)
		if err != nil {
			return errors.New("not an integer")
		}
		*p = v
	case *uint64:
		v, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			return errors.New("not a non-negative integer")
		}
		*p = v
	case *float64:
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return errors.New("not a number")
		}
		*p = v
	case *bool:
		v, err := strconv.ParseBool(val)
		if err != nil {
			return errors.New("not true or false")
		}
		*p = v
	}
	return nil
}

// TrainFlagHelp describes every flag, one per line.
func TrainFlagHelp() string {
	c := DefaultTrainConfig()
	var b strings.Builder
	for _, f := range c.flags() {
		def := ""
		switch p := f.ptr.(type) {
		case *string:
			def = strconv.Quote(*p)
		case *[]string:
			def = strconv.Quote(strings.Join(*p, ","))
		case *int:
			def = strconv.Itoa(*p)
		case *uint64:
			def = strconv.FormatUint(*p, 10)
		case *float64:
			def = strconv.FormatFloat(*p, 'g', -1, 64)
		case *bool:
			def = strconv.FormatBool(*p)
		}
		fmt.Fprintf(&b, "  --%-30s %s (default %s)\n", f.name, f.help, def)
	}
	return b.String()
}

// Validate checks the options as spm_train does, with errors that say
// what to change, before any input is read.
func (c *TrainConfig) Validate() error {
	switch {
	case len(c.Input) == 0:
		return errors.New("--input is required: comma-separated text files, one sentence a line")
	case c.ModelPrefix == "":
		return errors.New("--model_prefix is required")
	case !isDir(filepath.Dir(c.ModelPrefix)):
		return fmt.Errorf("--model_prefix=%s: the directory %s does not exist; create it first", c.ModelPrefix, filepath.Dir(c.ModelPrefix))
	case c.ModelType != "bpe":
		return fmt.Errorf("--model_type=%s is not supported: zhllama trains bpe models (use --model_type=bpe)", c.ModelType)
	case c.VocabSize <= 0:
		return fmt.Errorf("--vocab_size=%d must be positive", c.VocabSize)
	case c.CharacterCoverage < 0.98 || c.CharacterCoverage > 1:
		return fmt.Errorf("--character_coverage=%g must be in [0.98, 1]", c.CharacterCoverage)
	case c.MaxSentenceLength < 10:
		return fmt.Errorf("--max_sentence_length=%d must be at least 10", c.MaxSentenceLength)
	case c.MaxSentencepieceLength < 1 || c.MaxSentencepieceLength > 512:
		return fmt.Errorf("--max_sentencepiece_length=%d must be in [1, 512]", c.MaxSentencepieceLength)
	case c.NumThreads < 1 || c.NumThreads > 1024:
		return fmt.Errorf("--num_threads=%d must be in [1, 1024]", c.NumThreads)
	case c.InputSentenceSize < 0:
		return fmt.Errorf("--input_sentence_size=%d must not be negative", c.InputSentenceSize)
	case c.InputFormat != "" && c.InputFormat != "text" && c.InputFormat != "tsv":
		return fmt.Errorf("--input_format=%s: use text or tsv", c.InputFormat)
	}
	if _, err := builtinCharsMap(c.NormalizationRuleName); err != nil {
		return err
	}
	return nil
}

// metaPieces places the special pieces at their ids, as spm_train does:
// unk/bos/eos/pad at their flags' ids, then control symbols, user-defined
// symbols and byte pieces in the first free ids.
// minVocab is the number of ids the special pieces take: unk, bos, eos and
// pad (those with an id), the control and user symbols, and the byte
// pieces with byte fallback.
func (c *TrainConfig) minVocab() int {
	n := len(c.ControlSymbols) + len(c.UserDefinedSymbols)
	for _, id := range []int{c.UnkID, c.BosID, c.EosID, c.PadID} {
		if id >= 0 {
			n++
		}
	}
	if c.ByteFallback {
		n += 256
	}
	return n
}

func (c *TrainConfig) metaPieces() (map[int]Piece, error) {
	meta := map[int]Piece{}
	put := func(flag string, id int, piece string) error {
		if id < 0 {
			return nil
		}
		if id >= c.VocabSize {
			return fmt.Errorf("--%s=%d is not below --vocab_size=%d", flag, id, c.VocabSize)
		}
		if old, ok := meta[id]; ok {
			return fmt.Errorf("--%s=%d is already the id of %q", flag, id, old.Piece)
		}
		typ := Control
		if piece == c.UnkPiece {
			if flag != "unk_id" {
				return fmt.Errorf("--%s: %q is the unknown piece", flag, piece)
			}
			typ = Unknown
		}
		meta[id] = NewPiece(piece, 0, typ)
		return nil
	}
	if c.UnkID < 0 {
		return nil, fmt.Errorf("--unk_id=%d: the unknown piece must have an id", c.UnkID)
	}
	for _, f := range []struct {
		flag  string
		id    int
		piece string
	}{{"unk_id", c.UnkID, c.UnkPiece}, {"bos_id", c.BosID, c.BosPiece}, {"eos_id", c.EosID, c.EosPiece}, {"pad_id", c.PadID, c.PadPiece}} {
		if err := put(f.flag, f.id, f.piece); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	next := 0
	add := func(flag, piece string, typ PieceType) error {
		if piece == "" {
			return fmt.Errorf("--%s has an empty symbol", flag)
		}
		if seen[piece] {
			return fmt.Errorf("--%s: %q is defined twice", flag, piece)
		}
		seen[piece] = true
		if piece == c.UnkPiece {
			return fmt.Errorf("--%s: %q is the unknown piece and cannot be a symbol", flag, piece)
		}
		for _, sp := range []struct {
			id    int
			piece string
		}{{c.BosID, c.BosPiece}, {c.EosID, c.EosPiece}, {c.PadID, c.PadPiece}} {
			if piece == sp.piece && sp.id >= 0 {
				p := meta[sp.id]
				p.Type = typ
				meta[sp.id] = p
				return nil
			}
		}
		for meta[next].Piece != "" {
			next++
		}
		if next >= c.VocabSize {
			bytes := ""
			if c.ByteFallback {
				bytes = " (256 of them the byte pieces of --byte_fallback)"
			}
			return fmt.Errorf("--vocab_size=%d is too small for the special pieces: they need %d ids%s; use --vocab_size=%d or more", c.VocabSize, c.minVocab(), bytes, c.minVocab()+1)
		}
		meta[next] = NewPiece(piece, 0, typ)
		return nil
	}
	for _, s := range c.ControlSymbols {
		if err := add("control_symbols", s, Control); err != nil {
			return nil, err
		}
	}
	for _, s := range c.UserDefinedSymbols {
		if err := add("user_defined_symbols", s, UserDefined); err != nil {
			return nil, err
		}
	}
	if c.ByteFallback {
		for b := 0; b < 256; b++ {
			if err := add("byte_fallback", ByteToPiece(byte(b)), Byte); err != nil {
				return nil, err
			}
		}
	}
	return meta, nil
}

// specs returns the TrainerSpec and NormalizerSpec written into the model.
func (c *TrainConfig) specs() (*Spec, *Spec, error) {
	ts := &Spec{}
	ts.SetStrings(TrInput, c.Input)
	ts.SetString(TrModelPrefix, c.ModelPrefix)
	ts.SetInt(TrModelType, ModelBPE)
	ts.SetInt(TrVocabSize, int64(c.VocabSize))
	ts.SetInt(TrSelfTestSampleSize, 0)
	ts.SetString(TrInputFormat, c.InputFormat)
	ts.SetFloat(TrCharacterCoverage, float32(c.CharacterCoverage))
	ts.SetInt(TrInputSentenceSize, int64(c.InputSentenceSize))
	ts.SetInt(TrSeedSentencepieceSize, 1000000)
	ts.SetFloat(TrShrinkingFactor, 0.75)
	ts.SetInt(TrNumThreads, int64(c.NumThreads))
	ts.SetInt(TrNumSubIterations, 2)
	ts.SetInt(TrMaxSentenceLength, int64(c.MaxSentenceLength))
	ts.SetBool(TrShuffleInputSentence, c.ShuffleInputSentence)
	ts.SetInt(TrMaxSentencepieceLength, int64(c.MaxSentencepieceLength))
	ts.SetBool(TrSplitByUnicodeScript, c.SplitByUnicodeScript)
	ts.SetBool(TrSplitByWhitespace, c.SplitByWhitespace)
	ts.SetBool(TrSplitByNumber, c.SplitByNumber)
	ts.SetBool(TrTreatWhitespaceAsSuffix, c.TreatWhitespaceAsSuffix)
	ts.SetBool(TrSplitDigits, c.SplitDigits)
	ts.SetBool(TrAllowWhitespaceOnlyPieces, c.AllowWhitespaceOnlyPieces)
	ts.SetStrings(TrControlSymbols, c.ControlSymbols)
	ts.SetStrings(TrUserDefinedSymbols, c.UserDefinedSymbols)
	ts.SetBool(TrVocabularyOutputScore, c.VocabularyOutputPieceScore)
	ts.SetBool(TrHardVocabLimit, c.HardVocabLimit)
	ts.SetBool(TrUseAllVocab, c.UseAllVocab)
	ts.SetBool(TrByteFallback, c.ByteFallback)
	ts.SetString(TrRequiredChars, c.RequiredChars)
	ts.SetInt(TrUnkID, int64(c.UnkID))
	ts.SetInt(TrBosID, int64(c.BosID))
	ts.SetInt(TrEosID, int64(c.EosID))
	ts.SetInt(TrPadID, int64(c.PadID))
	ts.SetString(TrUnkSurface, c.UnkSurface)
	ts.SetString(TrUnkPiece, c.UnkPiece)
	ts.SetString(TrBosPiece, c.BosPiece)
	ts.SetString(TrEosPiece, c.EosPiece)
	ts.SetString(TrPadPiece, c.PadPiece)
	ts.SetBool(TrTrainExtremelyLargeCorpus, false)

	cm, err := builtinCharsMap(c.NormalizationRuleName)
	if err != nil {
		return nil, nil, err
	}
	ns := &Spec{}
	ns.SetString(NormName, c.NormalizationRuleName)
	ns.SetString(NormPrecompiledCharsmap, string(cm))
	ns.SetBool(NormAddDummyPrefix, c.AddDummyPrefix)
	ns.SetBool(NormRemoveExtraWhitespaces, c.RemoveExtraWhitespaces)
	ns.SetBool(NormEscapeWhitespaces, true)
	return ts, ns, nil
}

// progress prints a line at most every interval, with rate and ETA when the total is known.
type progress struct {
	w        io.Writer
	what     string
	start    time.Time
	last     time.Time
	interval time.Duration
}

func newProgress(w io.Writer, what string) *progress {
	now := time.Now()
	return &progress{w: w, what: what, start: now, last: now, interval: 2 * time.Second}
}

func (p *progress) update(done, total int64, unit string, force bool) {
	if p == nil || p.w == nil {
		return
	}
	now := time.Now()
	if !force && now.Sub(p.last) < p.interval {
		return
	}
	p.last = now
	el := now.Sub(p.start).Seconds()
	rate := float64(done) / max(el, 1e-9)
	line := fmt.Sprintf("%s: %d", p.what, done)
	if total > 0 {
		line += fmt.Sprintf("/%d %s (%.1f%%), %.0f %s/s", total, unit, 100*float64(done)/float64(total), rate, unit)
		if done < total && rate > 0 {
			line += fmt.Sprintf(", ETA %s", time.Duration(float64(total-done)/rate*float64(time.Second)).Round(time.Second))
		}
	} else {
		line += fmt.Sprintf(" %s, %.0f %s/s", unit, rate, unit)
	}
	fmt.Fprintf(p.w, "%s, %s elapsed\n", line, time.Duration(el*float64(time.Second)).Round(time.Millisecond))
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
