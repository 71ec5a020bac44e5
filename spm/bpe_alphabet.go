package spm

import (
	"fmt"
	"slices"
	"unicode/utf8"
)

// The initial symbols: the characters kept by character_coverage, and
// every word as a sequence of them.

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
