package serve

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// Any body on any endpoint is answered, never a panic: a success, or an
// error in OpenAI's envelope with a 4xx status.
func FuzzRequests(f *testing.F) {
	for _, seed := range []string{
		`{"messages":[{"role":"user","content":"你好"}],"max_tokens":3,"stop":["a"],"logprobs":true,"top_logprobs":2}`,
		`{"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"q"}]}],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"prompt":[1,2,3],"max_tokens":2,"logprobs":1,"presence_penalty":1.5,"frequency_penalty":-2}`,
		`{"prompt":"<s>hi</s>","temperature":0,"seed":-5,"n":1}`,
		`{"content":"<s>你好</s>","with_pieces":true,"add_special":true}`,
		`{"tokens":[1,2,29871,30919]}`,
		`{"messages":null}`, `[]`, `nul`, `{"messages":[{}]}`, `{"prompt":[[1]]}`, `{"max_tokens":1e400}`,
	} {
		for path := range 5 {
			f.Add(path, []byte(seed))
		}
	}
	s, _ := testServer(f, func(o *Options) { o.Engine.Ctx = 24 })
	paths := []string{"/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize", "/apply-template"}
	f.Fuzz(func(t *testing.T, path int, body []byte) {
		p := paths[(path%len(paths)+len(paths))%len(paths)]
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("POST", p, bytes.NewReader(body)))
		if w.Code == 200 {
			return
		}
		var env struct {
			Error *struct{ Message, Type string }
		}
		if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil || env.Error == nil || env.Error.Message == "" || w.Code >= 500 {
			t.Fatalf("%s %q: %d %s", p, body, w.Code, w.Body.Bytes())
		}
	})
}
