package corpus

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/internal/testenv/spmtest"
	"zhllama/spm"
)

func packInputs(t *testing.T) []string {
	return []string{testenv.Path(t, "pretrain/medical_corpus.txt"), testenv.Path(t, "pretrain/c4_demo.jsonl")}
}

// expectedStream is every document as [BOS] ids [EOS], in order.
func expectedStream(t *testing.T, p *spm.Processor, inputs []string) []int32 {
	var out []int32
	for _, in := range inputs {
		_, err := Read(in, ReadOptions{}, func(r Record, l Location) error {
			text, err := DocumentText(r)
			if err != nil {
				return err
			}
			out = append(out, int32(p.SpecialID("bos")))
			for _, id := range p.Encode(text) {
				out = append(out, int32(id))
			}
			out = append(out, int32(p.SpecialID("eos")))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestPackBlocksAreTheTokenStream(t *testing.T) {
	const tokRel = "tokenizers/chinese-llama2/tokenizer.model"
	tok := testenv.Path(t, tokRel)
	inputs := packInputs(t)
	dir := t.TempDir()
	idx, err := Pack(PackOptions{Tokenizer: tok, Inputs: inputs, OutputDir: dir, CutoffLen: 128, ShardTokens: 5000, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := expectedStream(t, spmtest.Processor(t, tokRel), inputs)
	if idx.Tokens != idx.Blocks*128 || idx.Tokens+idx.DroppedTokens != int64(len(want)) || idx.DType != "uint16" || !idx.Complete {
		t.Fatalf("index %+v for a stream of %d tokens", idx, len(want))
	}
	if len(idx.Shards) < 3 {
		t.Errorf("%d shards, expected several of 39 blocks", len(idx.Shards))
	}
	for i := int64(0); i < idx.Blocks; i++ {
		b, err := ReadBlock(dir, idx, i)
		if err != nil {
			t.Fatal(err)
		}
		for k, id := range b {
			if id != want[i*128+int64(k)] {
				t.Fatalf("block %d token %d = %d, want %d", i, k, id, want[i*128+int64(k)])
			}
		}
	}
	if _, err := ReadBlock(dir, idx, idx.Blocks); err == nil {
		t.Error("reading past the last block succeeded")
	}
	// The memory-mapped reader training uses gives the same blocks.
	pk, err := OpenPacked(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer pk.Close()
	buf := make([]int32, 128)
	for i := int64(0); i < pk.Blocks(); i++ {
		b, err := pk.Block(i, buf)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b, want[i*128:(i+1)*128]) {
			t.Fatalf("mapped block %d differs", i)
		}
	}
	if _, err := pk.Block(pk.Blocks(), buf); err == nil {
		t.Error("mapped read past the end succeeded")
	}
	if _, err := Pack(PackOptions{Tokenizer: tok, Inputs: inputs, OutputDir: dir, CutoffLen: 128}); err == nil || !strings.Contains(err.Error(), "complete") {
		t.Errorf("packing into a complete directory: %v", err)
	}
}

func dirFiles(t *testing.T, dir string) map[string][]byte {
	files := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// An interrupted pack resumed with the same options gives the same files
// as one that ran through; so does another thread count.
func TestPackResumesExactly(t *testing.T) {
	tok := testenv.Path(t, "tokenizers/llama2/tokenizer.model")
	inputs := packInputs(t)
	whole, cut, threads := t.TempDir(), t.TempDir(), t.TempDir()
	opts := PackOptions{Tokenizer: tok, Inputs: inputs, CutoffLen: 100, ShardTokens: 3000, Threads: 2}
	o := opts
	o.OutputDir = whole
	if _, err := Pack(o); err != nil {
		t.Fatal(err)
	}
	o.OutputDir, o.stopAfterShards = cut, 2
	idx, err := Pack(o)
	if err != nil || idx.Complete || len(idx.Shards) != 2 {
		t.Fatalf("interrupted run: %+v %v", idx, err)
	}
	if _, err := OpenPacked(cut); err == nil || !strings.Contains(err.Error(), "unfinished") {
		t.Errorf("opening an unfinished pack: %v", err)
	}
	bad := o
	bad.CutoffLen = 99
	bad.stopAfterShards = 0
	if _, err := Pack(bad); err == nil || !strings.Contains(err.Error(), "unfinished") || !strings.Contains(err.Error(), "cutoff_len 100, not 99") {
		t.Errorf("resuming with other options: %v", err)
	}
	// Documents as paragraphs or lines make other streams: never mixed.
	bad = o
	bad.Paragraphs, bad.stopAfterShards = true, 0
	if _, err := Pack(bad); err == nil || !strings.Contains(err.Error(), "paragraphs false, not true") {
		t.Errorf("resuming with paragraphs: %v", err)
	}
	o.stopAfterShards = 0
	var log bytes.Buffer
	o.Log = &log
	if _, err := Pack(o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "resuming after") {
		t.Errorf("log: %s", log.String())
	}
	o.OutputDir, o.Threads, o.Log = threads, 3, nil
	if _, err := Pack(o); err != nil {
		t.Fatal(err)
	}
	a, b, c := dirFiles(t, whole), dirFiles(t, cut), dirFiles(t, threads)
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Errorf("%s differs after resuming", name)
		}
		if !bytes.Equal(data, c[name]) {
			t.Errorf("%s differs with 3 threads", name)
		}
	}
	if len(a) != len(b) || len(a) != len(c) {
		t.Errorf("file sets differ: %d, %d, %d", len(a), len(b), len(c))
	}
}

func TestPackErrors(t *testing.T) {
	tok := testenv.Path(t, "tokenizers/llama2/tokenizer.model")
	_, err := Pack(PackOptions{Tokenizer: tok, Inputs: []string{testenv.Path(t, "sft/alpaca_zh_demo.json")}, OutputDir: t.TempDir(), CutoffLen: 64})
	if err == nil || !strings.Contains(err.Error(), "alpaca_zh_demo.json:2") || !strings.Contains(err.Error(), "SFT") {
		t.Errorf("alpaca input: %v", err)
	}
	tiny := write(t, t.TempDir(), "tiny.txt", "hello\n")
	out := t.TempDir()
	if _, err := Pack(PackOptions{Tokenizer: tok, Inputs: []string{tiny}, OutputDir: out, CutoffLen: 64}); err == nil || !strings.Contains(err.Error(), "fewer than one block") {
		t.Errorf("tiny input: %v", err)
	}
	// The failed pack claims nothing: the same folder takes a real one.
	if _, err := os.Stat(filepath.Join(out, "index.json")); !os.IsNotExist(err) {
		t.Errorf("an empty pack left index.json: %v", err)
	}
	if _, err := Pack(PackOptions{Tokenizer: tok, Inputs: packInputs(t), OutputDir: out, CutoffLen: 64}); err != nil {
		t.Errorf("packing into the folder of an empty pack: %v", err)
	}
	if _, err := Pack(PackOptions{Tokenizer: tok, Inputs: []string{tiny}, OutputDir: t.TempDir(), CutoffLen: 0}); err == nil {
		t.Error("cutoff 0 accepted")
	}
}

// An input edited between a run and its resumption is noticed: resuming by
// document count would mix the old text with the new.
func TestPackResumeSeesEditedInput(t *testing.T) {
	tok := testenv.Path(t, "tokenizers/llama2/tokenizer.model")
	text, err := os.ReadFile(testenv.Path(t, "pretrain/medical_corpus.txt"))
	if err != nil {
		t.Fatal(err)
	}
	in := write(t, t.TempDir(), "in.txt", string(text))
	o := PackOptions{Tokenizer: tok, Inputs: []string{in}, OutputDir: t.TempDir(), CutoffLen: 100, ShardTokens: 3000, stopAfterShards: 1}
	if _, err := Pack(o); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Dir(in), "in.txt", "一行新的文字\n"+string(text))
	o.stopAfterShards = 0
	if _, err := Pack(o); err == nil || !strings.Contains(err.Error(), "in.txt changed") {
		t.Errorf("resuming after an edit: %v", err)
	}
}
