package corpus

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"
)

type pqTurn struct {
	From  string `parquet:"from"`
	Value string `parquet:"value"`
}

type pqRow struct {
	Text          string   `parquet:"text"`
	Conversations []pqTurn `parquet:"conversations,list"`
}

func TestReadParquet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "train-00000-of-00001.parquet")
	rows := []pqRow{
		{Text: "第一行", Conversations: []pqTurn{{"human", "问"}, {"gpt", "答"}}},
		{Text: "second", Conversations: nil},
	}
	for i := 0; i < 600; i++ {
		rows = append(rows, pqRow{Text: "row"})
	}
	if err := parquet.WriteFile(path, rows); err != nil {
		t.Fatal(err)
	}
	s, n, err := readAll(t, path, ReadOptions{})
	if err != nil || n != 0 || len(s.recs) != len(rows) {
		t.Fatalf("%d records, %v", len(s.recs), err)
	}
	if s.recs[0]["text"] != "第一行" || s.recs[1]["text"] != "second" || s.locs[601].Line != 602 {
		t.Errorf("records %v %v", s.recs[:2], s.locs[601])
	}
	conv, ok := s.recs[0]["conversations"].([]any)
	if !ok || len(conv) != 2 {
		t.Fatalf("conversations = %#v", s.recs[0]["conversations"])
	}
	if m, ok := conv[1].(map[string]any); !ok || m["from"] != "gpt" || m["value"] != "答" {
		t.Errorf("turn = %#v", conv[1])
	}
	bad := filepath.Join(t.TempDir(), "bad.parquet")
	os.WriteFile(bad, []byte("not parquet at all"), 0o644)
	if _, _, err := readAll(t, bad, ReadOptions{}); err == nil {
		t.Error("a broken Parquet file was read")
	}
}
