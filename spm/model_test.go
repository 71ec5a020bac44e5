package spm

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zhllama/internal/testenv"
)

func TestModelRoundTripIsExact(t *testing.T) {
	for _, rel := range sharedModels {
		b, err := os.ReadFile(testenv.Path(t, rel))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if out := m.Marshal(); !bytes.Equal(out, b) {
			t.Errorf("%s: re-encoded model differs (%d bytes, want %d)", rel, len(out), len(b))
		}
		if out := m.Clone().Marshal(); !bytes.Equal(out, b) {
			t.Errorf("%s: clone re-encodes differently", rel)
		}
	}
}

func TestUnknownFieldsSurvive(t *testing.T) {
	b, err := os.ReadFile(testenv.Path(t, "tokenizers/sentencepiece-tests/test_model.model"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	// An extension field in the trainer spec, one in a piece, one at top level.
	m.Trainer.f = append(m.Trainer.f, field{num: 200, wire: wireBytes, data: []byte("x")})
	m.Pieces[5].extra = append(m.Pieces[5].extra, field{num: 201, wire: wireVarint, val: 7})
	m.top = append(m.top, field{num: 300, wire: wireFixed64, val: 42})
	m2, err := Parse(m.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Trainer.String(200, ""); got != "x" {
		t.Errorf("trainer extension = %q", got)
	}
	if len(m2.Pieces[5].extra) != 1 || m2.Pieces[5].extra[0].val != 7 {
		t.Errorf("piece extension lost: %+v", m2.Pieces[5].extra)
	}
	if f, ok := m2.top.last(300); !ok || f.val != 42 {
		t.Error("top-level unknown field lost")
	}
	if !bytes.Equal(m2.Marshal(), m.Marshal()) {
		t.Error("second round trip differs")
	}
}

func TestSpecSetters(t *testing.T) {
	var s Spec
	s.SetInt(TrVocabSize, 100)
	s.SetString(TrModelPrefix, "m")
	s.SetBool(TrByteFallback, true)
	s.SetFloat(TrCharacterCoverage, 0.5)
	s.SetInt(TrPadID, -1)
	s.SetStrings(TrUserDefinedSymbols, []string{"a", "b", "c"})
	s.SetInt(TrVocabSize, 200)
	if s.Int(TrVocabSize, 0) != 200 || s.String(TrModelPrefix, "") != "m" || !s.Bool(TrByteFallback, false) ||
		s.Float(TrCharacterCoverage, 0) != 0.5 || s.Int(TrPadID, 0) != -1 {
		t.Fatalf("spec values wrong: %+v", s)
	}
	if got := strings.Join(s.Strings(TrUserDefinedSymbols), ","); got != "a,b,c" {
		t.Errorf("repeated = %q", got)
	}
	for i := 1; i < len(s.f); i++ {
		if s.f[i].num < s.f[i-1].num {
			t.Errorf("fields out of order: %d after %d", s.f[i].num, s.f[i-1].num)
		}
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	good, err := os.ReadFile(testenv.Path(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	dup, _ := Parse(good)
	dup.Pieces[400].Piece = dup.Pieces[300].Piece
	noUnk, _ := Parse(good)
	noUnk.Pieces[0].Type = Control
	cases := map[string]struct {
		data []byte
		want string
	}{
		"truncated":  {good[:len(good)/2], "truncated"},
		"text":       {[]byte("this is not a model, just some text\n"), "not"},
		"empty":      {nil, "no pieces"},
		"duplicate":  {dup.Marshal(), "defined twice"},
		"no unknown": {noUnk.Marshal(), "UNKNOWN"},
	}
	dir := t.TempDir()
	for name, c := range cases {
		path := filepath.Join(dir, name+".model")
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil {
			t.Errorf("%s: loaded without error", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q should name the file and say %q", name, err, c.want)
		}
	}
}

func TestSaveIsAtomic(t *testing.T) {
	m, err := Load(testenv.Path(t, "tokenizers/sentencepiece-tests/test_model.model"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "out.model")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := m.Save(filepath.Join(dir, "missing", "out.model")); err == nil {
		t.Error("saving into a missing directory succeeded")
	}
}
