package serve

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/internal/testenv/spmtest"
	"zhllama/llama"
	"zhllama/spm"
	"zhllama/template"
)

// TestMain lists the tests skipped for want of shared data or a tool.
func TestMain(m *testing.M) { testenv.Main(m) }

// tinyModel is a random tiny LLaMA with LLaMA-2's tokenizer.
func tinyModel(t testing.TB) (*llama.Model, *spm.Processor) {
	t.Helper()
	tok := spmtest.Processor(t, "tokenizers/llama2/tokenizer.model")
	c, err := llama.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	c.VocabSize = tok.Size()
	m := llama.NewModel(c)
	m.Randomize(3)
	return m, tok
}

// testServer serves a tiny model over HTTP; edit adjusts the options.
func testServer(t testing.TB, edit func(*Options)) (*Server, *httptest.Server) {
	t.Helper()
	m, tok := tinyModel(t)
	tpl, err := template.Get("llama2_zh")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Model: m, Tok: tok, Renderer: TemplateRenderer{T: tpl, Tok: tok}, Alias: "tiny", Engine: EngineOptions{Parallel: 4}}
	if edit != nil {
		edit(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	return s, hs
}

// post sends a JSON body and returns the status and body.
func post(t testing.TB, url, body string, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return v
}

// sseEvents splits a stream body into its data payloads, checking the
// wire format: every event is one "data: " line and a blank line.
func sseEvents(t testing.TB, body []byte) []string {
	t.Helper()
	if !bytes.HasSuffix(body, []byte("\n\n")) {
		t.Fatalf("stream does not end with a blank line: %q", body)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	blank := true
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			blank = true
			continue
		}
		if !blank || !strings.HasPrefix(line, "data: ") {
			t.Fatalf("bad SSE line %q in %q", line, body)
		}
		blank = false
		out = append(out, strings.TrimPrefix(line, "data: "))
	}
	return out
}
