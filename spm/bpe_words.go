package spm

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
)

// Counting the words of the corpus: read, normalize and split on the
// whitespace marker, over all threads.

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
	var n, tooLong, invalid int64
	var err error
	tsv := c.InputFormat == "tsv"
	switch {
	case c.InputSentenceSize > 0 && c.ShuffleInputSentence:
		r := &reservoir{k: c.InputSentenceSize, rng: rand.New(rand.NewPCG(c.Seed, 1))}
		n, tooLong, err = readSentences(c.Input, tsv, c.MaxSentenceLength, func(s sentence) bool { r.add(s); return true }, prog, &invalid)
		for _, s := range r.out {
			emit(s)
		}
	case c.InputSentenceSize > 0:
		left := c.InputSentenceSize
		n, tooLong, err = readSentences(c.Input, tsv, c.MaxSentenceLength, func(s sentence) bool {
			emit(s)
			left--
			return left > 0
		}, prog, &invalid)
	default:
		n, tooLong, err = readSentences(c.Input, tsv, c.MaxSentenceLength, emit, prog, &invalid)
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
		if invalid > 0 {
			fmt.Fprintf(c.Log, "warning: %d lines are not valid UTF-8; their invalid bytes are dropped (spm_train keeps them as U+FFFD)\n", invalid)
		}
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
