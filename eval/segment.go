package eval

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-ego/gse"
)

// The words of Chinese text for ROUGE come from gse (pure Go, Apache-2.0)
// in its DAG + HMM mode, the algorithm of jieba.cut. gse's blocks differ
// from jieba's around Latin letters, digits, spaces and punctuation, so the
// text is first cut into jieba's blocks here, and only the runs jieba
// segments reach gse, with jieba's HMM blocks.
//
// The dictionary is jieba's own dict.txt, loaded with its frequencies: the
// words then are jieba's. Built with -tags gsedict, gse's embedded
// dictionary serves when none is given; it adds 33 MB to the binary (gse
// links its Japanese dictionary with its Chinese one), and gse loads every
// one-character word with frequency 2, which tips some splits toward
// longer words.

var (
	jiebaMu   sync.Mutex
	jiebaSegs = map[string]*gse.Segmenter{}
)

// NewJieba returns a Segmenter that cuts text as jieba.cut(text) does
// (precise mode, HMM on), with jieba's dict.txt at dictPath; "" is gse's
// embedded dictionary, in a build with it. A dictionary loads once (about
// 2 s).
func NewJieba(dictPath string) (Segmenter, error) {
	jiebaMu.Lock()
	defer jiebaMu.Unlock()
	seg := jiebaSegs[dictPath]
	if seg == nil {
		// gse lowercases Latin letters unless told not to; jieba keeps them.
		gse.ToLower = false
		seg = &gse.Segmenter{SkipLog: true}
		if dictPath == "" {
			if err := loadEmbeddedDict(seg); err != nil {
				return nil, err
			}
		} else if err := loadJiebaDict(seg, dictPath); err != nil {
			return nil, err
		}
		if err := fillPrefixChars(seg); err != nil {
			return nil, err
		}
		jiebaSegs[dictPath] = seg
	}
	return func(text string) []string { return jiebaCut(seg, text) }, nil
}

// fillPrefixChars gives frequency 1 to every character that starts a word
// but is none itself. gse finds such a character with frequency 0 and
// scores its route log 0, which sinks every route through it (a digit
// before Chinese text then pulls the words around it apart); jieba scores
// it log 1. It adds those few to the total, which moves no split seen.
func fillPrefixChars(seg *gse.Segmenter) error {
	var add []string
	for i := range seg.Dict.Tokens {
		for _, r := range seg.Dict.Tokens[i].Text() {
			c := string(r)
			if f, _, ok := seg.Find(c); ok && f == 0 && !slices.Contains(add, c) {
				add = append(add, c)
			}
			break
		}
	}
	for _, c := range add {
		if err := seg.AddToken(c, 1); err != nil {
			return err
		}
	}
	return nil
}

// loadJiebaDict adds the words of a jieba dictionary ("word freq [tag]" a
// line) with their frequencies, as jieba reads them.
func loadJiebaDict(seg *gse.Segmenter, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("jieba dictionary: %w", err)
	}
	seg.Dict = gse.NewDict()
	seg.Init()
	for n, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.Split(strings.TrimSpace(line), " ")
		freq := 0.0
		if len(f) >= 2 {
			freq, err = strconv.ParseFloat(f[1], 64)
		}
		if len(f) < 2 || err != nil || freq < 0 {
			return fmt.Errorf("%s:%d: want \"word frequency [tag]\", got %q: use jieba's dict.txt or a file in its layout", path, n+1, line)
		}
		if err := seg.AddToken(f[0], freq); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n+1, err)
		}
	}
	return nil
}

func jiebaCut(seg *gse.Segmenter, text string) []string {
	var out []string
	rs := []rune(text)
	for i := 0; i < len(rs); {
		if isJiebaHan(rs[i]) {
			j := i
			for j < len(rs) && isJiebaHan(rs[j]) {
				j++
			}
			out = append(out, seg.CutDAG(string(rs[i:j]), hmmSkip, hmmHan)...)
			i = j
			continue
		}
		// Outside those runs jieba yields "\r\n" whole and every other
		// character alone, white space included.
		if rs[i] == '\r' && i+1 < len(rs) && rs[i+1] == '\n' {
			out = append(out, "\r\n")
			i += 2
			continue
		}
		out = append(out, string(rs[i]))
		i++
	}
	return out
}

// The HMM's blocks as jieba's finalseg cuts them: runs of CJK ideographs
// go through the HMM; a Latin or digit run with a decimal part and a
// percent sign stays one word.
var (
	hmmSkip = regexp.MustCompile(`[a-zA-Z0-9]+(?:\.[0-9]+)?%?`)
	hmmHan  = regexp.MustCompile(`[\x{4E00}-\x{9FD5}]+`)
)

// isJiebaHan is jieba's re_han_default class: CJK ideographs, ASCII
// letters and digits, and +#&._%-.
func isJiebaHan(r rune) bool {
	switch {
	case r >= 0x4E00 && r <= 0x9FD5, r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	switch r {
	case '+', '#', '&', '.', '_', '%', '-':
		return true
	}
	return false
}

// FindJiebaDict looks for jieba's dict.txt where Python installs jieba
// (LLaMA-Factory depends on it, so its users have one): $ZHLLAMA_JIEBA_DICT,
// then the active virtualenv or conda environment, the user's and the
// system's site-packages and dist-packages. It returns "" when none is
// there.
func FindJiebaDict() string {
	if p := os.Getenv("ZHLLAMA_JIEBA_DICT"); p != "" {
		return p
	}
	var roots []string
	for _, env := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if d := os.Getenv(env); d != "" {
			roots = append(roots, filepath.Join(d, "lib", "python3*"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		roots = append(roots, filepath.Join(home, ".local", "lib", "python3*"))
	}
	roots = append(roots, "/usr/local/lib/python3*", "/usr/lib/python3*", "/usr/lib/python3")
	for _, r := range roots {
		for _, sub := range []string{"site-packages", "dist-packages"} {
			if m, _ := filepath.Glob(filepath.Join(r, sub, "jieba", "dict.txt")); len(m) > 0 {
				return m[len(m)-1]
			}
		}
	}
	return ""
}
