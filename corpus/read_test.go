package corpus

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/text/encoding/simplifiedchinese"

	"zhllama/internal/testenv"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	data := []byte(content)
	switch {
	case strings.HasSuffix(name, ".gz"):
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		zw.Close()
		data = b.Bytes()
	case strings.HasSuffix(name, ".zst"):
		zw, _ := zstd.NewWriter(nil)
		data = zw.EncodeAll(data, nil)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type seen struct {
	recs []Record
	locs []Location
}

func readAll(t *testing.T, path string, o ReadOptions) (seen, int, error) {
	var s seen
	n, err := Read(path, o, func(r Record, l Location) error {
		s.recs = append(s.recs, r)
		s.locs = append(s.locs, l)
		return nil
	})
	return s, n, err
}

func TestReadFormats(t *testing.T) {
	dir := t.TempDir()
	arr := write(t, dir, "a.json", "[\n  {\"text\": \"one\"},\n  {\"text\":\n \"two\"},\n  3,\n  {\"text\": \"four\"}\n]\n")
	s, n, err := readAll(t, arr, ReadOptions{})
	if err != nil || n != 1 || len(s.recs) != 3 {
		t.Fatalf("array: %d records, %d skipped, %v", len(s.recs), n, err)
	}
	if s.locs[1].Line != 3 || s.locs[2].Line != 6 || s.locs[2].Item != 3 {
		t.Errorf("array locations %+v", s.locs)
	}
	jl := write(t, dir, "b.jsonl.gz", "{\"text\":\"x\"}\n\nnot json\n{\"text\":\"y\"}\n[1]\n{\"text\":\""+strings.Repeat("z", 200000)+"\"}")
	var bad []string
	s, n, err = readAll(t, jl, ReadOptions{Bad: func(l Location, e error) { bad = append(bad, l.String()) }})
	if err != nil || n != 2 || len(s.recs) != 3 || len(s.recs[2]["text"].(string)) != 200000 {
		t.Fatalf("jsonl: %d records, %d skipped, %v", len(s.recs), n, err)
	}
	if strings.Join(bad, ",") != jl+":3,"+jl+":5" {
		t.Errorf("bad lines reported as %v", bad)
	}
	if _, _, err := readAll(t, jl, ReadOptions{Strict: true}); err == nil || !strings.Contains(err.Error(), jl+":3") {
		t.Errorf("strict: %v", err)
	}
	zs := write(t, dir, "e.jsonl.zst", "{\"text\":\"zstd works\"}\n")
	s, _, err = readAll(t, zs, ReadOptions{})
	if err != nil || len(s.recs) != 1 || s.recs[0]["text"] != "zstd works" {
		t.Errorf("zstd: %v %v", s.recs, err)
	}
	txt := write(t, dir, "c.txt", "line one\r\n\nline two\n  \npara end\n")
	s, _, _ = readAll(t, txt, ReadOptions{})
	if len(s.recs) != 4 || s.recs[0]["text"] != "line one" || s.locs[1].Line != 3 {
		t.Errorf("text lines: %v %v", s.recs, s.locs)
	}
	s, _, _ = readAll(t, txt, ReadOptions{Paragraphs: true})
	if len(s.recs) != 3 || s.recs[1]["text"] != "line two" || s.recs[2]["text"] != "para end" {
		t.Errorf("paragraphs: %v", s.recs)
	}
	if _, _, err := readAll(t, write(t, dir, "d.json", "[{\"a\": 1}, {broken"), ReadOptions{}); err == nil || !strings.Contains(err.Error(), "d.json:1") {
		t.Errorf("broken array: %v", err)
	}
}

func TestReadSharedData(t *testing.T) {
	for rel, want := range map[string]int{
		"sft/alpaca_zh_demo.json":          1000,
		"pretrain/c4_demo.jsonl":           300,
		"sft/sharegpt_zh_1K_format.jsonl":  1000,
		"preference/dpo_zh_500.jsonl":      500,
		"pretrain/medical_corpus.txt":      -1,
		"corpus/chinese_poetry_all.txt.gz": -1,
	} {
		path := testenv.Path(t, rel)
		count := 0
		n, err := Read(path, ReadOptions{Paragraphs: strings.Contains(rel, "poetry")}, func(r Record, l Location) error {
			count++
			if strings.Contains(rel, "poetry") && count == 1000 {
				return ErrStop
			}
			return nil
		})
		if err != nil || n != 0 {
			t.Errorf("%s: %v, %d skipped", rel, err, n)
		}
		if want > 0 && count != want {
			t.Errorf("%s: %d records, want %d", rel, count, want)
		}
	}
}

func TestDocumentText(t *testing.T) {
	for _, c := range []struct {
		rec  Record
		text string
		err  string
	}{
		{Record{"text": "a"}, "a", ""},
		{Record{"completion": "b", "source": "wiki"}, "b", ""},
		{Record{"content": "c"}, "c", ""},
		{Record{"text": 3.0}, "", "not a string"},
		{Record{"instruction": "i", "input": "", "output": "o"}, "", "alpaca"},
		{Record{"conversations": []any{}}, "", "multi-turn"},
		{Record{"question": "q", "response_chosen": "a", "response_rejected": "b"}, "", "preference"},
		{Record{"title": "t"}, "", "fields title"},
		{Record{"title": "长城", "summary": "古代军事工程。", "sections": []any{map[string]any{"title": "历史", "content": "始建于春秋。"}, map[string]any{"title": "空", "content": ""}}}, "长城\n\n古代军事工程。\n\n历史\n始建于春秋。", ""},
	} {
		got, err := DocumentText(c.rec)
		if got != c.text || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%v: %q, %v", c.rec, got, err)
		}
	}
}

// Text in GB18030 (or GBK) is refused with the conversion to run, before
// it becomes tokens of mojibake.
func TestReadRefusesGB18030(t *testing.T) {
	gbk, err := simplifiedchinese.GB18030.NewEncoder().String("中国的首都是北京。\n这是第二行。\n")
	if err != nil {
		t.Fatal(err)
	}
	path := write(t, t.TempDir(), "gbk.txt", gbk)
	_, err = Read(path, ReadOptions{}, func(Record, Location) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "2 of the first 2 lines are not valid UTF-8") || !strings.Contains(err.Error(), "iconv") {
		t.Errorf("GB18030 text: %v", err)
	}
}

// Records of a one-line JSON array are told apart by their element.
func TestArrayElementLocations(t *testing.T) {
	path := write(t, t.TempDir(), "one.json", `[{"text":"a"},{"text":"b"}]`)
	var locs []string
	if _, err := Read(path, ReadOptions{}, func(_ Record, l Location) error { locs = append(locs, l.String()); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(locs) != 2 || !strings.HasSuffix(locs[1], "one.json:1 (element 1)") {
		t.Errorf("locations %v", locs)
	}
}
