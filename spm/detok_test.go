package spm

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"zhllama/internal/testenv"
)

// Streaming decodes to exactly what Decode gives for the whole sequence,
// on random id sequences heavy in byte pieces, spaces and controls, and
// never hands out a split character.
func TestDetokenizerMatchesDecode(t *testing.T) {
	for _, name := range []string{"tokenizers/llama2/tokenizer.model", "tokenizers/chinese_sp/chinese_sp.model"} {
		path := testenv.Path(t, name)
		m, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewProcessor(m)
		if err != nil {
			t.Fatal(err)
		}
		var special []int
		for id := range p.Size() {
			if tp := p.Type(id); tp == Byte || tp == Control || tp == Unknown || strings.HasPrefix(p.IDToPiece(id), SpaceSymbol) {
				special = append(special, id)
			}
		}
		rng := rand.New(rand.NewPCG(1, 2))
		enc := p.Encode("你好，世界 Hello  world 🎉 ∑x²")
		for trial := range 2000 {
			n := 1 + rng.IntN(12)
			ids := make([]int, n)
			for i := range ids {
				switch rng.IntN(3) {
				case 0:
					ids[i] = special[rng.IntN(len(special))]
				case 1:
					ids[i] = rng.IntN(p.Size())
				default:
					ids[i] = enc[rng.IntN(len(enc))]
				}
			}
			if trial == 0 {
				ids = enc
			}
			want, _ := p.Decode(ids)
			d := p.NewDetokenizer()
			var got strings.Builder
			for _, id := range ids {
				s := d.Add(id)
				if !utf8.ValidString(s) {
					t.Fatalf("%s %v: piece %q is not whole UTF-8", name, ids, s)
				}
				got.WriteString(s)
			}
			got.WriteString(d.Flush())
			if got.String() != want {
				t.Fatalf("%s %v: streamed %q, Decode %q", name, ids, got.String(), want)
			}
		}
	}
}
