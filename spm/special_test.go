package spm

import (
	"slices"
	"strings"
	"testing"
)

// Written-out control pieces become their ids, each stretch of text
// between them is encoded on its own (dummy prefix included), and
// DecodeSpecial gives the text back.
func TestEncodeSpecial(t *testing.T) {
	p := sharedProcessor(t, "tokenizers/llama2/tokenizer.model")
	bos, eos := p.SpecialID("bos"), p.SpecialID("eos")
	cat := func(parts ...[]int) []int { return slices.Concat(parts...) }
	for text, want := range map[string][]int{
		"你好 world": p.Encode("你好 world"),
		"<s>[INST] 你好 [/INST] 好的</s><s>x": cat([]int{bos}, p.Encode("[INST] 你好 [/INST] 好的"), []int{eos, bos}, p.Encode("x")),
		"a</s>\n\n": cat(p.Encode("a"), []int{eos}, p.Encode("\n\n")),
		"<s></s>":   {bos, eos},
		"<unk> <s":  p.Encode("<unk> <s"), // unknown and partial pieces stay text
		"":          nil,
	} {
		got := p.EncodeSpecial(text)
		if !slices.Equal(got, want) {
			t.Errorf("%q: got %v, want %v", text, got, want)
		}
	}
	for _, text := range []string{"<s>[INST] 你好 [/INST] 你好！</s><s>[INST] hi [/INST]", "plain", "</s></s>", "", "a<s>"} {
		ids := p.EncodeSpecial(text)
		if back, err := p.DecodeSpecial(ids); err != nil || back != text {
			t.Errorf("%q → %v → %q (%v)", text, ids, back, err)
		}
	}
	for _, bad := range [][]int{{1, -3}, {p.Size()}} {
		if _, err := p.DecodeSpecial(bad); err == nil || !strings.Contains(err.Error(), "invalid id") {
			t.Errorf("%v: %v", bad, err)
		}
	}
}
