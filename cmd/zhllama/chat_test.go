package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/template"
)

// A greedy chat: the answer depends on the history, /clear forgets it (the
// same first message gets the same answer again), a conversation past the
// context loses its oldest turns with a note, and a message longer than
// the context is refused without ending the chat.
func TestChat(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if _, errs, code := zhllama(t, "", "model", "init", "--preset", "tiny", "--tokenizer", testenv.Path(t, "tokenizers/llama2/tokenizer.model"), "--output_dir", dir); code != 0 {
		t.Fatal(errs)
	}
	long := strings.Repeat("山", 50)
	script := strings.Join([]string{"你好", "再说一遍", "/clear", "你好", "/system 你是助手", long, long, long, strings.Repeat("水", 300), "/exit"}, "\n")
	out, errs, code := zhllama(t, script, "chat", "--model", dir, "--temperature", "0", "--max_new_tokens", "60")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != 6 {
		t.Fatalf("code %d, %d answers:\n%s\n%s", code, len(lines), out, errs)
	}
	if lines[0] != lines[2] || lines[0] == "" {
		t.Errorf("after /clear the same message got %q, first %q", lines[2], lines[0])
	}
	for _, want := range []string{"conversation cleared", `system prompt set to "你是助手"`, "the oldest 2 turns are left out", "the message alone has"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

// chat renders with the model's own chat_template: a built-in one's Jinja
// gives the same answers as --template of that name, a foreign Jinja is
// rendered as Jinja, and a broken one is refused naming the file.
func TestChatUsesTheModelsChatTemplate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if _, errs, code := zhllama(t, "", "model", "init", "--preset", "tiny", "--tokenizer", testenv.Path(t, "tokenizers/llama2/tokenizer.model"), "--output_dir", dir); code != 0 {
		t.Fatal(errs)
	}
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	setTemplate := func(src string) {
		var cfg map[string]any
		testenv.ReadJSON(t, cfgPath, &cfg)
		cfg["chat_template"] = src
		b, _ := json.Marshal(cfg)
		testenv.WriteFile(t, cfgPath, b)
	}
	run := func(args ...string) (string, string) {
		out, errs, code := zhllama(t, "你好\n/exit\n", append([]string{"chat", "--model", dir, "--temperature", "0", "--max_new_tokens", "20"}, args...)...)
		if code != 0 {
			t.Fatalf("%v: code %d\n%s", args, code, errs)
		}
		return out, errs
	}
	alpaca, _ := template.Get("alpaca")
	setTemplate(alpaca.Jinja())
	own, errs := run()
	if !strings.Contains(errs, "chat_template, template alpaca") {
		t.Errorf("the built-in template was not recognised: %s", errs)
	}
	if named, _ := run("--template", "alpaca"); named != own {
		t.Errorf("the model's alpaca chat_template answered %q, --template alpaca %q", own, named)
	}
	setTemplate("{% for m in messages %}{{ m['content'] }}{% endfor %} 答：")
	if _, errs := run(); !strings.Contains(errs, "own chat_template") {
		t.Errorf("a foreign template: %s", errs)
	}
	setTemplate("{% for m in messages %}")
	if _, errs, code := zhllama(t, "", "chat", "--model", dir); code == 0 || !strings.Contains(errs, "tokenizer_config.json") || !strings.Contains(errs, "--template") {
		t.Errorf("a broken template: code %d, %s", code, errs)
	}
}
