package corpus

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"

	"zhllama/internal/testenv"
)

// The readers of outside files (JSON arrays, JSON Lines, text) never
// panic or hang: bad bytes are an error or a skipped record. Seeds are the
// shared data files' beginnings.
func FuzzReaders(f *testing.F) {
	for _, rel := range []string{"sft/alpaca_zh_demo.json", "sft/sharegpt_zh_1K_format.jsonl", "pretrain/c4_demo.jsonl",
		"pretrain/wiki_demo.txt", "preference/dpo_zh_demo.json", "sft/dataset_info.json"} {
		b, err := os.ReadFile(testenv.Path(f, rel))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 1024)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fn := func(rec Record, loc Location) error {
			DocumentText(rec)
			return nil
		}
		bad := func(Location, error) error { return nil }
		br := func() *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }
		readJSONArray("in.json", br(), fn, bad)
		readJSONL("in.jsonl", br(), fn, bad)
		readText("in.txt", br(), false, fn)
		readText("in.txt", br(), true, fn)
	})
}

// A Parquet file, damaged in any way, is an error, never a crash: the
// library's panics are turned into errors naming the file.
func FuzzParquet(f *testing.F) {
	var pq bytes.Buffer
	if err := parquet.Write(&pq, []pqRow{{Text: "第一行", Conversations: []pqTurn{{"human", "问"}, {"gpt", "答"}}}, {Text: "second"}}); err != nil {
		f.Fatal(err)
	}
	f.Add(pq.Bytes())
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "in.parquet")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		readParquet(path, func(rec Record, loc Location) error { return nil })
	})
}
