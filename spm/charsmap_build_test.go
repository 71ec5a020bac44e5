package spm

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"zhllama/internal/testenv"
)

func TestDoubleArrayFindsLongestKey(t *testing.T) {
	rules := charsRules{"a": "A", "ab": "X", "abc": "", "b": "bb", "日本": "にほん", "\u00e9": "e\u0301"}
	blob, err := compileCharsMap(rules)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := parseCharsMap(blob)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in   string
		n    int
		repl string
	}{{"abcd", 3, ""}, {"abd", 2, "X"}, {"a", 1, "A"}, {"ba", 1, "bb"}, {"c", 0, ""}, {"日本語", 6, "にほん"}, {"日", 0, ""}, {"\u00e9t\u00e9", 2, "e\u0301"}, {"a\x00b", 1, "A"}, {"\x00", 0, ""}} {
		n, r := cm.longestMatch(c.in)
		if n != c.n || r != c.repl {
			t.Errorf("longestMatch(%q) = %d %q, want %d %q", c.in, n, r, c.n, c.repl)
		}
	}
}

// decompiled reads the rules of a named builtin map from spm_normalize.
func decompiled(t *testing.T, name string) map[string]string {
	bin := testenv.Tool(t, "spm_normalize", "sentencepiece")
	out, err := exec.Command(bin, "--normalization_rule_name", name, "--decompile").Output()
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) < 2 {
			continue
		}
		parse := func(hex string) string {
			var b strings.Builder
			for _, h := range strings.Fields(hex) {
				var r rune
				fmt.Sscanf(h, "%X", &r)
				b.WriteRune(r)
			}
			return b.String()
		}
		rules[parse(fields[0])] = parse(fields[1])
	}
	return rules
}

// Our nfkc and nmt_nfkc rules against sentencepiece's builtin ones: the same
// rules but for characters whose Unicode data changed between the versions
// the two were built from.
func TestBuiltinRulesAgreeWithSentencepiece(t *testing.T) {
	start := time.Now()
	nfkc := buildNFKCRules()
	nmt := nmtRules(nfkc)
	t.Logf("built rules in %v: nfkc %d, nmt_nfkc %d", time.Since(start), len(nfkc), len(nmt))
	for name, ours := range map[string]charsRules{"nfkc": nfkc, "nmt_nfkc": nmt} {
		ref := decompiled(t, name)
		var missing, extra, differ []string
		for k, v := range ref {
			if o, ok := ours[k]; !ok {
				missing = append(missing, fmt.Sprintf("%+q->%+q", k, v))
			} else if o != v {
				differ = append(differ, fmt.Sprintf("%+q->%+q (ours %+q)", k, v, o))
			}
		}
		for k, v := range ours {
			if _, ok := ref[k]; !ok {
				extra = append(extra, fmt.Sprintf("%+q->%+q", k, v))
			}
		}
		sort.Strings(missing)
		sort.Strings(extra)
		sort.Strings(differ)
		t.Logf("%s: %d rules in sentencepiece, %d ours; %d missing, %d extra, %d differ", name, len(ref), len(ours), len(missing), len(extra), len(differ))
		if len(missing)+len(differ) > 0 {
			t.Errorf("%s: rules missing %v, differing %v", name, missing[:min(len(missing), 10)], differ[:min(len(differ), 10)])
		}
		// Our extra rules start with characters sentencepiece's tables leave
		// alone (added to Unicode after them): it does not change them.
		var keys []string
		for k := range ours {
			if _, ok := ref[k]; !ok {
				r, _ := utf8.DecodeRuneInString(k)
				keys = append(keys, string(r))
			}
		}
		bin := testenv.Tool(t, "spm_normalize", "sentencepiece")
		got := runLines(t, bin, keys, "--normalization_rule_name", name, "--remove_extra_whitespaces=false")
		for i, k := range keys {
			if got[i] != k {
				t.Errorf("%s: an extra rule starts with %+q, which sentencepiece normalizes to %+q", name, k, got[i])
			}
		}
		if len(extra) > 400 {
			t.Errorf("%s: %d extra rules, expected a few hundred at most", name, len(extra))
		}
	}
}
