package spm

import ()

// The merge loop: pair counts kept up to date around each merge, the best
// pair chosen as spm_train chooses it.

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
