// Package serve is zhllama's OpenAI-compatible HTTP server: chat and text
// completions (streamed as server-sent events or whole), models, health,
// metrics, tokenizer and template helpers, reward scores, and a web page,
// all over an Engine that batches the running requests into one model step.
package serve

import (
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"zhllama/llama"
	"zhllama/spm"
	"zhllama/template"
)

// Renderer turns a conversation into the prompt's ids, the assistant's
// turn left open. The built-in templates are one; a Jinja chat_template
// can be another.
type Renderer interface {
	Encode(msgs []template.Message) ([]int32, error)
}

// Options configure a server.
type Options struct {
	Model     *llama.Model
	Tok       *spm.Processor
	Renderer  Renderer
	ValueHead *llama.ValueHead // a reward model's head: enables /v1/score/evaluation
	Alias     string           // the model's id in responses
	APIKeys   []string         // none: open
	Engine    EngineOptions
	MaxBody   int64 // request body bytes at most (default 8 MiB)
	NoMetrics bool
}

// Server answers the API.
type Server struct {
	o       Options
	e       *Engine
	mux     *http.ServeMux
	created int64
	score   scorer
}

// New starts a server's engine.
func New(o Options) (*Server, error) {
	if o.Model == nil || o.Tok == nil || o.Renderer == nil {
		return nil, errors.New("serve: a model, its tokenizer and a renderer are required")
	}
	if o.Alias == "" {
		o.Alias = "zhllama"
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 8 << 20
	}
	s := &Server{o: o, e: NewEngine(o.Model, o.Tok, o.Engine), created: time.Now().Unix()}
	s.score.head = o.ValueHead
	s.mux = http.NewServeMux()
	route := func(pattern, name string, h func(w http.ResponseWriter, r *http.Request) error) {
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rw := &statusWriter{ResponseWriter: w}
			if err := h(rw, r); err != nil {
				writeError(rw, err)
			}
			s.e.stats.request(name, rw.status(), time.Since(start))
		})
	}
	route("POST /v1/chat/completions", "chat", s.chat)
	route("POST /v1/completions", "completions", s.completions)
	route("GET /v1/models", "models", s.models)
	route("GET /models", "models", s.models)
	route("GET /health", "health", s.health)
	route("GET /v1/health", "health", s.health)
	route("GET /metrics", "metrics", s.metrics)
	route("POST /tokenize", "tokenize", s.tokenize)
	route("POST /detokenize", "detokenize", s.detokenize)
	route("POST /apply-template", "apply-template", s.applyTemplate)
	route("POST /v1/score/evaluation", "score", s.scoreEvaluation)
	route("GET /{$}", "page", s.page)
	route("/", "unknown", func(w http.ResponseWriter, r *http.Request) error {
		return &apiError{status: http.StatusNotFound, typ: "not_found_error", msg: fmt.Sprintf("%s %s: no such endpoint", r.Method, r.URL.Path)}
	})
	return s, nil
}

// Engine is the server's engine.
func (s *Server) Engine() *Engine { return s.e }

// Close finishes the requests in flight and stops the engine; call it
// after http.Server.Shutdown so that none arrive meanwhile.
func (s *Server) Close() { s.e.Close() }

var publicPaths = map[string]bool{"/": true, "/health": true, "/v1/health": true, "/models": true, "/v1/models": true}

// ServeHTTP checks the API key (except on public paths and CORS
// preflights), limits the body and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Api-Key")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if len(s.o.APIKeys) > 0 && !publicPaths[r.URL.Path] && !s.keyOK(r) {
		writeError(w, &apiError{status: http.StatusUnauthorized, typ: "authentication_error", code: "invalid_api_key",
			msg: "Invalid API key: send it as Authorization: Bearer KEY or X-Api-Key: KEY"})
		s.e.stats.request("auth", http.StatusUnauthorized, 0)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.o.MaxBody)
	s.mux.ServeHTTP(w, r)
}

func (s *Server) keyOK(r *http.Request) bool {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		key = r.Header.Get("X-Api-Key")
	}
	good := 0
	for _, k := range s.o.APIKeys {
		good |= subtle.ConstantTimeCompare([]byte(strings.TrimSpace(key)), []byte(k))
	}
	return good == 1
}

// statusWriter remembers the status written, for the metrics, and passes
// flushes on.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// apiError is an error answered in OpenAI's envelope.
type apiError struct {
	status int
	typ    string
	msg    string
	param  string
	code   any
}

func (e *apiError) Error() string { return e.msg }

func badRequest(param, format string, a ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: param, msg: fmt.Sprintf(format, a...)}
}

func errorBody(e *apiError) map[string]any {
	var param any
	if e.param != "" {
		param = e.param
	}
	return map[string]any{"error": map[string]any{"message": e.msg, "type": e.typ, "param": param, "code": e.code}}
}

func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, typ: "server_error", msg: err.Error()}
	}
	writeJSON(w, ae.status, errorBody(ae))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// decodeBody reads a JSON object's fields, each left raw for its own
// checks.
func decodeBody(r *http.Request) (fields, error) {
	var f fields
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&f); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error", msg: fmt.Sprintf("the request body passes %d bytes", tooBig.Limit)}
		}
		return nil, badRequest("", "the body is not a JSON object: %v", err)
	}
	if dec.More() {
		return nil, badRequest("", "the body holds more than one JSON value")
	}
	if f == nil {
		return nil, badRequest("", "the body must be a JSON object")
	}
	return f, nil
}

func randomID(prefix string) string {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 32)
	rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return prefix + string(b)
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{
		map[string]any{"id": s.o.Alias, "object": "model", "created": s.created, "owned_by": "zhllama"}}})
	return nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	if s.o.NoMetrics {
		return &apiError{status: http.StatusNotImplemented, typ: "not_supported_error", msg: "metrics are off: start the server without --metrics=false"}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	s.e.stats.write(w)
	return nil
}

//go:embed index.html
var pageHTML []byte

func (s *Server) page(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	w.Write(pageHTML)
	return nil
}
