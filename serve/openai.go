package serve

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"zhllama/sample"
	"zhllama/template"
)

// fingerprint is the system_fingerprint of every response.
const fingerprint = "zhllama"

// request is a completion request's settings, checked.
type request struct {
	Params
	stream, includeUsage bool
	legacyLogprobs       int // /v1/completions' logprobs: alternatives per token, -1 for none
}

// parseCommon reads the sampling and output fields both endpoints share.
func parseCommon(f fields) (request, error) {
	var q request
	var err error
	fail := func(e error) (request, error) { return request{}, e }
	n, err := f.integer("n", 1, 1, 128)
	if err != nil {
		return fail(err)
	}
	if n != 1 {
		return fail(badRequest("n", "n %d: only one choice per request is supported (n: 1); send separate requests", n))
	}
	for _, k := range []string{"tools", "tool_choice", "functions", "function_call"} {
		if f.has(k) {
			return fail(badRequest(k, "%s: tool calling is not supported (LLaMA-2 chat templates have no tool format); leave it out", k))
		}
	}
	if f.has("response_format") {
		var rf struct {
			Type string `json:"type"`
		}
		if err := f.into("response_format", &rf, `an object such as {"type": "text"}`); err != nil {
			return fail(err)
		}
		if rf.Type != "text" {
			return fail(badRequest("response_format", `response_format type %q is not supported: only "text" (no grammar-constrained sampling yet)`, rf.Type))
		}
	}
	if q.stream, err = f.boolean("stream"); err != nil {
		return fail(err)
	}
	if f.has("stream_options") {
		if !q.stream {
			return fail(badRequest("stream_options", "stream_options can only be set when stream is true"))
		}
		var so struct {
			IncludeUsage bool `json:"include_usage"`
		}
		if err := f.into("stream_options", &so, `an object such as {"include_usage": true}`); err != nil {
			return fail(err)
		}
		q.includeUsage = so.IncludeUsage
	}
	// max_completion_tokens replaced max_tokens; it wins when both are given.
	for _, k := range []string{"max_tokens", "max_completion_tokens"} {
		if f.has(k) {
			if q.MaxTokens, err = f.integer(k, 0, 1, math.MaxInt32); err != nil {
				return fail(err)
			}
		}
	}
	sp := sample.Params{}
	if sp.Temperature, err = f.num("temperature", 1, 0, 2); err != nil {
		return fail(err)
	}
	if sp.TopP, err = f.num("top_p", 1, 0, 1); err != nil {
		return fail(err)
	}
	if sp.TopP == 0 {
		return fail(badRequest("top_p", "top_p 0 is out of range: use a number in (0, 1], 1 for off"))
	}
	if sp.TopK, err = f.integer("top_k", 0, 0, math.MaxInt32); err != nil {
		return fail(err)
	}
	if sp.RepetitionPenalty, err = f.num("repetition_penalty", 1, 1e-6, 100); err != nil {
		return fail(err)
	}
	if f.has("seed") {
		seed, err := f.integer("seed", 0, math.MinInt64, math.MaxInt64)
		if err != nil {
			return fail(err)
		}
		sp.Seed = uint64(seed)
	} else {
		var b [8]byte
		rand.Read(b[:])
		sp.Seed = binary.LittleEndian.Uint64(b[:])
	}
	q.Sample = sp
	if q.PresencePenalty, err = f.num("presence_penalty", 0, -2, 2); err != nil {
		return fail(err)
	}
	if q.FrequencyPenalty, err = f.num("frequency_penalty", 0, -2, 2); err != nil {
		return fail(err)
	}
	stops, err := f.strings("stop")
	if err != nil {
		return fail(err)
	}
	if len(stops) > 4 {
		return fail(badRequest("stop", "stop has %d strings: give at most 4", len(stops)))
	}
	for _, st := range stops {
		if st != "" {
			q.Stop = append(q.Stop, st)
		}
	}
	return q, nil
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) error {
	f, err := decodeBody(r)
	if err != nil {
		return err
	}
	msgs, err := parseMessages(f)
	if err != nil {
		return err
	}
	q, err := parseCommon(f)
	if err != nil {
		return err
	}
	if q.Logprobs, err = f.boolean("logprobs"); err != nil {
		return err
	}
	if f.has("top_logprobs") {
		if !q.Logprobs {
			return badRequest("top_logprobs", "top_logprobs requires logprobs to be true")
		}
		if q.TopLogprobs, err = f.integer("top_logprobs", 0, 0, 20); err != nil {
			return err
		}
	}
	ids, err := s.o.Renderer.Encode(msgs)
	if err != nil {
		return badRequest("messages", "messages: %v", err)
	}
	id, created := randomID("chatcmpl-"), time.Now().Unix()
	head := func(object string) map[string]any {
		return map[string]any{"id": id, "object": object, "created": created, "model": s.o.Alias, "system_fingerprint": fingerprint}
	}
	logprobs := func(lps []TokenLogprob) any {
		if !q.Logprobs {
			return nil
		}
		if lps == nil {
			lps = []TokenLogprob{}
		}
		return map[string]any{"content": lps}
	}
	return s.generate(w, r, ids, q, shape{
		param: "messages",
		first: func() map[string]any {
			c := head("chat.completion.chunk")
			c["choices"] = []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": ""}, "finish_reason": nil}}
			return c
		},
		chunk: func(text string, lps []TokenLogprob, finish string) map[string]any {
			c := head("chat.completion.chunk")
			delta := map[string]any{}
			if text != "" || finish == "" {
				delta["content"] = text
			}
			var fr any
			if finish != "" {
				fr = finish
			}
			c["choices"] = []any{map[string]any{"index": 0, "delta": delta, "logprobs": logprobs(lps), "finish_reason": fr}}
			return c
		},
		usage: func() map[string]any { return head("chat.completion.chunk") },
		whole: func(text string, lps []TokenLogprob, finish string) map[string]any {
			c := head("chat.completion")
			c["choices"] = []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": text}, "logprobs": logprobs(lps), "finish_reason": finish}}
			return c
		},
	})
}

