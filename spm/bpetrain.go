package spm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
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
	if err := c.validate(); err != nil {
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

// countWords normalizes every sentence in parallel and counts its words.
func (t *bpeTrainer) countWords() (map[string]int64, error) {
	c := t.c
	threads := max(1, c.NumThreads)
	batches := make(chan []sentence, 2*threads)
	results := make([]map[string]int64, threads)
	var wg sync.WaitGroup
	for w := 0; w < threads; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			counts := map[string]int64{}
			var buf, rep []byte
			for batch := range batches {
				for _, s := range batch {
					buf = t.norm.Append(buf[:0], s.text)
					rep = t.replaceMeta(rep[:0], buf)
					t.splitWords(rep, func(w []byte) { counts[string(w)] += s.freq })
				}
			}
			results[w] = counts
		}(w)
	}
	prog := newProgress(c.Log, "reading input")
	var batch []sentence
	flush := func() {
		if len(batch) > 0 {
			batches <- batch
			batch = nil
		}
	}
	emit := func(s sentence) bool {
		batch = append(batch, s)
		if len(batch) == 1024 {
			flush()
		}
		return true
	}
	var n, tooLong int64
	var err error
	tsv := c.InputFormat == "tsv"
	switch {
	case c.InputSentenceSize > 0 && c.ShuffleInputSentence:
		r := &reservoir{k: c.InputSentenceSize, rng: rand.New(rand.NewPCG(c.Seed, 1))}
		n, tooLong, err = readSentences(c.Input, tsv, c.MaxSentenceLength, func(s sentence) bool { r.add(s); return true }, prog)
		for _, s := range r.out {
			emit(s)
		}
	case c.InputSentenceSize > 0:
		left := c.InputSentenceSize
		n, tooLong, err = readSentences(c.Input, tsv, c.MaxSentenceLength, func(s sentence) bool {
			emit(s)
			left--
			return left > 0
		}, prog)
	default:
		n, tooLong, err = readSentences(c.Input, tsv, c.MaxSentenceLength, emit, prog)
	}
	flush()
	close(batches)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if c.Log != nil {
		used := n
		if c.InputSentenceSize > 0 {
			used = min(n, int64(c.InputSentenceSize))
		}
		fmt.Fprintf(c.Log, "read %d sentences (%d used), skipped %d longer than --max_sentence_length=%d\n", n, used, tooLong, c.MaxSentenceLength)
	}
	if n == 0 {
		return nil, fmt.Errorf("--input %s has no usable sentence (empty, or every line longer than --max_sentence_length=%d)", strings.Join(c.Input, ","), c.MaxSentenceLength)
	}
	words := results[0]
	for _, r := range results[1:] {
		for w, f := range r {
			words[w] += f
		}
	}
	return words, nil
}

// replaceMeta replaces every special piece in normalized text by a boundary,
// so that no learned piece overlaps one.
func (t *bpeTrainer) replaceMeta(dst, s []byte) []byte {
	if t.meta == nil {
		return append(dst, s...)
	}
	str := string(s)
	for i := 0; i < len(str); {
		if l := t.meta.match(str[i:]); l > 0 {
			dst = append(dst, boundary)
			i += l
			continue
		}
		l := charLen(str[i:])
		dst = append(dst, str[i:i+l]...)
		i += l
	}
	return dst
}

