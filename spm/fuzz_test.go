package spm

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"zhllama/internal/testenv"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x05, 0x0a, 0x03, 'a', 'b', 'c'})
	f.Add([]byte{0x0a, 0x80})
	f.Add([]byte{0x1a, 0x02, 0x08, 0x01, 0x0a, 0x07, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02})
	if b, err := os.ReadFile(testenv.Path(f, "tokenizers/sentencepiece-tests/test_model.model")); err == nil {
		f.Add(b[:4096])
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		out := m.Marshal()
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of marshalled model: %v", err)
		}
		if !bytes.Equal(m2.Marshal(), out) {
			t.Fatal("marshal is not stable")
		}
		if m.Validate() != nil {
			return
		}
		p, err := NewProcessor(m)
		if err != nil {
			return
		}
		for _, s := range []string{"", "hello world", "  中文 \t x", "\xff\xfe", string(data[:min(len(data), 64)])} {
			ids := p.Encode(s)
			for _, id := range ids {
				if id < 0 || id >= p.Size() {
					t.Fatalf("id %d out of range", id)
				}
			}
			if _, err := p.Decode(ids); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func fuzzEncoder(f *testing.F, rel string, roundTrip bool) {
	for _, s := range hostileLines() {
		if len(s) < 2000 {
			f.Add(s)
		}
	}
	f.Add("The quick brown fox 跳过了懒狗 12345")
	p := sharedProcessor(f, rel)
	f.Fuzz(func(t *testing.T, s string) {
		ids := p.Encode(s)
		for _, id := range ids {
			if id < 0 || id >= p.Size() {
				t.Fatalf("id %d out of range", id)
			}
		}
		if again := p.Encode(s); formatIDs(again) != formatIDs(ids) {
			t.Fatal("encoding is not deterministic")
		}
		if len(p.EncodePieces(s)) != len(ids) {
			t.Fatal("pieces and ids disagree in number")
		}
		dec, err := p.Decode(ids)
		if err != nil {
			t.Fatal(err)
		}
		if roundTrip && utf8.ValidString(s) && !strings.Contains(s, SpaceSymbol) && dec != s {
			t.Fatalf("decode(encode(%q)) = %q", s, dec)
		}
	})
}

// LLaMA's BPE with identity normalization and byte fallback gives back any
// valid UTF-8 text.
func FuzzEncodeBPE(f *testing.F) { fuzzEncoder(f, "tokenizers/llama2/tokenizer.model", true) }

func FuzzEncodeUnigram(f *testing.F) { fuzzEncoder(f, "tokenizers/chinese_sp/chinese_sp.model", false) }
