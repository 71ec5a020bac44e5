package dataset

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"zhllama/internal/testenv"
)

// dataset_info.json and the records it describes never panic the
// registry, the layout detection or the converters.
func FuzzRegistryAndConvert(f *testing.F) {
	info, err := os.ReadFile(testenv.Path(f, "sft/dataset_info.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, rel := range []string{"sft/alpaca_zh_demo.json", "preference/dpo_zh_demo.json", "sft/glaive_toolcall_zh_demo.json"} {
		var recs []json.RawMessage
		b, err := os.ReadFile(testenv.Path(f, rel))
		if err != nil || json.Unmarshal(b, &recs) != nil {
			f.Fatal(rel, err)
		}
		f.Add(info, []byte(recs[0]))
	}
	f.Add(info, []byte(`{"conversations":[{"from":"human","value":"问"},{"from":"gpt","value":"答"}]}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, registry, record []byte) {
		path := filepath.Join(dir, "dataset_info.json")
		if err := os.WriteFile(path, registry, 0o644); err != nil {
			t.Fatal(err)
		}
		layouts := []Layout{}
		if reg, err := ReadRegistry(path); err == nil {
			for _, l := range reg {
				layouts = append(layouts, l)
			}
		}
		var rec map[string]any
		if json.Unmarshal(record, &rec) != nil {
			return
		}
		if l, err := Guess(rec); err == nil {
			layouts = append(layouts, l)
		}
		for _, l := range layouts {
			l.Convert(rec)
		}
	})
}