// splitWords calls f on each word of normalized text: a word starts at each
// U+2581 (or ends after it, with treat_whitespace_as_suffix).
func (t *bpeTrainer) splitWords(s []byte, f func([]byte)) {
	if !t.c.SplitByWhitespace {
		if len(s) > 0 {
			f(s)
		}
		return
	}
	const ws = SpaceSymbol
	allowWS := t.c.AllowWhitespaceOnlyPieces
	start := 0
	inWS := false
	if t.c.TreatWhitespaceAsSuffix {
		for i := 0; i < len(s); {
			l := min(oneCharLen(s[i]), len(s)-i)
			isWS := string(s[i:i+l]) == ws
			if isWS {
				inWS = true
			} else if inWS {
				if allowWS {
					f(s[start:i])
					start = i
				}
				inWS = false
			}
			i += l
			if i < len(s) && isWS && !allowWS {
				f(s[start:i])
				start = i
			}
		}
		if start < len(s) {
			f(s[start:])
		}
		return
	}
	for i := 0; i < len(s); {
		l := min(oneCharLen(s[i]), len(s)-i)
		isWS := string(s[i:i+l]) == ws
		if i > 0 && isWS && (!inWS || !allowWS) {
			f(s[start:i])
			start = i
		}
		if isWS {
			inWS = true
		} else {
			inWS = false
		}
		i += l
	}
	if start < len(s) {
		f(s[start:])
	}
}

type charCount struct {
	r        rune
	count    int64
	required bool
}

// alphabet picks the characters covering character_coverage of the text
// (required_chars first), most frequent first.
func (t *bpeTrainer) alphabet(words map[string]int64, nMeta int) ([]charCount, error) {
	c := t.c
	counts := map[rune]*charCount{}
	for _, r := range c.RequiredChars {
		if r == 0 || r == utf8.RuneError {
			continue
		}
		counts[r] = &charCount{r: r, required: true}
	}
	var all int64
	for w, f := range words {
		for _, r := range w {
			if r == 0 || r == ' ' || (r == utf8.RuneError) || !validCodepoint(r) {
				continue
			}
			cc := counts[r]
			if cc == nil {
				cc = &charCount{r: r}
				counts[r] = cc
			}
			cc.count += f
			all += f
		}
	}
	sorted := make([]charCount, 0, len(counts))
	for _, cc := range counts {
		sorted = append(sorted, *cc)
	}
	slices.SortFunc(sorted, func(a, b charCount) int {
		if a.required != b.required {
			if a.required {
				return -1
			}
			return 1
		}
		if a.count != b.count {
			if a.count > b.count {
				return -1
			}
			return 1
		}
		return int(a.r - b.r)
	})
	var acc int64
	var chars []charCount
	for _, cc := range sorted {
		coverage := float32(float64(acc) / float64(all))
		if !c.UseAllVocab && coverage >= float32(c.CharacterCoverage) {
			break
		}
		acc += cc.count
		if cc.r == boundary || cc.r == unkChar {
			continue
		}
		chars = append(chars, cc)
	}
	if c.Log != nil {
		fmt.Fprintf(c.Log, "alphabet: %d characters cover %.4f%% of %d\n", len(chars), 100*float64(acc)/float64(max(all, 1)), all)
	}
	if len(chars)+nMeta > c.VocabSize {
		return nil, fmt.Errorf("--vocab_size=%d is smaller than the %d special pieces plus the %d characters needed to cover --character_coverage=%g: use --vocab_size=%d or more, or lower --character_coverage", c.VocabSize, nMeta, len(chars), c.CharacterCoverage, len(chars)+nMeta)
	}
	return chars, nil
}

func validCodepoint(r rune) bool {
	return (r >= 0 && r < 0xD800) || (r >= 0xE000 && r <= 0x10FFFF)
}

