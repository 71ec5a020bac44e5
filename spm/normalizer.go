package spm

import (
	"fmt"
	"unicode/utf8"
)

// SpaceSymbol is U+2581, which stands for a space inside pieces.
const SpaceSymbol = "\u2581"

// oneCharLen is the length of the UTF-8 sequence that lead byte c starts, as
// sentencepiece reckons it from the high nibble alone.
func oneCharLen(c byte) int {
	return int("\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x02\x02\x03\x04"[c>>4])
}

// charLen returns the length of the character at the start of s, capped by len(s).
func charLen(s string) int {
	return min(oneCharLen(s[0]), len(s))
}

// Normalizer turns raw text into the normalized form the model encodes:
// precompiled character map, whitespace folding, the dummy prefix and
// U+2581 for spaces. User-defined symbols pass through untouched.
type Normalizer struct {
	cm                 *charsMap
	addDummyPrefix     bool
	removeExtraSpaces  bool
	escapeSpaces       bool
	whitespaceAsSuffix bool
	user               *prefixMatcher
}

// newNormalizer builds a normalizer from a NormalizerSpec (nil means the
// proto defaults with no character map).
func newNormalizer(spec *Spec, suffix bool, user *prefixMatcher) (*Normalizer, error) {
	if spec == nil {
		spec = &Spec{}
	}
	n := &Normalizer{
		addDummyPrefix:     spec.Bool(NormAddDummyPrefix, true),
		removeExtraSpaces:  spec.Bool(NormRemoveExtraWhitespaces, true),
		escapeSpaces:       spec.Bool(NormEscapeWhitespaces, true),
		whitespaceAsSuffix: suffix,
		user:               user,
	}
	cm, err := parseCharsMap([]byte(spec.String(NormPrecompiledCharsmap, "")))
	if err != nil {
		return nil, fmt.Errorf("normalizer %q: %w", spec.String(NormName, ""), err)
	}
	n.cm = cm
	return n, nil
}

// prefix returns the normalized form of the longest rule that matches the
// start of s, and how many bytes of s it consumed. Invalid UTF-8 becomes
// U+FFFD one byte at a time.
func (n *Normalizer) prefix(s string) (string, int) {
	if n.user != nil {
		if l := n.user.match(s); l > 0 {
			return s[:l], l
		}
	}
	if n.cm != nil {
		if l, r := n.cm.longestMatch(s); l > 0 {
			return r, l
		}
	}
	if s[0] < utf8.RuneSelf {
		return s[:1], 1
	}
	r, l := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && l == 1 {
		return "\uFFFD", 1
	}
	return s[:l], l
}

// Normalize returns the normalized text.
func (n *Normalizer) Normalize(s string) string {
	return string(n.Append(nil, s))
}

// Append appends the normalized form of s to dst.
func (n *Normalizer) Append(dst []byte, s string) []byte {
	if s == "" {
		return dst
	}
	if n.removeExtraSpaces {
		for s != "" {
			r, l := n.prefix(s)
			if r != " " {
				break
			}
			s = s[l:]
		}
		if s == "" {
			return dst
		}
	}
	start := len(dst)
	space := " "
	if n.escapeSpaces {
		space = SpaceSymbol
	}
	if !n.whitespaceAsSuffix && n.addDummyPrefix {
		dst = append(dst, space...)
	}
	prevSpace := n.removeExtraSpaces
	for s != "" {
		r, l := n.prefix(s)
		s = s[l:]
		if prevSpace {
			for r != "" && r[0] == ' ' {
				r = r[1:]
			}
		}
		if r != "" {
			if n.escapeSpaces {
				for i := 0; i < len(r); i++ {
					if r[i] == ' ' {
						dst = append(dst, SpaceSymbol...)
					} else {
						dst = append(dst, r[i])
					}
				}
			} else {
				dst = append(dst, r...)
			}
			prevSpace = r[len(r)-1] == ' '
		}
		if !n.removeExtraSpaces {
			prevSpace = false
		}
	}
	if n.removeExtraSpaces {
		for len(dst)-start >= len(space) && string(dst[len(dst)-len(space):]) == space {
			dst = dst[:len(dst)-len(space)]
		}
	}
	if n.whitespaceAsSuffix && n.addDummyPrefix {
		dst = append(dst, space...)
	}
	return dst
}

// prefixMatcher finds the longest user-defined symbol at the start of a string.
type prefixMatcher struct {
	set    map[string]bool
	first  [256]bool
	maxLen int
}

func newPrefixMatcher(syms []string) *prefixMatcher {
	if len(syms) == 0 {
		return nil
	}
	m := &prefixMatcher{set: make(map[string]bool, len(syms))}
	for _, s := range syms {
		if s == "" {
			continue
		}
		m.set[s] = true
		m.first[s[0]] = true
		m.maxLen = max(m.maxLen, len(s))
	}
	return m
}

// match returns the length of the longest symbol prefixing s, or 0.
func (m *prefixMatcher) match(s string) int {
	if m == nil || s == "" || !m.first[s[0]] {
		return 0
	}
	for l := min(m.maxLen, len(s)); l > 0; l-- {
		if m.set[s[:l]] {
			return l
		}
	}
	return 0
}
