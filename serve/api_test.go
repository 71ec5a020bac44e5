package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"zhllama/llama"
	"zhllama/template"
)

// greedy is llama.Model.Generate's greedy text for prompt.
func greedy(t testing.TB, s *Server, prompt []int32, maxNew int) (string, string) {
	t.Helper()
	out, err := s.o.Model.Generate(prompt, llama.Sampling{MaxNewTokens: maxNew, TopP: 1, StopIDs: []int{s.o.Tok.SpecialID("eos")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	finish := "length"
	if n := len(out); n > 0 && out[n-1] == s.o.Tok.SpecialID("eos") {
		out, finish = out[:n-1], "stop"
	}
	text, _ := s.o.Tok.Decode(out)
	return text, finish
}

// With temperature 0 the server writes what Generate writes greedily,
// whether requests run alone or batched with others, streamed or not.
func TestGreedyMatchesGenerate(t *testing.T) {
	for _, batch := range []int{1, 7} { // prompts prefill in chunks, even of one token while others generate
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) { greedyMatches(t, batch) })
	}
}

func greedyMatches(t *testing.T, batch int) {
	s, hs := testServer(t, func(o *Options) { o.Engine.Batch = batch })
	prompts := []string{"你好，世界", "The capital of France is", "从前有一座山，山里有一座庙，庙里有个老和尚", "1 2 3 4 5"}
	var wg sync.WaitGroup
	for i, p := range prompts {
		want, wantFinish := greedy(t, s, s.o.Tok.ModelInput(p), 24)
		if want == "" {
			t.Fatalf("prompt %d: Generate wrote nothing to compare with", i)
		}
		for _, stream := range []bool{false, true} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(`{"prompt": %q, "temperature": 0, "max_tokens": 24, "stream": %v}`, p, stream)
				code, b := post(t, hs.URL+"/v1/completions", body)
				if code != 200 {
					t.Errorf("prompt %d: %d %s", i, code, b)
					return
				}
				text, finish := completionText(t, b, stream)
				if text != want || finish != wantFinish {
					t.Errorf("prompt %d stream %v: %q (%s), Generate wrote %q (%s)", i, stream, text, finish, want, wantFinish)
				}
			}()
		}
	}
	wg.Wait()
}