// initSymbols turns words into symbol sequences and counts every pair.
func (t *bpeTrainer) initSymbols(words map[string]int64, chars []charCount) {
	t.byStr = make(map[string]int32, len(chars))
	charID := make(map[rune]int32, len(chars))
	for _, cc := range chars {
		id := t.newSymbol(string(cc.r))
		charID[cc.r] = id
	}
	t.heap.less = t.entryLess
	// Sort the words so that training does not depend on map order.
	keys := make([]string, 0, len(words))
	for w := range words {
		keys = append(keys, w)
	}
	slices.Sort(keys)
	for _, w := range keys {
		start := int32(len(t.arena))
		for _, r := range w {
			id, ok := charID[r]
			if !ok {
				id = -1 // outside the alphabet: never merged
			}
			t.arena = append(t.arena, id)
		}
		t.wStart = append(t.wStart, start)
		t.wLen = append(t.wLen, int32(len(t.arena))-start)
		t.wFreq = append(t.wFreq, words[w])
	}
	t.mark = make([]uint32, len(t.wStart))
	t.gen = 1
	t.pairIdx = make(map[uint64]int32, len(t.arena)/8)
	for w := range t.wStart {
		forPairs(t.word(int32(w)), func(x, y int32) { t.inc(x, y, int32(w), t.wFreq[w]) })
	}
	entries := make([]pairEntry, 0, len(t.touched))
	for _, p := range t.touched {
		entries = append(entries, pairEntry{t.pair(p).count, p})
	}
	t.heap.init(entries)
	t.touched = t.touched[:0]
}

func (t *bpeTrainer) newSymbol(s string) int32 {
	id := int32(len(t.symStr))
	t.symStr = append(t.symStr, s)
	t.symRune = append(t.symRune, []rune(s))
	t.byStr[s] = id
	return id
}

func (t *bpeTrainer) word(w int32) []int32 {
	return t.arena[t.wStart[w] : t.wStart[w]+t.wLen[w]]
}

const pairBlockBits = 16

