package spm

import (
	"path/filepath"
	"testing"

	"zhllama/internal/testenv"
)

func identitySpec(dummy, removeExtra, escape bool) *Spec {
	s := &Spec{}
	s.SetString(NormName, "identity")
	s.SetBool(NormAddDummyPrefix, dummy)
	s.SetBool(NormRemoveExtraWhitespaces, removeExtra)
	s.SetBool(NormEscapeWhitespaces, escape)
	return s
}

func TestNormalizerRules(t *testing.T) {
	cases := []struct {
		name                       string
		dummy, removeExtra, escape bool
		suffix                     bool
		user                       []string
		in, want                   string
	}{
		{"defaults", true, true, true, false, nil, "  hello   world  ", "▁hello▁world"},
		{"no dummy prefix", false, true, true, false, nil, "hello world", "hello▁world"},
		{"keep extra spaces", true, false, true, false, nil, "  a  b ", "▁▁▁a▁▁b▁"},
		{"no escaping", true, true, false, false, nil, " a  b ", " a b"},
		{"no escaping, keep spaces", false, false, false, false, nil, " a  b ", " a  b "},
		{"whitespace as suffix", true, true, true, true, nil, " a b ", "a▁b▁"},
		{"only spaces", true, true, true, false, nil, "    ", ""},
		{"only spaces kept", true, false, true, false, nil, "  ", "▁▁▁"},
		{"empty", true, false, true, false, nil, "", ""},
		{"tabs are not spaces", true, true, true, false, nil, "\ta\t", "▁\ta\t"},
		{"invalid utf-8 becomes U+FFFD per byte", true, true, true, false, nil, "a\xff\xfeb", "▁a\uFFFD\uFFFDb"},
		{"truncated sequence", true, true, true, false, nil, "\xe4\xb8", "▁\uFFFD\uFFFD"},
		{"user symbols untouched", true, true, true, false, []string{"<sep>", "<se"}, "x<sep>y", "▁x<sep>y"},
	}
	for _, c := range cases {
		n, err := newNormalizer(identitySpec(c.dummy, c.removeExtra, c.escape), c.suffix, newPrefixMatcher(c.user))
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Normalize(c.in); got != c.want {
			t.Errorf("%s: Normalize(%q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

// The precompiled charsmaps of the shared models (nmt_nfkc in chinese_sp and
// sentencepiece's test models) normalize as spm_normalize does.
func TestNormalizeParityWithSentencepiece(t *testing.T) {
	bin := testenv.Tool(t, "spm_normalize", "sentencepiece")
	lines := corpusLines(t, 256<<10)
	for _, rel := range sharedModels {
		t.Run(filepath.Base(rel), func(t *testing.T) {
			path := testenv.Path(t, rel)
			p := sharedProcessor(t, rel)
			want := runLines(t, bin, lines, "--model", path, "--use_internal_normalization")
			compareLines(t, lines, want, func(i int) string { return p.Normalizer().Normalize(lines[i]) })
		})
	}
}

// The nfkc and nmt_nfkc maps zhllama compiles for training normalize text
// as sentencepiece's builtin ones do.
func TestCompiledRulesNormalizeLikeSentencepiece(t *testing.T) {
	bin := testenv.Tool(t, "spm_normalize", "sentencepiece")
	lines := corpusLines(t, 256<<10)
	for _, name := range []string{"nfkc", "nmt_nfkc"} {
		cm, err := builtinCharsMap(name)
		if err != nil {
			t.Fatal(err)
		}
		spec := identitySpec(true, true, true)
		spec.SetString(NormName, name)
		spec.SetString(NormPrecompiledCharsmap, string(cm))
		n, err := newNormalizer(spec, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := runLines(t, bin, lines, "--normalization_rule_name", name, "--use_internal_normalization")
		compareLines(t, lines, want, func(i int) string { return n.Normalize(lines[i]) })
	}
}
