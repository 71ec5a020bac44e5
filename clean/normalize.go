// Package clean cleans pretraining text and instruction data with rules a
// person can read and change: normalization, quality filters, checks on
// the answers of SFT data, and exact or near-duplicate removal.
package clean

import (
	"html"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// NormalizeText applies the normalization policy: full-width ASCII letters,
// digits and the ideographic space become half-width (CJK punctuation such
// as ，。！？ stays), control characters other than newline and tab are
// removed, and markup remnants (HTML tags and entities) are taken out.
func NormalizeText(s string) string {
	if strings.ContainsAny(s, "<&") {
		s = stripMarkup(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	changed := false
	for _, r := range s {
		switch {
		case r >= 'Ａ' && r <= 'Ｚ', r >= 'ａ' && r <= 'ｚ', r >= '０' && r <= '９':
			r -= 0xFEE0
			changed = true
		case r == '\u3000':
			r = ' '
			changed = true
		case r == '\n' || r == '\t':
		case r == '\r':
			changed = true
			continue
		case unicode.IsControl(r) || r == '\u200b' || r == '\ufeff' || r == '\ufffd':
			changed = true
			continue
		}
		b.WriteRune(r)
	}
	if !changed {
		return s
	}
	return b.String()
}

var (
	tagRe   = regexp.MustCompile(`(?i)</?(?:p|br|div|span|a|b|i|u|em|strong|font|img|table|tr|td|th|li|ul|ol|h[1-6])(?:\s[^<>]*)?/?>`)
	brRe    = regexp.MustCompile(`(?i)<br\s*/?>|</p>`)
	entRe   = regexp.MustCompile(`&(?:[a-zA-Z]{2,8}|#[0-9]{2,6}|#x[0-9a-fA-F]{2,5});`)
	spaceRe = regexp.MustCompile(`[ \t]{2,}`)
)

// stripMarkup turns line-breaking tags into newlines, drops other common
// HTML tags and decodes entities; other angle brackets (code, math) stay.
func stripMarkup(s string) string {
	orig := s
	s = brRe.ReplaceAllString(s, "\n")
	s = tagRe.ReplaceAllString(s, "")
	if entRe.MatchString(s) {
		s = entRe.ReplaceAllStringFunc(s, html.UnescapeString)
		s = strings.ReplaceAll(s, "\u00a0", " ")
	}
	if s != orig {
		s = spaceRe.ReplaceAllString(s, " ")
	}
	return s
}

// isHan reports a Chinese character.
func isHan(r rune) bool { return unicode.Is(unicode.Han, r) }

// ChineseRatio is the share of Han characters among letters and Han
// characters (digits, punctuation and spaces do not count).
func ChineseRatio(s string) float64 {
	han, letters := 0, 0
	for _, r := range s {
		switch {
		case isHan(r):
			han++
			letters++
		case unicode.IsLetter(r):
			letters++
		}
	}
	if letters == 0 {
		return 0
	}
	return float64(han) / float64(letters)
}

// longestRun is the length of the longest run of one repeated letter,
// digit or Han character (runs of "-", "=" or spaces are formatting).
func longestRun(s string) int {
	best, cur := 0, 0
	var prev rune = -1
	for _, r := range s {
		if r == prev && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			cur++
		} else {
			cur = 1
		}
		prev = r
		best = max(best, cur)
	}
	return best
}

// duplicateLineShare is the share of lines that repeat an earlier line,
// among lines of at least 10 characters (short ones, such as a closing
// brace or a table rule, repeat in good text).
func duplicateLineShare(s string) float64 {
	seen := map[string]bool{}
	total, dup := 0, 0
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if utf8.RuneCountInString(l) < 10 {
			continue
		}
		total++
		if seen[l] {
			dup++
		}
		seen[l] = true
	}
	if total == 0 {
		return 0
	}
	return float64(dup) / float64(total)
}

// topNgramShare is the share of characters covered by the most frequent
// character n-gram (a measure of looping, repetitive text).
func topNgramShare(s string, n int) float64 {
	rs := []rune(s)
	if len(rs) < 50 { // short texts repeat by chance (parallel verse)
		return 0
	}
	counts := map[string]int{}
	best := 0
	for i := 0; i+n <= len(rs); i++ {
		g := string(rs[i : i+n])
		counts[g]++
		best = max(best, counts[g])
	}
	return float64(best*n) / float64(len(rs))
}
