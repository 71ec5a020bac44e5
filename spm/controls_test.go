package spm

import (
	"slices"
	"testing"

	"zhllama/internal/testenv"
)

// Text with <s> and </s> written in it reads back as those ids, the text
// between them encoded as Encode does, and decodes to the same text.
func TestControlsRoundTrip(t *testing.T) {
	p, err := LoadProcessor(testenv.Path(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"<s>[INST] 你好 [/INST] 你好！</s><s>[INST] hi [/INST]", "plain", "</s></s>", "", "a<s>"} {
		ids := p.EncodeWithControls(text)
		back, err := p.DecodeWithControls(ids)
		if err != nil || back != text {
			t.Errorf("%q → %v → %q (%v)", text, ids, back, err)
		}
	}
	want := []int32{1}
	for _, id := range p.Encode("你好") {
		want = append(want, int32(id))
	}
	if got := p.EncodeWithControls("<s>你好"); !slices.Equal(got, append(want, 2)[:len(want)]) {
		t.Errorf("<s>你好: %v, want %v", got, want)
	}
	if _, err := p.DecodeWithControls([]int32{1, -3}); err == nil {
		t.Error("an invalid id decoded")
	}
}
