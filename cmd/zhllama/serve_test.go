package main

import (
	"bufio"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"zhllama/hfdir"
	"zhllama/internal/testenv"
	"zhllama/llama"
	"zhllama/template"
)

// zhllama serve listens where it says, renders chats with the model's own
// chat_template, answers with the key, serves a reward model's scores
// when the directory has a value head, and on
// SIGTERM finishes the stream in flight and exits 0.
func TestServeCommand(t *testing.T) {
	dir := tinyModelDir(t)
	head := llama.NewValueHead(64)
	head.Init(rand.New(rand.NewPCG(1, 2)))
	if err := hfdir.SaveValueHead(dir, head); err != nil {
		t.Fatal(err)
	}
	// The model's own chat_template (alpaca's) renders the chat prompts.
	alpaca, _ := template.Get("alpaca")
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	var tc map[string]any
	testenv.ReadJSON(t, cfgPath, &tc)
	tc["chat_template"] = alpaca.Jinja()
	b, _ := json.Marshal(tc)
	testenv.WriteFile(t, cfgPath, b)
	cmd := exec.Command(binary, "serve", "--model", dir, "--port", "0", "--api_key", "k", "--parallel", "2")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stderr)
	var url, start string
	for url == "" && lines.Scan() {
		start += lines.Text() + "\n"
		if m := regexp.MustCompile(`on (http://[0-9.:]+)/`).FindStringSubmatch(lines.Text()); m != nil {
			url = m[1]
		}
	}
	if url == "" {
		t.Fatal("no address printed")
	}
	if !strings.Contains(start, "chat_template, template alpaca") {
		t.Errorf("the model's chat_template was not used:\n%s", start)
	}
	rest := make(chan string, 1)
	go func() {
		var b strings.Builder
		for lines.Scan() {
			b.WriteString(lines.Text() + "\n")
		}
		rest <- b.String()
	}()
	do := func(path, body string) (*http.Response, error) {
		req, _ := http.NewRequest("POST", url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		return http.DefaultClient.Do(req)
	}
	resp, err := do("/v1/score/evaluation", `{"model":"m","messages":["<s>[INST] 你好 [/INST] 你好</s>","hi"]}`)
	if err != nil {
		t.Fatal(err)
	}
	var sc struct {
		Object string
		Scores []float64
	}
	json.NewDecoder(resp.Body).Decode(&sc)
	resp.Body.Close()
	if resp.StatusCode != 200 || sc.Object != "score.evaluation" || len(sc.Scores) != 2 || sc.Scores[0] == sc.Scores[1] {
		t.Errorf("score: %d %+v", resp.StatusCode, sc)
	}
	resp, err = do("/v1/chat/completions", `{"messages":[{"role":"user","content":"你好"}],"stream":true,"max_tokens":60,"temperature":0}`)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.HasSuffix(string(body), "data: [DONE]\n\n") {
		t.Errorf("the stream in flight was cut: %v %q", err, body)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v\n%s", err, <-rest)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the server did not exit after SIGTERM")
	}
	if _, err := http.Get(url + "/health"); err == nil {
		t.Error("still accepting after SIGTERM")
	}
}
