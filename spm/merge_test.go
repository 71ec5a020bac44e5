package spm

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"zhllama/internal/testenv"
)

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
	var s Scratch
	compareLines(t, lines, want, func(i int) string { return formatIDs(p.AppendIDs(nil, lines[i], &s)) })
}

// python3-sentencepiece, which Hugging Face's LlamaTokenizer loads
// tokenizer.model with, reads the merged model and encodes as we do.
func TestMergedModelLoadsInPythonSentencepiece(t *testing.T) {
	py := testenv.Tool(t, "/usr/bin/python3", "python3")
	if err := exec.Command(py, "-c", "import sentencepiece").Run(); err != nil {
		testenv.Need(t, "python3-sentencepiece", "install Debian's python3-sentencepiece (apt-get install python3-sentencepiece)")
	}
	base := loadShared(t, "tokenizers/llama2/tokenizer.model")
	zh := loadShared(t, "tokenizers/chinese_sp/chinese_sp.model")
	m, _, err := Merge(base, []*Model{zh}, "<pad>")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.model")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	p, err := NewProcessor(m)
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{"你好，世界！今天天气很好。", "Chinese-LLaMA-2 扩充了词表 with 49954 pieces", "  多个  空格\t和制表符 ", "😀 emoji 与 <pad> 字面"}
	script := `import sentencepiece as spm, sys, json
sp = spm.SentencePieceProcessor()
sp.Load(sys.argv[1])
print(json.dumps({"size": sp.GetPieceSize(), "pad": sp.PieceToId("<pad>"), "ids": [sp.EncodeAsIds(l) for l in json.loads(sys.argv[2])]}))`
	arg, err := json.Marshal(lines)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", script, path, string(arg)).Output()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Size, Pad int
		IDs       [][]int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Size != 49954 || got.Pad != 32000 {
		t.Errorf("python sentencepiece sees %d pieces, <pad> at %d", got.Size, got.Pad)
	}
	for i, l := range lines {
		if formatIDs(got.IDs[i]) != formatIDs(p.Encode(l)) {
			t.Errorf("%q: python %v, zhllama %v", l, got.IDs[i], p.Encode(l))
		}
	}
}
