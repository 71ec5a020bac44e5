package spm

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"zhllama/internal/textcheck"
)

// sentence is one training line and its frequency.
type sentence struct {
	text string
	freq int64
}

// readSentences streams the lines of files (gzip when the name ends in .gz)
// to emit, skipping empty and over-long lines as spm_train does. It returns
// the number of lines read and skipped as too long, and counts in invalid
// the lines that are not valid UTF-8. A file that is mostly not UTF-8 is
// an error: Chinese text in GBK or GB18030 would train a vocabulary of
// mojibake.
func readSentences(files []string, tsv bool, maxLen int, emit func(sentence) bool, prog *progress, invalid *int64) (n, tooLong int64, err error) {
	var bytesRead int64
	for _, name := range files {
		enc := textcheck.Lines{Name: name}
		f, err := os.Open(name)
		if err != nil {
			return n, tooLong, fmt.Errorf("--input: %w", err)
		}
		var r io.Reader = f
		if strings.HasSuffix(name, ".gz") {
			zr, err := gzip.NewReader(f)
			if err != nil {
				f.Close()
				return n, tooLong, fmt.Errorf("%s: not a gzip file: %w", name, err)
			}
			r = zr
		}
		br := bufio.NewReaderSize(r, 1<<20)
		line := 0
		for {
			s, rerr := br.ReadString('\n')
			if rerr != nil && rerr != io.EOF {
				f.Close()
				return n, tooLong, fmt.Errorf("%s: line %d: %w", name, line+1, rerr)
			}
			if s == "" && rerr == io.EOF {
				break
			}
			line++
			bytesRead += int64(len(s))
			s = strings.TrimSuffix(s, "\n")
			if enc.Total++; !utf8.ValidString(s) {
				enc.Bad++
				*invalid++
			}
			// Judged early on, and again at the end.
			if enc.Total == textcheck.Early {
				if err := enc.Err(); err != nil {
					f.Close()
					return n, tooLong, err
				}
			}
			freq := int64(1)
			if tsv {
				text, fs, ok := strings.Cut(s, "\t")
				v, perr := strconv.ParseInt(fs, 10, 64)
				if !ok || perr != nil || v < 1 || strings.Contains(fs, "\t") {
					f.Close()
					return n, tooLong, fmt.Errorf("%s: line %d: --input_format=tsv wants sentence<TAB>frequency (a positive integer)", name, line)
				}
				s, freq = text, v
			}
			if s != "" {
				if len(s) > maxLen {
					tooLong++
				} else if !strings.Contains(s, string(unkChar)) {
					n++
					if !emit(sentence{s, freq}) {
						f.Close()
						return n, tooLong, nil
					}
				}
			}
			prog.update(bytesRead>>20, 0, "MiB", false)
			if rerr == io.EOF {
				break
			}
		}
		f.Close()
		if err := enc.Err(); err != nil {
			return n, tooLong, err
		}
	}
	return n, tooLong, nil
}

// reservoir keeps a uniform sample of at most k sentences.
type reservoir struct {
	k    int
	seen int64
	rng  *rand.Rand
	out  []sentence
}

func (r *reservoir) add(s sentence) {
	r.seen++
	if len(r.out) < r.k {
		r.out = append(r.out, s)
		return
	}
	if j := r.rng.Int64N(r.seen); j < int64(r.k) {
		r.out[j] = s
	}
}