func (t *bpeTrainer) pair(i int32) *pairStat {
	return &t.pairs[i>>pairBlockBits][i&(1<<pairBlockBits-1)]
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// inc adds freq occurrences of pair (a, b) found in word w.
func (t *bpeTrainer) inc(a, b, w int32, freq int64) {
	if a < 0 || b < 0 {
		return
	}
	k := pairKey(a, b)
	idx, ok := t.pairIdx[k]
	if !ok {
		idx = t.nPairs
		t.pairIdx[k] = idx
		joined := make([]rune, 0, len(t.symRune[a])+len(t.symRune[b]))
		joined = append(append(joined, t.symRune[a]...), t.symRune[b]...)
		if int(idx)>>pairBlockBits == len(t.pairs) {
			t.pairs = append(t.pairs, make([]pairStat, 1<<pairBlockBits))
		}
		*t.pair(idx) = pairStat{a: a, b: b, invalid: !t.c.validPiece(joined)}
		t.nPairs++
	}
	p := t.pair(idx)
	if p.invalid {
		return
	}
	p.count += freq
	if n := len(p.words); n == 0 || p.words[n-1] != w {
		p.words = append(p.words, w)
	}
	if p.touched != t.gen {
		p.touched = t.gen
		t.touched = append(t.touched, idx)
	}
}

func (t *bpeTrainer) dec(a, b int32, freq int64) {
	if a < 0 || b < 0 {
		return
	}
	if idx, ok := t.pairIdx[pairKey(a, b)]; ok {
		t.pair(idx).count -= freq
	}
}

// entryLess orders the heap: higher count, then shorter piece, then the
// lexicographically smaller piece, then the pair's symbol ids.
func (t *bpeTrainer) entryLess(x, y *pairEntry) bool {
	if x.count != y.count {
		return x.count > y.count
	}
	px, py := t.pair(x.pair), t.pair(y.pair)
	lx := len(t.symRune[px.a]) + len(t.symRune[px.b])
	ly := len(t.symRune[py.a]) + len(t.symRune[py.b])
	if lx != ly {
		return lx < ly
	}
	if concatLess(t.symStr[px.a], t.symStr[px.b], t.symStr[py.a], t.symStr[py.b]) {
		return true
	}
	if concatLess(t.symStr[py.a], t.symStr[py.b], t.symStr[px.a], t.symStr[px.b]) {
		return false
	}
	// The same piece from two different pairs: keep the order total, so
	// that the result does not depend on the heap's history.
	if px.a != py.a {
		return px.a < py.a
	}
	return px.b < py.b
}

// concatLess reports whether a1+a2 < b1+b2 without building the strings.
func concatLess(a1, a2, b1, b2 string) bool {
	n := min(len(a1), len(b1))
	if a1[:n] != b1[:n] {
		return a1[:n] < b1[:n]
	}
	if len(a1) > n { // b1 is a prefix of a1
		return a1[n:]+a2 < b2
	}
	return a2 < b1[n:]+b2
}

// merge performs up to target merges that make new pieces.
func (t *bpeTrainer) merge(target int) {
	prog := newProgress(t.c.Log, "merges")
	for len(t.merged) < target && len(t.heap.items) > 0 {
		e := t.heap.pop()
		p := t.pair(e.pair)
		if p.count != e.count {
			if p.count > 0 {
				t.heap.push(pairEntry{p.count, e.pair})
			}
			continue
		}
		if p.count <= 0 {
			continue
		}
		a, b := p.a, p.b
		s := t.symStr[a] + t.symStr[b]
		id, exists := t.byStr[s]
		if !exists {
			id = t.newSymbol(s)
			t.merged = append(t.merged, id)
		}
		t.gen++
		words := p.words
		p.words = nil
		for _, w := range words {
			if t.mark[w] == t.gen {
				continue
			}
			t.mark[w] = t.gen
			t.mergeWord(w, a, b, id)
		}
		for _, q := range t.touched {
			if c := t.pair(q).count; c > 0 {
				t.heap.push(pairEntry{c, q})
			}
		}
		t.touched = t.touched[:0]
		prog.update(int64(len(t.merged)), int64(target), "merges", false)
	}
	prog.update(int64(len(t.merged)), int64(target), "merges", true)
}

// mergeWord replaces each (a, b) in word w by id, left to right, updating
// only the pairs next to each replacement. The local update is exact for
// counts of all adjacent pairs; the overlapping pairs that spm_train does
// not count are added back before and taken out after.
func (t *bpeTrainer) mergeWord(w, a, b, id int32) {
	syms := t.word(w)
	f := t.wFreq[w]
	forSkipped(syms, func(x, y int32) { t.inc(x, y, w, f) })
	n := len(syms)
	j := 0
	for i := 0; i < n; {
		if i+1 < n && syms[i] == a && syms[i+1] == b {
			t.dec(a, b, f)
			if j > 0 {
				t.dec(syms[j-1], a, f)
				t.inc(syms[j-1], id, w, f)
			}
			if i+2 < n {
				t.dec(b, syms[i+2], f)
				t.inc(id, syms[i+2], w, f)
			}
			syms[j] = id
			i += 2
		} else {
			syms[j] = syms[i]
			i++
		}
		j++
	}
	t.wLen[w] = int32(j)
	forSkipped(syms[:j], func(x, y int32) { t.dec(x, y, f) })
}

// forPairs calls f for each adjacent pair of syms that spm_train counts:
// in a run of one symbol, overlapping pairs count once ("aaaa" has two "aa").
func forPairs(syms []int32, f func(x, y int32)) {
	walkPairs(syms, f, nil)
}

// forSkipped calls f for each adjacent pair that forPairs leaves out.
func forSkipped(syms []int32, f func(x, y int32)) {
	for i := 1; i < len(syms); i++ {
		if syms[i-1] == syms[i] {
			walkPairs(syms, nil, f)
			return
		}
	}
}

func walkPairs(syms []int32, counted, skipped func(x, y int32)) {
	lastEqEnd := -1
	for i := 1; i < len(syms); i++ {
		if syms[i-1] == syms[i] {
			if lastEqEnd == i-1 {
				lastEqEnd = -1
				if skipped != nil {
					skipped(syms[i-1], syms[i])
				}
				continue
			}
			lastEqEnd = i
		}
		if counted != nil {
			counted(syms[i-1], syms[i])
		}
	}
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
