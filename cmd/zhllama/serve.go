package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/serve"
	"zhllama/template"
)

func serveCommand() *command {
	return &command{name: "serve", summary: "an OpenAI-compatible HTTP server (chat and text completions, streamed) with a web page, requests batched continuously",
		usage: "--model D [--adapter A] [--template T] [--host 127.0.0.1] [--port 8000] [--api_key K] [--parallel N] [--ctx N] [--kv_cache_dtype float32|float16] [--alias NAME] [--metrics=false]",
		help: "Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics,\n" +
			"POST /tokenize, /detokenize, /apply-template, POST /v1/score/evaluation (a reward model's value head), GET / (the web page).\n" +
			"API keys come from --api_key (comma-separated), --api_key_file (one a line) or $API_KEY; without any the API is open.\n" +
			"SIGTERM or Ctrl-C stops accepting requests, finishes those in flight and exits.\n",
		run: serveRun}
}

func serveRun(args []string) error {
	fs := flagSet("serve")
	mf := addModelFlags(fs)
	tplName := addTemplateFlag(fs)
	host := fs.String("host", "127.0.0.1", "address to listen on (0.0.0.0: every interface)")
	port := fs.Int("port", 8000, "port to listen on (0: any free port)")
	keys := fs.String("api_key", "", "API keys, comma-separated (default $API_KEY); none: the API is open")
	keyFile := fs.String("api_key_file", "", "a file of API keys, one a line, # comments")
	parallel := fs.Int("parallel", 4, "slots: requests generated together")
	ctxLen := fs.Int("ctx", 0, "tokens per slot, prompt and output (0: the model's max_position_embeddings)")
	batch := fs.Int("batch", 256, "prompt tokens fed per step at most, over all slots")
	queue := fs.Int("queue", 64, "requests waiting for a slot at most; more are answered 429")
	kvCache := kvCacheFlag(fs)
	alias := fs.String("alias", "", "the model's name in the API (default: the model directory's name)")
	metrics := fs.Bool("metrics", true, "serve /metrics")
	maxBody := fs.Int64("max_body", 8<<20, "request body bytes at most")
	grace := fs.Duration("shutdown_timeout", 5*time.Minute, "on SIGTERM, how long requests in flight may take to finish")
	if err := parseFlags(fs, args, "--model D [flags]"); err != nil {
		return err
	}
	if *parallel < 1 || *batch < 1 || *queue < 1 || *ctxLen < 0 || *port < 0 || *port > 65535 {
		return usagef("--parallel, --batch and --queue must be at least 1, --ctx 0 or more, --port 0 to 65535")
	}
	half, err := halfCache(*kvCache)
	if err != nil {
		return err
	}
	if *tplName != "" {
		if _, err := template.Get(*tplName); err != nil {
			return usagef("--template: %v", err)
		}
	}
	apiKeys, err := readAPIKeys(*keys, *keyFile)
	if err != nil {
		return err
	}
	m, p, err := mf.load()
	if err != nil {
		return err
	}
	if *ctxLen > m.Config.MaxPositionEmbeddings {
		return usagef("--ctx %d passes the model's context (max_position_embeddings %d)", *ctxLen, m.Config.MaxPositionEmbeddings)
	}
	tpl, tplDesc, err := chatPrompter(*tplName, mf)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "chat prompts rendered with %s\n", tplDesc)
	head, err := valueHead(m, *mf.adapter, *mf.dir)
	if err != nil {
		return err
	}
	if *alias == "" {
		*alias = filepath.Base(filepath.Clean(*mf.dir))
	}
	s, err := serve.New(serve.Options{Model: m, Tok: p, Renderer: serve.TemplateRenderer{T: tpl, Tok: p}, ValueHead: head,
		Alias: *alias, APIKeys: apiKeys, MaxBody: *maxBody, NoMetrics: !*metrics,
		Engine: serve.EngineOptions{Parallel: *parallel, Ctx: *ctxLen, Batch: *batch, Queue: *queue, HalfCache: half}})
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		return fmt.Errorf("--host %s --port %d: %w", *host, *port, err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second}
	ctx, stop, _ := interruptible()
	defer stop()
	keyNote := "open (no API key)"
	if len(apiKeys) > 0 {
		keyNote = fmt.Sprintf("%d API key(s)", len(apiKeys))
	}
	reward := ""
	if head != nil {
		reward = ", reward scores at /v1/score/evaluation"
	}
	fmt.Fprintf(os.Stderr, "serving %s as %q on http://%s/ (%d slots of %d tokens, template %s, %s%s)\n",
		*mf.dir, *alias, ln.Addr(), *parallel, s.Engine().Ctx(), *tplName, keyNote, reward)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(os.Stderr, "stopping: no new requests; finishing those in flight")
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w (requests still running after --shutdown_timeout %s were cut)", err, *grace)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// readAPIKeys gathers the keys from the flag, the file and $API_KEY (used
// only when neither flag gives one).
func readAPIKeys(list, file string) ([]string, error) {
	var keys []string
	add := func(s string) {
		if s = strings.TrimSpace(s); s != "" && !strings.HasPrefix(s, "#") {
			keys = append(keys, s)
		}
	}
	for _, k := range strings.Split(list, ",") {
		add(k)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--api_key_file: %w", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			add(l)
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("--api_key_file %s holds no key", file)
		}
	}
	if len(keys) == 0 {
		add(os.Getenv("API_KEY"))
	}
	return keys, nil
}

// valueHead loads a reward model's value head, from the adapter if it has
// one, else the model directory; nil when neither does.
func valueHead(m *llama.Model, dirs ...string) (*llama.ValueHead, error) {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, hfdir.ValueHeadFile)); err == nil {
			return hfdir.LoadValueHead(d, m.Config.HiddenSize)
		}
	}
	return nil, nil
}