// A chat answer and its stream have OpenAI's shapes; the stream's bytes
// follow the SSE format, the usage chunk comes last before [DONE].
func TestChatShapes(t *testing.T) {
	s, hs := testServer(t, nil)
	msgs := `[{"role":"system","content":"你是助手"},{"role":"user","content":"你好"}]`
	code, b := post(t, hs.URL+"/v1/chat/completions", `{"model":"x","messages":`+msgs+`,"max_tokens":8,"temperature":0}`)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	r := decode(t, b)
	if !strings.HasPrefix(r["id"].(string), "chatcmpl-") || r["object"] != "chat.completion" || r["model"] != "tiny" {
		t.Errorf("head: %s", b)
	}
	ch := r["choices"].([]any)[0].(map[string]any)
	msg := ch["message"].(map[string]any)
	u := r["usage"].(map[string]any)
	ids, err := s.o.Renderer.Encode(parseTestMessages(t, msgs))
	if err != nil {
		t.Fatal(err)
	}
	if msg["role"] != "assistant" || u["prompt_tokens"].(float64) != float64(len(ids)) ||
		u["total_tokens"].(float64) != u["prompt_tokens"].(float64)+u["completion_tokens"].(float64) {
		t.Errorf("choice or usage: %s", b)
	}
	want, _ := greedy(t, s, ids, 8)
	if msg["content"] != want {
		t.Errorf("content %q, Generate %q", msg["content"], want)
	}

	req, _ := http.NewRequest("POST", hs.URL+"/v1/chat/completions", strings.NewReader(`{"messages":`+msgs+`,"max_tokens":8,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("headers %v", resp.Header)
	}
	var body strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		body.WriteString(string(buf[:n]))
		if err != nil {
			break
		}
	}
	evs := sseEvents(t, []byte(body.String()))
	if len(evs) < 4 || evs[len(evs)-1] != "[DONE]" {
		t.Fatalf("events %q", evs)
	}
	var id, text string
	for i, ev := range evs[:len(evs)-1] {
		c := decode(t, []byte(ev))
		if i == 0 {
			id = c["id"].(string)
		}
		if c["id"] != id || c["object"] != "chat.completion.chunk" {
			t.Errorf("chunk %d: %s", i, ev)
		}
		choices := c["choices"].([]any)
		switch {
		case i == 0:
			d := choices[0].(map[string]any)["delta"].(map[string]any)
			if d["role"] != "assistant" || d["content"] != "" {
				t.Errorf("first chunk %s", ev)
			}
		case i == len(evs)-2:
			if len(choices) != 0 || c["usage"] == nil {
				t.Errorf("usage chunk %s", ev)
			}
		case i == len(evs)-3:
			ch := choices[0].(map[string]any)
			if ch["finish_reason"] == nil || len(ch["delta"].(map[string]any)) != 0 {
				t.Errorf("last chunk %s", ev)
			}
		default:
			ch := choices[0].(map[string]any)
			if ch["finish_reason"] != nil {
				t.Errorf("middle chunk %s", ev)
			}
			text += ch["delta"].(map[string]any)["content"].(string)
		}
	}
	if text != want {
		t.Errorf("streamed %q, Generate %q", text, want)
	}
}

func parseTestMessages(t *testing.T, msgs string) []template.Message {
	t.Helper()
	got, err := parseMessages(fields{"messages": json.RawMessage(msgs)})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Bad requests get 400 (or 413) in OpenAI's envelope, the message naming
// the field.
func TestValidation(t *testing.T) {
	_, hs := testServer(t, func(o *Options) { o.MaxBody = 1 << 16; o.Engine.Ctx = 64 })
	chat := hs.URL + "/v1/chat/completions"
	user := `"messages":[{"role":"user","content":"hi"}]`
	long := strings.Repeat("你好世界 ", 40)
	for _, c := range []struct {
		url, body string
		status    int
		param     string
		says      string
	}{
		{chat, `{"messages": [}`, 400, "", "not a JSON object"},
		{chat, `[1,2]`, 400, "", "not a JSON object"},
		{chat, `{}`, 400, "messages", "messages is required"},
		{chat, `{"messages": []}`, 400, "messages", "empty"},
		{chat, `{"messages": "hi"}`, 400, "messages", "messages must be"},
		{chat, `{"messages": [{"role":"robot","content":"x"}]}`, 400, "messages[0].role", "robot"},
		{chat, `{"messages": [{"role":"user"}]}`, 400, "messages[0].content", "no content"},
		{chat, `{"messages": [{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "messages[0].content", "image_url"},
		{chat, `{"messages": [{"role":"assistant","content":"x"}]}`, 400, "messages", "alternate"},
		{chat, `{` + user + `,"temperature": 3}`, 400, "temperature", "temperature 3 is out of range"},
		{chat, `{` + user + `,"temperature": "hot"}`, 400, "temperature", "temperature must be a number"},
		{chat, `{` + user + `,"top_p": 0}`, 400, "top_p", "top_p 0"},
		{chat, `{` + user + `,"max_tokens": 0}`, 400, "max_tokens", "max_tokens 0"},
		{chat, `{` + user + `,"max_completion_tokens": 1.5}`, 400, "max_completion_tokens", "integer"},
		{chat, `{` + user + `,"presence_penalty": -3}`, 400, "presence_penalty", "presence_penalty"},
		{chat, `{` + user + `,"frequency_penalty": 2.5}`, 400, "frequency_penalty", "frequency_penalty"},
		{chat, `{` + user + `,"n": 2}`, 400, "n", "one choice"},
		{chat, `{` + user + `,"stop": ["a","b","c","d","e"]}`, 400, "stop", "at most 4"},
		{chat, `{` + user + `,"stop": 5}`, 400, "stop", "string"},
		{chat, `{` + user + `,"tools": [{"type":"function"}]}`, 400, "tools", "tool calling"},
		{chat, `{` + user + `,"response_format": {"type":"json_object"}}`, 400, "response_format", "json_object"},
		{chat, `{` + user + `,"stream_options": {"include_usage": true}}`, 400, "stream_options", "stream is true"},
		{chat, `{` + user + `,"top_logprobs": 3}`, 400, "top_logprobs", "requires logprobs"},
		{chat, `{` + user + `,"logprobs": true, "top_logprobs": 21}`, 400, "top_logprobs", "0 to 20"},
		{chat, `{"messages":[{"role":"user","content":"` + long + `"}]}`, 400, "messages", "the context is 64 tokens"},
		{chat, `{` + user + `,"pad":"` + strings.Repeat("x", 1<<17) + `"}`, 413, "", "passes 65536 bytes"},
		{hs.URL + "/v1/completions", `{}`, 400, "prompt", "prompt is required"},
		{hs.URL + "/v1/completions", `{"prompt":"` + long + `"}`, 400, "prompt", "the context is 64 tokens"},
		{hs.URL + "/v1/completions", `{"prompt": [1, 99999]}`, 400, "prompt", "not a token id"},
		{hs.URL + "/v1/completions", `{"prompt": "hi", "logprobs": 30}`, 400, "logprobs", "0 to 20"},
		{hs.URL + "/v1/score/evaluation", `{"messages": ["a"]}`, 501, "", "no value head"},
		{hs.URL + "/v1/nothing", `{}`, 404, "", "no such endpoint"},
	} {
		code, b := post(t, c.url, c.body)
		var env struct {
			Error struct {
				Message, Type string
				Param         *string
				Code          any
			}
		}
		if err := json.Unmarshal(b, &env); err != nil || code != c.status || !strings.Contains(env.Error.Message, c.says) || env.Error.Type == "" {
			t.Errorf("%.60s: %d %s", c.body, code, b)
			continue
		}
		if (env.Error.Param == nil) != (c.param == "") || env.Error.Param != nil && *env.Error.Param != c.param {
			t.Errorf("%.60s: param %v, want %q", c.body, env.Error.Param, c.param)
		}
	}
	// An over-long prompt names both numbers.
	_, b := post(t, chat, `{"messages":[{"role":"user","content":"`+long+`"}]}`)
	if !strings.Contains(string(b), "exceed_context_size_error") || !strings.Contains(string(b), "the prompt has ") {
		t.Errorf("over-long: %s", b)
	}
}

// Without a key or with a wrong one the API answers 401 in the envelope;
// Bearer and X-Api-Key both work; health, models and the page are public.
func TestAuth(t *testing.T) {
	_, hs := testServer(t, func(o *Options) { o.APIKeys = []string{"k1", "secret"} })
	body := `{"prompt":"hi","max_tokens":1}`
	for _, h := range [][]string{nil, {"Authorization", "Bearer nope"}, {"X-Api-Key", "secre"}, {"Authorization", "secret"}} {
		code, b := post(t, hs.URL+"/v1/completions", body, h...)
		if code != 401 || !strings.Contains(string(b), `"type":"authentication_error"`) {
			t.Errorf("%v: %d %s", h, code, b)
		}
	}
	for _, h := range [][]string{{"Authorization", "Bearer secret"}, {"X-Api-Key", "k1"}} {
		if code, b := post(t, hs.URL+"/v1/completions", body, h...); code != 200 {
			t.Errorf("%v: %d %s", h, code, b)
		}
	}
	if code, _ := post(t, hs.URL+"/tokenize", `{"content":"hi"}`); code != 401 {
		t.Errorf("tokenize without a key: %d", code)
	}
	for _, p := range []string{"/health", "/v1/models", "/"} {
		resp, err := http.Get(hs.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
}

// Stop strings end the text before them, whether they come whole in one
// token or across several; a tail that could begin one is held back.
func TestStopStrings(t *testing.T) {
	for _, c := range []struct {
		text  string
		stops []string
		send  string
		hold  string
		hit   bool
	}{
		{"hello wor", []string{"world"}, "hello ", "wor", false},
		{"hello world!", []string{"world"}, "hello ", "", true},
		{"ab", []string{"xyz"}, "ab", "", false},
		{"你好世", []string{"世界", "好人"}, "你好", "世", false},
		{"abc", []string{"c", "abc"}, "", "", true},
		{"abc", nil, "abc", "", false},
	} {
		send, hold, hit := cutStop(c.text, c.stops)
		if send != c.send || hold != c.hold || hit != c.hit {
			t.Errorf("cutStop(%q, %q) = %q, %q, %v", c.text, c.stops, send, hold, hit)
		}
	}
	s, hs := testServer(t, nil)
	prompt := "从前有一座山"
	full, _ := greedy(t, s, s.o.Tok.ModelInput(prompt), 30)
	r := []rune(full)
	if len(r) < 6 {
		t.Skipf("greedy output too short: %q", full)
	}
	stop := string(r[len(r)/2 : len(r)/2+2])
	want := full[:strings.Index(full, stop)]
	for _, stream := range []bool{false, true} {
		code, b := post(t, hs.URL+"/v1/completions", fmt.Sprintf(`{"prompt":%q,"temperature":0,"max_tokens":30,"stop":[%q],"stream":%v}`, prompt, stop, stream))
		if code != 200 {
			t.Fatalf("%d %s", code, b)
		}
		text, finish := completionText(t, b, stream)
		if text != want || finish != "stop" {
			t.Errorf("stream %v, stop %q: %q (%s), want %q", stream, stop, text, finish, want)
		}
	}
}

// completionText is a /v1/completions answer's text and finish reason.
func completionText(t testing.TB, b []byte, stream bool) (text, finish string) {
	t.Helper()
	evs := []string{string(b)}
	if stream {
		evs = sseEvents(t, b)
	}
	for _, ev := range evs {
		if ev == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Text         string
				FinishReason *string `json:"finish_reason"`
			}
		}
		if err := json.Unmarshal([]byte(ev), &c); err != nil || len(c.Choices) == 0 {
			continue
		}
		text += c.Choices[0].Text
		if c.Choices[0].FinishReason != nil {
			finish = *c.Choices[0].FinishReason
		}
	}
	return text, finish
}

// Log-probabilities are the raw logits' log-softmax: the greedy token is
// the top alternative, with its bytes; penalties follow OpenAI's formula.
func TestLogprobsAndPenalties(t *testing.T) {
	s, hs := testServer(t, nil)
	code, b := post(t, hs.URL+"/v1/chat/completions", `{"messages":[{"role":"user","content":"你好"}],"temperature":0,"max_tokens":6,"logprobs":true,"top_logprobs":3}`)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	var r struct {
		Choices []struct {
			Message  struct{ Content string }
			Logprobs struct{ Content []TokenLogprob }
		}
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	lps := r.Choices[0].Logprobs.Content
	if len(lps) == 0 {
		t.Fatalf("no logprobs: %s", b)
	}
	for i, lp := range lps {
		if len(lp.Top) != 3 || lp.Top[0].Token != lp.Token || math.Abs(lp.Top[0].Logprob-lp.Logprob) > 1e-9 || lp.Logprob > 0 ||
			lp.Top[1].Logprob > lp.Top[0].Logprob || string(bytesOf(lp.Bytes)) != lp.Token && !strings.Contains(lp.Token, "\uFFFD") {
			t.Errorf("token %d: %+v", i, lp)
		}
	}
	if lp := s.e.tokenLogprob(s.o.Tok.Size()+3, -1); lp.Token != "" || len(lp.Bytes) != 0 {
		t.Errorf("a padded vocabulary row: %+v", lp)
	}
	// Penalties: the same greedy loop by hand, logit[t] -= count[t]·f + (count[t]>0)·p.
	m, tok := s.o.Model, s.o.Tok
	prompt := tok.ModelInput("1 2 3")
	const pres, freq = 0.7, 1.3
	ca := m.NewCache(1, 256, false)
	counts := map[int]int{}
	feed := prompt
	var out []int
	for len(out) < 12 {
		logits := m.Step(ca, [][]int32{feed})
		for id, c := range counts {
			logits[id] -= float32(float64(c)*freq + pres)
		}
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		if best == tok.SpecialID("eos") {
			break
		}
		counts[best]++
		out = append(out, best)
		feed = []int32{int32(best)}
	}
	want, _ := tok.Decode(out)
	code, b = post(t, hs.URL+"/v1/completions", fmt.Sprintf(`{"prompt":"1 2 3","temperature":0,"max_tokens":12,"presence_penalty":%v,"frequency_penalty":%v}`, pres, freq))
	if text, _ := completionText(t, b, false); code != 200 || text != want {
		t.Errorf("with penalties %q, by hand %q", text, want)
	}
}

// A client that goes away frees its slot at once: with one slot, the next
// request runs while the first would still be generating.
func TestDisconnectFreesSlot(t *testing.T) {
	s, hs := testServer(t, func(o *Options) { o.Engine.Parallel = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/v1/completions", strings.NewReader(`{"prompt":"hi","max_tokens":200,"stream":true,"temperature":1,"seed":1}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.e.stats.processing.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slot is still held after the client left")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, b := post(t, hs.URL+"/v1/completions", `{"prompt":"hi","max_tokens":3}`); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
}

// A full queue is answered 429 in the envelope; Close finishes what is
// queued and running.
func TestQueueFullAndClose(t *testing.T) {
	s, hs := testServer(t, func(o *Options) { o.Engine.Parallel = 1; o.Engine.Queue = 2 })
	hold := make(chan struct{})
	go s.e.Do(context.Background(), func() { <-hold }) // the engine is busy
	time.Sleep(50 * time.Millisecond)
	var tasks []*Task
	for range 2 {
		tk, err := s.e.Submit(context.Background(), []int32{1, 100}, Params{MaxTokens: 3})
		if err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, tk)
	}
	code, b := post(t, hs.URL+"/v1/completions", `{"prompt":"hi","max_tokens":1}`)
	if code != 429 || !strings.Contains(string(b), "queue is full") {
		t.Errorf("%d %s", code, b)
	}
	close(hold)
	done := make(chan struct{})
	go func() { s.e.Close(); close(done) }()
	for i, tk := range tasks {
		var last Event
		for last.Finish == "" && last.Err == nil {
			evs, _ := tk.Next(context.Background())
			last = evs[len(evs)-1]
		}
		if last.Err != nil || last.Usage.CompletionTokens == 0 {
			t.Errorf("task %d: %+v", i, last)
		}
	}
	<-done
	if _, err := s.e.Submit(context.Background(), []int32{1}, Params{}); err != ErrClosing {
		t.Errorf("after Close: %v", err)
	}
}

// Metrics are Prometheus text with HELP and TYPE for each zhllama_ name.
func TestMetrics(t *testing.T) {
	_, hs := testServer(t, nil)
	post(t, hs.URL+"/v1/completions", `{"prompt":"hi","max_tokens":2}`)
	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 1<<16)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	text := b.String()
	for _, name := range []string{"requests_total", "prompt_tokens_total", "tokens_predicted_total", "prompt_seconds_total",
		"tokens_predicted_seconds_total", "requests_processing", "requests_deferred", "request_duration_seconds", "n_decode_total"} {
		if !strings.Contains(text, "# HELP zhllama_"+name+" ") || !strings.Contains(text, "# TYPE zhllama_"+name+" ") {
			t.Errorf("no %s in\n%s", name, text)
		}
	}
	if !strings.Contains(text, `zhllama_requests_total{endpoint="completions",status="200"} 1`) {
		t.Errorf("request not counted:\n%s", text)
	}
}

// The tokenizer endpoints round-trip text with special tokens; the
// template endpoint renders the conversation.
func TestTokenizeAndTemplate(t *testing.T) {
	_, hs := testServer(t, nil)
	code, b := post(t, hs.URL+"/tokenize", `{"content":"<s>你好 world</s>","with_pieces":true}`)
	var tr struct {
		Tokens []struct {
			ID    int32
			Piece any
		}
	}
	if err := json.Unmarshal(b, &tr); code != 200 || err != nil || len(tr.Tokens) < 3 || tr.Tokens[0].ID != 1 || tr.Tokens[len(tr.Tokens)-1].ID != 2 {
		t.Fatalf("%d %s", code, b)
	}
	var ids []int32
	for _, x := range tr.Tokens {
		ids = append(ids, x.ID)
	}
	body, _ := json.Marshal(map[string]any{"tokens": ids})
	code, b = post(t, hs.URL+"/detokenize", string(body))
	if code != 200 || decode(t, b)["content"] != "<s>你好 world</s>" {
		t.Errorf("detokenize: %d %s", code, b)
	}
	code, b = post(t, hs.URL+"/tokenize", `{"content":"hi","add_special":true}`)
	if code != 200 || !strings.HasPrefix(string(b), `{"tokens":[1,`) {
		t.Errorf("add_special: %s", b)
	}
	code, b = post(t, hs.URL+"/apply-template", `{"messages":[{"role":"system","content":"S"},{"role":"user","content":"Q"}]}`)
	if want := "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nQ [/INST]"; code != 200 || decode(t, b)["prompt"] != want {
		t.Errorf("apply-template: %d %s", code, b)
	}
	resp, err := http.Get(hs.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var ml struct {
		Object string
		Data   []struct{ ID, Object, OwnedBy string }
	}
	json.NewDecoder(resp.Body).Decode(&ml)
	resp.Body.Close()
	if ml.Object != "list" || len(ml.Data) != 1 || ml.Data[0].ID != "tiny" || ml.Data[0].Object != "model" {
		t.Errorf("models: %+v", ml)
	}
}

// max_completion_tokens wins over max_tokens; the answer stops there with
// finish_reason length.
func TestMaxTokensPrecedence(t *testing.T) {
	s, hs := testServer(t, nil)
	prompt := "1 2 3 4"
	want, finish := greedy(t, s, s.o.Tok.ModelInput(prompt), 3)
	if finish != "length" {
		t.Skip("the model ends within 3 tokens")
	}
	code, b := post(t, hs.URL+"/v1/completions", fmt.Sprintf(`{"prompt":%q,"temperature":0,"max_tokens":1,"max_completion_tokens":3}`, prompt))
	var r struct {
		Choices []struct {
			Text         string
			FinishReason string `json:"finish_reason"`
		}
		Usage Usage
	}
	if err := json.Unmarshal(b, &r); code != 200 || err != nil || r.Choices[0].Text != want || r.Choices[0].FinishReason != "length" || r.Usage.CompletionTokens != 3 {
		t.Errorf("%d %s, want %q", code, b, want)
	}
}
