package spm

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Building the precompiled character maps of the normalization rules nfkc
// and nmt_nfkc, as spm_train embeds them in a model. The rules follow
// sentencepiece's builder: every character's NFKC form, plus the sequences
// that compose to something else under NFC; nmt_nfkc also turns control
// characters into nothing and odd spaces into a space. Unicode tables come
// from golang.org/x/text (Unicode 15), so characters added to Unicode after
// the tables sentencepiece was built with may normalize differently there.

// charsRules maps a source string to its replacement.
type charsRules map[string]string

var builtinRules = struct {
	once      sync.Once
	nfkc, nmt []byte
	err       error
}{}

// builtinCharsMap returns the compiled character map of a named rule.
func builtinCharsMap(name string) ([]byte, error) {
	switch name {
	case "identity":
		return nil, nil
	case "nfkc", "nmt_nfkc":
	default:
		return nil, fmt.Errorf("--normalization_rule_name=%s is unknown: use identity, nfkc or nmt_nfkc", name)
	}
	b := &builtinRules
	b.once.Do(func() {
		nfkc := buildNFKCRules()
		if b.nfkc, b.err = compileCharsMap(nfkc); b.err != nil {
			return
		}
		b.nmt, b.err = compileCharsMap(nmtRules(nfkc))
	})
	if b.err != nil {
		return nil, b.err
	}
	if name == "nfkc" {
		return b.nfkc, nil
	}
	return b.nmt, nil
}

func isUnicodeChar(r rune) bool {
	if r >= 0xD800 && r <= 0xDFFF || r > 0x10FFFF {
		return false
	}
	return !(r >= 0xFDD0 && r <= 0xFDEF) && r&0xFFFE != 0xFFFE
}

func buildNFKCRules() charsRules {
	rules := charsRules{}
	norm2orig := map[rune][]rune{}
	decomposed := map[string]bool{}
	for r := rune(1); r <= 0x10FFFF; r++ {
		if !isUnicodeChar(r) {
			continue
		}
		s := string(r)
		if nfkc := norm.NFKC.String(s); nfkc != s {
			rules[s] = nfkc
		}
		nfkd := norm.NFKD.String(s)
		if d, n := utf8.DecodeRuneInString(nfkd); n == len(nfkd) {
			norm2orig[d] = append(norm2orig[d], r)
		} else {
			decomposed[nfkd] = true
		}
	}
	for nfkd := range decomposed {
		nfc := norm.NFC.String(nfkd)
		if nfc == nfkd {
			continue
		}
		// Every spelling that decomposes to nfkd composes to nfc.
		variants := []string{""}
		for _, c := range nfkd {
			var next []string
			for _, v := range variants {
				for _, o := range norm2orig[c] {
					next = append(next, v+string(o))
				}
			}
			variants = next
		}
		for _, v := range variants {
			if v != nfc {
				rules[v] = nfc
			}
		}
	}
	return removeRedundant(rules)
}

// nmtRules adds nmt_nfkc's treatment of spaces and control characters.
func nmtRules(nfkc charsRules) charsRules {
	rules := make(charsRules, len(nfkc)+64)
	for k, v := range nfkc {
		rules[k] = v
	}
	for _, r := range []rune{0x09, 0x0A, 0x0C, 0x0D, 0x1680, 0x200B, 0x200E, 0x200F, 0x2028, 0x2029, 0x2581, 0xFEFF, 0xFFFD, 0x200C} {
		rules[string(r)] = " "
	}
	for r := rune(1); r <= 0x1F; r++ {
		if r != 0x09 && r != 0x0A && r != 0x0C && r != 0x0D {
			rules[string(r)] = ""
		}
	}
	for _, r := range []rune{0x7F, 0x8F, 0x9F} {
		rules[string(r)] = ""
	}
	delete(rules, string(rune(0xFF5E))) // full-width tilde differs from ~ in Japanese
	return removeRedundant(rules)
}

// removeRedundant drops multi-character rules that shorter rules already imply.
func removeRedundant(rules charsRules) charsRules {
	out := charsRules{}
	byLen := map[int][]string{}
	maxLen := 0
	for k, v := range rules {
		n := utf8.RuneCountInString(k)
		if n == 1 {
			out[k] = v
			continue
		}
		byLen[n] = append(byLen[n], k)
		maxLen = max(maxLen, n)
	}
	for n := 2; n <= maxLen; n++ {
		for _, k := range byLen[n] {
			if applyRules(out, k, n-1) != rules[k] {
				out[k] = rules[k]
			}
		}
	}
	return out
}

// applyRules normalizes s greedily with the longest rule of at most maxLen characters.
func applyRules(rules charsRules, s string, maxLen int) string {
	rs := []rune(s)
	var b strings.Builder
	for i := 0; i < len(rs); {
		done := false
		for n := min(maxLen, len(rs)-i); n > 0; n-- {
			if v, ok := rules[string(rs[i:i+n])]; ok {
				b.WriteString(v)
				i += n
				done = true
				break
			}
		}
		if !done {
			b.WriteRune(rs[i])
			i++
		}
	}
	return b.String()
}

