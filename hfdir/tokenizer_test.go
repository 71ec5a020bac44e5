package hfdir

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/internal/testenv/spmtest"
)

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// The files written for Chinese-LLaMA-2's vocabulary have the keys and
// values of the ones Chinese-LLaMA-2 ships.
func TestWriteTokenizerMatchesChineseLlama2(t *testing.T) {
	refDir := testenv.Path(t, "tokenizers/chinese-llama2")
	m := spmtest.Model(t, "tokenizers/chinese-llama2/tokenizer.model")
	dir := t.TempDir()
	if err := WriteTokenizer(dir, m, "<pad>", ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tokenizer_config.json", "special_tokens_map.json"} {
		var got, want map[string]any
		testenv.ReadJSON(t, filepath.Join(dir, name), &got)
		testenv.ReadJSON(t, filepath.Join(refDir, name), &want)
		if !reflect.DeepEqual(keys(got), keys(want)) {
			t.Errorf("%s keys %v, Chinese-LLaMA-2 has %v", name, keys(got), keys(want))
		}
		for _, k := range keys(want) {
			if k == "pad_token" && name == "tokenizer_config.json" {
				continue // Chinese-LLaMA-2 leaves it null there; we name the pad
			}
			if !reflect.DeepEqual(got[k], want[k]) {
				t.Errorf("%s %s = %v, Chinese-LLaMA-2 has %v", name, k, got[k], want[k])
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(refDir, "tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	b2, err := os.ReadFile(filepath.Join(dir, "tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) {
		t.Error("tokenizer.model is not written back unchanged")
	}
	if err := WriteTokenizer(dir, m, "<no such piece>", ""); err == nil {
		t.Error("a pad token that is not a piece was accepted")
	}
}

// chat_template goes into tokenizer_config.json and comes back; the list
// form transformers also writes gives its "default".
func TestChatTemplate(t *testing.T) {
	m := spmtest.Model(t, "tokenizers/chinese-llama2/tokenizer.model")
	dir := t.TempDir()
	if got, err := ChatTemplate(dir); got != "" || err != nil {
		t.Errorf("no file: %q, %v", got, err)
	}
	const src = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
	if err := WriteTokenizer(dir, m, "", src); err != nil {
		t.Fatal(err)
	}
	if got, err := ChatTemplate(dir); got != src || err != nil {
		t.Errorf("got %q, %v", got, err)
	}
	path := filepath.Join(dir, "tokenizer_config.json")
	for body, want := range map[string]string{
		`{"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "y"}]}`: "y",
		`{"chat_template": null}`: "",
		`{}`:                      "",
	} {
		testenv.WriteFile(t, path, []byte(body))
		if got, err := ChatTemplate(dir); got != want || err != nil {
			t.Errorf("%s: got %q, %v", body, got, err)
		}
	}
	for _, body := range []string{`{"chat_template": 3}`, `{"chat_template": [{"name": "rag", "template": "x"}]}`, `{`} {
		testenv.WriteFile(t, path, []byte(body))
		if _, err := ChatTemplate(dir); err == nil || !strings.Contains(err.Error(), "tokenizer_config.json") {
			t.Errorf("%s: %v", body, err)
		}
	}
}

// tokenizer_config.json's flags and chat template, as a string or as
// transformers' list of named templates; defaults without the file.
func TestReadTokenizerOptions(t *testing.T) {
	dir := t.TempDir()
	if o, err := ReadTokenizerOptions(dir); err != nil || !o.AddBOS || o.AddEOS || o.ChatTemplate != "" {
		t.Errorf("no file: %+v %v", o, err)
	}
	for body, want := range map[string]TokenizerOptions{
		`{"add_bos_token": false, "add_eos_token": true, "chat_template": "{{ x }}"}`:                      {false, true, "{{ x }}"},
		`{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}`: {true, false, "D"},
		`{"chat_template": null}`: {true, false, ""},
	} {
		os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(body), 0o644)
		if o, err := ReadTokenizerOptions(dir); err != nil || o != want {
			t.Errorf("%s: %+v %v", body, o, err)
		}
	}
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"chat_template": 3}`), 0o644)
	if _, err := ReadTokenizerOptions(dir); err == nil || !strings.Contains(err.Error(), "chat_template") {
		t.Errorf("bad template: %v", err)
	}
}
