package main

import (
	"path/filepath"
	"strings"
	"testing"

	"zhllama/internal/testenv"
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