// compileCharsMap encodes rules as a precompiled_charsmap blob: the
// replacement strings, each once and NUL-terminated, and a double-array
// trie from source strings to their replacement's offset.
func compileCharsMap(rules charsRules) ([]byte, error) {
	if len(rules) == 0 {
		return nil, fmt.Errorf("no normalization rules")
	}
	targets := make([]string, 0, len(rules))
	seen := map[string]bool{}
	for _, v := range rules {
		if !seen[v] {
			seen[v] = true
			targets = append(targets, v)
		}
	}
	sort.Strings(targets)
	pos := make(map[string]uint32, len(targets))
	var blob []byte
	for _, t := range targets {
		pos[t] = uint32(len(blob))
		blob = append(append(blob, t...), 0)
	}
	keys := make([]string, 0, len(rules))
	for k := range rules {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	values := make([]uint32, len(keys))
	for i, k := range keys {
		if strings.IndexByte(k, 0) >= 0 {
			return nil, fmt.Errorf("normalization rule source %q contains NUL", k)
		}
		values[i] = pos[rules[k]]
	}
	units, err := buildDoubleArray(keys, values)
	if err != nil {
		return nil, err
	}
	out := binary.LittleEndian.AppendUint32(nil, uint32(4*len(units)))
	for _, u := range units {
		out = binary.LittleEndian.AppendUint32(out, u)
	}
	return append(out, blob...), nil
}

// buildDoubleArray lays out a byte trie of sorted, NUL-free keys in the
// double-array format that charsMap.longestMatch (and sentencepiece) read:
// a node at p has its children at p^offset^label and, when a key ends there,
// its value at p^offset.
func buildDoubleArray(keys []string, values []uint32) ([]uint32, error) {
	nodes, err := buildTrie(keys, values)
	if err != nil {
		return nil, err
	}
	return layoutDoubleArray(nodes)
}

// trieNode is a node of the byte trie buildDoubleArray lays out.
type trieNode struct {
	children []int // node indices, by label order
	label    byte
	hasValue bool
	value    uint32
}

// buildTrie makes the byte trie of sorted keys; node 0 is the root.
func buildTrie(keys []string, values []uint32) ([]trieNode, error) {
	type node = trieNode
	nodes := []node{{}}
	for i, k := range keys {
		n := 0
		for j := 0; j < len(k); j++ {
			c := k[j]
			var next int
			if ch := nodes[n].children; len(ch) > 0 && nodes[ch[len(ch)-1]].label == c {
				next = ch[len(ch)-1] // keys are sorted, so a shared prefix is the last child
			} else {
				next = len(nodes)
				nodes = append(nodes, node{label: c})
				nodes[n].children = append(nodes[n].children, next)
			}
			n = next
		}
		if nodes[n].hasValue {
			return nil, fmt.Errorf("duplicate key %q", k)
		}
		nodes[n].hasValue, nodes[n].value = true, values[i]
		if values[i] >= 1<<31 {
			return nil, fmt.Errorf("value %d too large", values[i])
		}
	}
	return nodes, nil
}

// layoutDoubleArray places each node's children at a base whose slots are
// free, breadth first.
func layoutDoubleArray(nodes []trieNode) ([]uint32, error) {
	const free = 1 << 31 // a unit no byte label matches
	units := []uint32{0}
	used := []bool{true}
	grow := func(n int) {
		if n > len(units) {
			n = max(n, len(units)+4096)
			for len(units) < n {
				units = append(units, free)
				used = append(used, false)
			}
		}
	}
	place := make([]int, len(nodes)) // position of each node
	firstFree := 1
	queue := []int{0}
	for qi := 0; qi < len(queue); qi++ {
		n := queue[qi]
		nd := &nodes[n]
		if len(nd.children) == 0 && !nd.hasValue {
			continue
		}
		// Find a base whose slots for the children (and the value) are free.
		// Search only the last few blocks, as darts-clone does: old holes
		// rarely fit, and scanning them again and again is quadratic.
		firstFree = max(firstFree, len(used)-16*256)
		for firstFree < len(used) && used[firstFree] {
			firstFree++
		}
		base := firstFree &^ 0xff
		for ; ; base++ {
			grow(base | 0xff + 1)
			// Slot base holds the node's value, or stays empty: either way no
			// other node may have this base, or a lookup from one could land
			// on the other's child with the same label.
			if used[base] {
				continue
			}
			ok := true
			for _, c := range nd.children {
				if used[base^int(nodes[c].label)] {
					ok = false
					break
				}
			}
			if ok {
				break
			}
		}
		p := place[n]
		off := p ^ base
		if off >= 1<<21 {
			return nil, fmt.Errorf("normalization trie too large")
		}
		units[p] = (units[p] &^ (0xfffffc00 | 1<<9)) | uint32(off)<<10
		used[base] = true
		if nd.hasValue {
			units[p] |= 1 << 8
			units[base] = nd.value | free
		}
		for _, c := range nd.children {
			q := base ^ int(nodes[c].label)
			used[q] = true
			place[c] = q
			units[q] = uint32(nodes[c].label)
			queue = append(queue, c)
		}
	}
	// Trailing free units are not needed.
	for len(units) > 1 && !used[len(units)-1] {
		units = units[:len(units)-1]
	}
	return slices.Clip(units), nil
}
