package dataset

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zhllama/corpus"
	"zhllama/internal/testenv"
	"zhllama/template"
)

// Every record of the shared SFT and preference sets converts.
func TestConvertSharedDatasets(t *testing.T) {
	registry := testenv.Path(t, "sft/dataset_info.json")
	type src struct {
		name, file string
		ranking    bool
	}
	for _, s := range []src{
		{"alpaca_zh_demo", "", false}, {"glaive_toolcall_zh_demo", "", false}, {"identity", "", false},
		{"", "sft/sharegpt_zh_1K_format.jsonl", false}, {"", "sft/medical_sft_1K_format.jsonl", false},
		{"", "preference/dpo_zh_demo.json", true}, {"", "preference/dpo_zh_500.jsonl", true},
	} {
		var d Layout
		path := ""
		if s.name != "" {
			var err error
			if d, path, err = Lookup(registry, s.name); err != nil {
				t.Fatal(err)
			}
		} else {
			path = testenv.Path(t, s.file)
		}
		n, bad := 0, 0
		var firstErr error
		_, err := corpus.Read(path, corpus.ReadOptions{}, func(rec corpus.Record, loc corpus.Location) error {
			if d.Formatting == "" {
				g, err := Guess(rec)
				if err != nil {
					return err
				}
				d = g
			}
			ex, err := d.Convert(rec)
			n++
			if err != nil {
				bad++
				if firstErr == nil {
					firstErr = err
				}
				return nil
			}
			if len(ex.Prompt)%2 != 1 || len(ex.Response) != map[bool]int{true: 2, false: 1}[s.ranking] {
				t.Fatalf("%s: bad example %+v", loc, ex)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d records, %d rejected (%v)", path, n, bad, firstErr)
		if n == 0 || bad*20 > n {
			t.Errorf("%s: %d of %d records rejected: %v", path, bad, n, firstErr)
		}
	}
}

func TestConvertErrors(t *testing.T) {
	sg := Layout{Formatting: "sharegpt"}
	conv := func(msgs ...string) map[string]any {
		var list []any
		for i := 0; i < len(msgs); i += 2 {
			list = append(list, map[string]any{"from": msgs[i], "value": msgs[i+1]})
		}
		return map[string]any{"conversations": list}
	}
	for _, c := range []struct {
		rec  map[string]any
		want string
	}{
		{conv("gpt", "a", "human", "q"), "wrong role order"},
		{conv("human", "q"), "end with the assistant"},
		{conv("human", "q", "robot", "a"), "unknown role"},
		{map[string]any{"text": "x"}, "no message list"},
	} {
		if _, err := sg.Convert(c.rec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.rec, err, c.want)
		}
	}
	al := Layout{Formatting: "alpaca"}
	if _, err := al.Convert(map[string]any{"instruction": "", "input": "", "output": "x"}); err == nil {
		t.Error("empty prompt accepted")
	}
	// A null answer is no answer (LLaMA-Factory drops the example); JSON types are named as JSON names them.
	for want, rec := range map[string]map[string]any{
		`field "output" is null`:                   {"instruction": "q", "output": nil},
		`field "output" is a number, not a string`: {"instruction": "q", "output": 42.0},
		`field "instruction" is an array`:          {"instruction": []any{"x"}, "output": "a"},
	} {
		if _, err := al.Convert(rec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want %q", rec, err, want)
		}
	}
	pref := Layout{Formatting: "alpaca", Ranking: true}
	if _, err := pref.Convert(map[string]any{"instruction": "q", "chosen": "a", "rejected": nil}); err == nil || !strings.Contains(err.Error(), `"rejected" is null`) {
		t.Errorf("null rejected: %v", err)
	}
	if _, err := Guess(map[string]any{"title": "x"}); err == nil || !strings.Contains(err.Error(), "title") {
		t.Errorf("guess: %v", err)
	}
}

func TestConvertOtherLayouts(t *testing.T) {
	hh := map[string]any{
		"chosen":   "\n\nHuman: 你好\n\nAssistant: 你好！\n\nHuman: 讲个笑话\n\nAssistant: 好的，这是一个笑话。",
		"rejected": "\n\nHuman: 你好\n\nAssistant: 你好！\n\nHuman: 讲个笑话\n\nAssistant: 不。",
	}
	belle := map[string]any{"instruction": "Human: 你好\nAssistant: 你好，有什么事？\nHuman: 天气如何？\nAssistant:", "input": "", "output": "今天晴。"}
	moss := map[string]any{"meta_instruction": "You are MOSS.", "chat": map[string]any{
		"turn_1": map[string]any{"Human": "<|Human|>: 你好<eoh>\n", "MOSS": "<|MOSS|>: 你好！<eom>\n"},
		"turn_2": map[string]any{"Human": "<|Human|>: 再见<eoh>\n", "MOSS": "<|MOSS|>: 再见！<eom>\n"}}}
	for name, c := range map[string]struct {
		rec      map[string]any
		prompt   []template.Message
		response []template.Message
		system   string
	}{
		"hh_rlhf": {hh, []template.Message{msg(template.User, "你好"), msg(template.Assistant, "你好！"), msg(template.User, "讲个笑话")}, []template.Message{msg(template.Assistant, "好的，这是一个笑话。"), msg(template.Assistant, "不。")}, ""},
		"belle":   {belle, []template.Message{msg(template.User, "你好"), msg(template.Assistant, "你好，有什么事？"), msg(template.User, "天气如何？")}, []template.Message{msg(template.Assistant, "今天晴。")}, ""},
		"moss":    {moss, []template.Message{msg(template.User, "你好"), msg(template.Assistant, "你好！"), msg(template.User, "再见")}, []template.Message{msg(template.Assistant, "再见！")}, "You are MOSS."},
	} {
		d, err := Guess(c.rec)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ex, err := d.Convert(c.rec)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(ex.Prompt, c.prompt) || !slices.Equal(ex.Response, c.response) || ex.System != c.system {
			t.Errorf("%s: %+v", name, ex)
		}
	}
	bad := map[string]any{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: other\n\nAssistant: c"}
	if _, err := (Layout{Formatting: "hh_rlhf"}).Convert(bad); err == nil {
		t.Error("HH pair with different prompts accepted")
	}
}

// A dataset_info.json that is not JSON names the line and column.
func TestRegistrySyntaxError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dataset_info.json")
	testenv.WriteFile(t, path, []byte("{\n  \"a\": {\"file_name\": \"a.json\"},\n}\n"))
	if _, err := ReadRegistry(path); err == nil || !strings.Contains(err.Error(), "dataset_info.json:3:1:") {
		t.Errorf("syntax error: %v", err)
	}
}