// parseMessages reads the conversation: roles system, developer (a
// system), user, assistant and tool (an observation); content a string
// or a list of text parts.
func parseMessages(f fields) ([]template.Message, error) {
	if !f.has("messages") {
		return nil, badRequest("messages", "messages is required: a list of {role, content}")
	}
	var raw []struct {
		Role    *string         `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := f.into("messages", &raw, "a list of {role, content} objects"); err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, badRequest("messages", "messages is empty: give at least one user message")
	}
	msgs := make([]template.Message, len(raw))
	for i, m := range raw {
		param := fmt.Sprintf("messages[%d]", i)
		if m.Role == nil {
			return nil, badRequest(param, "%s has no role", param)
		}
		role := *m.Role
		switch role {
		case "developer":
			role = "system"
		case "tool":
			role = template.Observation
		case "system", template.User, template.Assistant:
		default:
			return nil, badRequest(param+".role", "%s.role %q: use system, developer, user, assistant or tool", param, role)
		}
		text, err := contentText(m.Content)
		if err != nil {
			return nil, badRequest(param+".content", "%s.content: %v", param, err)
		}
		if text == nil && role != template.Assistant {
			return nil, badRequest(param+".content", "%s (%s) has no content", param, role)
		}
		msgs[i] = template.Message{Role: role}
		if text != nil {
			msgs[i].Content = *text
		}
	}
	return msgs, nil
}

// contentText is a message's text: the string, or its text parts joined;
// nil for null or absent.
func contentText(raw json.RawMessage) (*string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return &s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, errors.New(`use a string or a list of {"type": "text", "text": ...} parts`)
	}
	var b strings.Builder
	for j, p := range parts {
		if p.Type != "text" {
			return nil, fmt.Errorf("part %d has type %q: only text parts are supported", j, p.Type)
		}
		b.WriteString(p.Text)
	}
	t := b.String()
	return &t, nil
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) error {
	f, err := decodeBody(r)
	if err != nil {
		return err
	}
	ids, err := s.completionPrompt(f)
	if err != nil {
		return err
	}
	q, err := parseCommon(f)
	if err != nil {
		return err
	}
	if f.has("logprobs") {
		n, err := f.integer("logprobs", 0, 0, 20)
		if err != nil {
			return err
		}
		q.Logprobs, q.TopLogprobs = true, n
	}
	id, created := randomID("cmpl-"), time.Now().Unix()
	head := func() map[string]any {
		return map[string]any{"id": id, "object": "text_completion", "created": created, "model": s.o.Alias, "system_fingerprint": fingerprint}
	}
	choice := func(text string, lps []TokenLogprob, finish string) map[string]any {
		var fr any
		if finish != "" {
			fr = finish
		}
		c := head()
		c["choices"] = []any{map[string]any{"index": 0, "text": text, "logprobs": legacyLogprobs(q.Logprobs, lps), "finish_reason": fr}}
		return c
	}
	return s.generate(w, r, ids, q, shape{param: "prompt", chunk: choice, whole: choice, usage: head})
}

// legacyLogprobs is /v1/completions' form: parallel lists.
func legacyLogprobs(on bool, lps []TokenLogprob) any {
	if !on {
		return nil
	}
	toks, lp, offs, tops := []string{}, []float64{}, []int{}, []map[string]float64{}
	off := 0
	for _, t := range lps {
		toks, lp, offs = append(toks, t.Token), append(lp, t.Logprob), append(offs, off)
		off += len(t.Token)
		top := map[string]float64{}
		for _, a := range t.Top {
			top[a.Token] = a.Logprob
		}
		tops = append(tops, top)
	}
	return map[string]any{"tokens": toks, "token_logprobs": lp, "top_logprobs": tops, "text_offset": offs}
}

// completionPrompt reads prompt: text (BOS added, no template), a list of
// one text, or token ids.
func (s *Server) completionPrompt(f fields) ([]int32, error) {
	if !f.has("prompt") {
		return nil, badRequest("prompt", "prompt is required: a string or a list of token ids")
	}
	var text string
	if json.Unmarshal(f["prompt"], &text) == nil {
		return s.o.Tok.ModelInput(text), nil
	}
	var texts []string
	if json.Unmarshal(f["prompt"], &texts) == nil {
		if len(texts) != 1 {
			return nil, badRequest("prompt", "prompt has %d strings: send one per request", len(texts))
		}
		return s.o.Tok.ModelInput(texts[0]), nil
	}
	var ids []int32
	if err := f.into("prompt", &ids, "a string, a list of one string or a list of token ids"); err != nil {
		return nil, err
	}
	for i, id := range ids {
		if id < 0 || int(id) >= s.o.Model.Config.VocabSize {
			return nil, badRequest("prompt", "prompt[%d] = %d is not a token id (0 to %d)", i, id, s.o.Model.Config.VocabSize-1)
		}
	}
	return ids, nil
}

// shape builds an endpoint's response objects.
type shape struct {
	param string                                                              // the field the prompt came from, named when it is too long
	first func() map[string]any                                               // the stream's opening chunk, if any
	chunk func(text string, lps []TokenLogprob, finish string) map[string]any // a streamed delta
	usage func() map[string]any                                               // the head of the usage chunk
	whole func(text string, lps []TokenLogprob, finish string) map[string]any // the answer when not streamed
}

// generate runs a prompt and answers it whole or as server-sent events.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, ids []int32, q request, sh shape) error {
	if len(ids) >= s.e.Ctx() {
		return &apiError{status: http.StatusBadRequest, typ: "exceed_context_size_error", param: sh.param, code: "context_length_exceeded",
			msg: fmt.Sprintf("the prompt has %d tokens, and the context is %d tokens: shorten it (or start the server with a larger --ctx)", len(ids), s.e.Ctx())}
	}
	t, err := s.e.Submit(r.Context(), ids, q.Params)
	switch {
	case errors.Is(err, ErrBusy):
		return &apiError{status: http.StatusTooManyRequests, typ: "server_busy", code: "rate_limit_exceeded", msg: err.Error()}
	case errors.Is(err, ErrClosing):
		return &apiError{status: http.StatusServiceUnavailable, typ: "unavailable_error", msg: err.Error()}
	case err != nil:
		return badRequest("", "%v", err)
	}
	ctx := r.Context()
	evs, ok := t.Next(ctx)
	if !ok {
		return nil // the client is gone
	}
	if evs[0].Err != nil {
		return evs[0].Err
	}
	if !q.stream {
		var text strings.Builder
		var lps []TokenLogprob
		for {
			for _, e := range evs {
				if e.Err != nil {
					return e.Err
				}
				text.WriteString(e.Text)
				lps = append(lps, e.Logprobs...)
				if e.Finish != "" {
					resp := sh.whole(text.String(), lps, e.Finish)
					resp["usage"] = e.Usage
					resp["timings"] = e.Timings
					writeJSON(w, http.StatusOK, resp)
					return nil
				}
			}
			if evs, ok = t.Next(ctx); !ok {
				return nil
			}
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	if sh.first != nil {
		send(sh.first())
	}
	for {
		for _, e := range evs {
			if e.Err != nil {
				send(errorBody(&apiError{typ: "server_error", msg: e.Err.Error(), code: 500}))
				return nil
			}
			if e.Text != "" || len(e.Logprobs) > 0 {
				send(sh.chunk(e.Text, e.Logprobs, ""))
			}
			if e.Finish != "" {
				last := sh.chunk("", nil, e.Finish)
				last["timings"] = e.Timings
				send(last)
				if q.includeUsage {
					u := sh.usage()
					u["choices"] = []any{}
					u["usage"] = e.Usage
					send(u)
				}
				fmt.Fprint(w, "data: [DONE]\n\n")
				w.(http.Flusher).Flush()
				return nil
			}
		}
		w.(http.Flusher).Flush()
		if evs, ok = t.Next(ctx); !ok {
			return nil
		}
	}
}
