package spm

import (
	"path/filepath"
	"testing"

	"zhllama/internal/testdata"
)

func loadShared(t *testing.T, rel string) *Model {
	t.Helper()
	m, err := Load(testdata.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMergeLlama2ChineseSP(t *testing.T) {
	base := loadShared(t, "tokenizers/llama2/tokenizer.model")
	zh := loadShared(t, "tokenizers/chinese_sp/chinese_sp.model")
	m, rep, err := Merge(base, []*Model{zh}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Pieces) != 49953 || rep.MergedSize != 49953 {
		t.Fatalf("merged size %d, want 49953", len(m.Pieces))
	}
	if rep.Added[0]+rep.Skipped[0] != len(zh.Pieces) || rep.Added[0] != 49953-32000 {
		t.Errorf("report %+v", rep)
	}
	for i := range base.Pieces {
		a, b := m.Pieces[i], base.Pieces[i]
		if a.Piece != b.Piece || a.Score != b.Score || a.Type != b.Type {
			t.Fatalf("base piece %d changed", i)
		}
	}
	if string(m.Normalizer.f.appendTo(nil)) != string(base.Normalizer.f.appendTo(nil)) ||
		string(m.Trainer.f.appendTo(nil)) != string(base.Trainer.f.appendTo(nil)) {
		t.Error("base specs not kept")
	}
	if _, err := NewProcessor(m); err != nil {
		t.Fatal(err)
	}
}

// Merging LLaMA-2 with Chinese-LLaMA-2's own tokenizer and a <pad> gives back
// exactly Chinese-LLaMA-2's vocabulary: its pad sits at 32000, then the
// Chinese pieces in order.
func TestMergeReproducesChineseLlama2(t *testing.T) {
	base := loadShared(t, "tokenizers/llama2/tokenizer.model")
	ref := loadShared(t, "tokenizers/chinese-llama2/tokenizer.model")
	m, rep, err := Merge(base, []*Model{ref}, "<pad>")
	if err != nil {
		t.Fatal(err)
	}
	if rep.PadID != 32000 || len(m.Pieces) != len(ref.Pieces) {
		t.Fatalf("pad %d, size %d; want 32000, %d", rep.PadID, len(m.Pieces), len(ref.Pieces))
	}
	for i := range ref.Pieces {
		a, b := m.Pieces[i], ref.Pieces[i]
		if a.Piece != b.Piece || a.Score != b.Score || a.Type != b.Type {
			t.Fatalf("piece %d = %+v, want %+v", i, a, b)
		}
	}
}

// sentencepiece loads the merged model and encodes with it as we do.
func TestMergedModelParity(t *testing.T) {
	base := loadShared(t, "tokenizers/llama2/tokenizer.model")
	zh := loadShared(t, "tokenizers/chinese_sp/chinese_sp.model")
	m, _, err := Merge(base, []*Model{zh}, "<pad>")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "merged.model")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	p, err := NewProcessor(m)
	if err != nil {
		t.Fatal(err)
	}
	lines := corpusLines(t, 1<<20)
	lines = lines[len(lines)-40000:]
	want := spmEncode(t, path, "id", lines)
	bad := 0
	var s Scratch
	for i, line := range lines {
		if got := formatIDs(p.AppendIDs(nil, line, &s)); got != want[i] {
			if bad++; bad <= 3 {
				t.Errorf("line %q:\n got %s\nwant %s", trunc(line), trunc(got), trunc(want[i]))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d lines differ", bad, len(lines))
	}
}
