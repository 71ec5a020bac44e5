package serve

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"zhllama/llama"
	"zhllama/sample"
	"zhllama/spm"
)

// Params say how one request generates.
type Params struct {
	MaxTokens        int // 0: until EOS or the slot's context is full
	Sample           sample.Params
	Stop             []string // text that ends the output, left out of it
	PresencePenalty  float64  // OpenAI's: subtracted once from every generated token's logit
	FrequencyPenalty float64  // OpenAI's: subtracted per occurrence
	Logprobs         bool     // report each token's log-probability
	TopLogprobs      int      // and this many alternatives
}

// TokenLogprob is one generated token's log-probability under the raw
// logits (before penalties and sampling filters), with the most likely
// alternatives.
type TokenLogprob struct {
	Token   string         `json:"token"`
	Logprob float64        `json:"logprob"`
	Bytes   []int          `json:"bytes"`
	Top     []TokenLogprob `json:"top_logprobs,omitempty"`
}

// Event is what a request receives as it runs: text that became final,
// and at the end the reason and counts.
type Event struct {
	Text     string
	Logprobs []TokenLogprob
	Finish   string // "stop" or "length" on the last event; "" before
	Err      error  // the request failed; the last event
	Usage    Usage
	Timings  Timings
}

// Usage counts a request's tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Timings is llama.cpp's timing extension to a response.
type Timings struct {
	PromptN             int     `json:"prompt_n"`
	PromptMS            float64 `json:"prompt_ms"`
	PromptPerSecond     float64 `json:"prompt_per_second"`
	PredictedN          int     `json:"predicted_n"`
	PredictedMS         float64 `json:"predicted_ms"`
	PredictedPerSecond  float64 `json:"predicted_per_second"`
	PredictedPerTokenMS float64 `json:"predicted_per_token_ms"`
}

// Errors Submit returns.
var (
	ErrBusy    = errors.New("the server's queue is full: retry later")
	ErrClosing = errors.New("the server is shutting down")
)

// Task is a submitted request: its events arrive in order through Next.
type Task struct {
	ctx    context.Context
	prompt []int32
	p      Params

	mu     sync.Mutex
	events []Event
	notify chan struct{}
}

func (t *Task) push(e Event) {
	t.mu.Lock()
	t.events = append(t.events, e)
	t.mu.Unlock()
	select {
	case t.notify <- struct{}{}:
	default:
	}
}

// Next waits for the next events; ok is false when ctx ends first. The
// engine never waits on a reader, so a slow client holds no one up.
func (t *Task) Next(ctx context.Context) (evs []Event, ok bool) {
	for {
		t.mu.Lock()
		evs, t.events = t.events, nil
		t.mu.Unlock()
		if len(evs) > 0 {
			return evs, true
		}
		select {
		case <-t.notify:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// Engine owns the model: one goroutine feeds every running request's
// tokens to the model in one Step per loop (continuous batching). Each of
// its slots is a row of the KV cache; a request takes a free slot between
// steps and gives it back when it ends or its client goes away.
type Engine struct {
	m        *llama.Model
	tok      *spm.Processor
	eos      int
	ctx      int // tokens a slot holds
	batch    int // prompt tokens fed per step at most, over all prefilling slots
	cache    *llama.Cache
	slots    []*slot
	feed     [][]int32
	queue    chan *Task
	jobs     chan func()
	quit     chan struct{}
	done     chan struct{}
	closeMu  sync.Mutex
	closed   bool
	stats    *metrics
	lastTok  []int32
	rawSaved []float32
}

type slot struct {
	t         *Task
	fed       int // prompt tokens fed
	sampler   *sample.Sampler
	counts    map[int]int
	n         int // tokens generated
	maxTokens int
	detok     *spm.Detokenizer
	pending   string // text held back: it could begin a stop string
	lps       []TokenLogprob
	start     time.Time
	prompted  time.Time // the prompt's last token was fed
}

// EngineOptions size an engine.
type EngineOptions struct {
	Parallel int // slots (default 4)
	Ctx      int // tokens per slot (default: the model's context)
	Batch    int // prompt tokens per step (default 256)
	Queue    int // requests waiting for a slot at most (default 64)
	// HalfCache keeps the slots' keys and values as float16: half the
	// memory a slot holds.
	HalfCache bool
}

// NewEngine starts the model's goroutine.
func NewEngine(m *llama.Model, tok *spm.Processor, o EngineOptions) *Engine {
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.Ctx <= 0 || o.Ctx > m.Config.MaxPositionEmbeddings {
		o.Ctx = m.Config.MaxPositionEmbeddings
	}
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Queue <= 0 {
		o.Queue = 64
	}
	e := &Engine{m: m, tok: tok, eos: tok.SpecialID("eos"), ctx: o.Ctx, batch: o.Batch,
		cache: m.NewCache(o.Parallel, o.Ctx, o.HalfCache), slots: make([]*slot, o.Parallel), feed: make([][]int32, o.Parallel),
		lastTok: make([]int32, o.Parallel),
		queue:   make(chan *Task, o.Queue), jobs: make(chan func()), quit: make(chan struct{}), done: make(chan struct{}),
		stats: newMetrics()}
	go e.run()
	return e
}

// Ctx is the most tokens a request (prompt and output) can hold.
func (e *Engine) Ctx() int { return e.ctx }

// Submit queues a request; it runs until it ends or ctx does.
func (e *Engine) Submit(ctx context.Context, prompt []int32, p Params) (*Task, error) {
	if len(prompt) == 0 {
		return nil, errors.New("the prompt is empty")
	}
	if len(prompt) >= e.ctx {
		return nil, fmt.Errorf("the prompt has %d tokens, and the context is %d", len(prompt), e.ctx)
	}
	t := &Task{ctx: ctx, prompt: prompt, p: p, notify: make(chan struct{}, 1)}
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return nil, ErrClosing
	}
	select {
	case e.queue <- t:
		e.stats.deferred.Add(1)
		return t, nil
	default:
		return nil, ErrBusy
	}
}

// Do runs f on the model's goroutine between steps (work that needs the
// model alone, such as scoring) and waits for it.
func (e *Engine) Do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case e.jobs <- func() { defer close(done); f() }:
	case <-e.done:
		return ErrClosing
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

// Close finishes the requests already running or queued, then stops.
func (e *Engine) Close() {
	e.closeMu.Lock()
	if !e.closed {
		e.closed = true
		close(e.quit)
	}
	e.closeMu.Unlock()
	<-e.done
}

func (e *Engine) busy() int {
	n := 0
	for _, s := range e.slots {
		if s != nil {
			n++
		}
	}
	return n
}

func (e *Engine) run() {
	defer close(e.done)
	quit, closing := e.quit, false
	for {
		if e.busy() == 0 {
			if closing && len(e.queue) == 0 {
				return
			}
			select {
			case t := <-e.queue:
				e.admit(t)
			case job := <-e.jobs:
				job()
			case <-quit:
				// No new tasks come; those queued still run.
				quit, closing = nil, true
			}
			continue
		}
	admit:
		for e.busy() < len(e.slots) {
			select {
			case t := <-e.queue:
				e.admit(t)
			default:
				break admit
			}
		}
		select {
		case job := <-e.jobs:
			job()
		default:
		}
		e.step()
	}
}

func (e *Engine) admit(t *Task) {
	e.stats.deferred.Add(-1)
	if t.ctx.Err() != nil {
		return
	}
	i := 0
	for e.slots[i] != nil {
		i++
	}
	e.cache.KV.Reset(i)
	s := &slot{t: t, sampler: sample.New(t.p.Sample, 0), counts: map[int]int{}, detok: e.tok.NewDetokenizer(), start: time.Now()}
	for _, id := range t.prompt {
		s.sampler.Observe(int(id))
	}
	s.maxTokens = e.ctx - len(t.prompt)
	if t.p.MaxTokens > 0 {
		s.maxTokens = min(s.maxTokens, t.p.MaxTokens)
	}
	e.slots[i] = s
	e.stats.processing.Add(1)
}

// release frees slot i, its request ended with e (or gone when nil).
func (e *Engine) release(i int, ev *Event) {
	s := e.slots[i]
	if ev != nil {
		now := time.Now()
		pt := s.prompted.Sub(s.start)
		gt := now.Sub(s.prompted)
		if s.prompted.IsZero() {
			pt, gt = now.Sub(s.start), 0
		}
		ev.Usage = Usage{PromptTokens: len(s.t.prompt), CompletionTokens: s.n, TotalTokens: len(s.t.prompt) + s.n}
		ev.Timings = Timings{PromptN: len(s.t.prompt), PromptMS: ms(pt), PromptPerSecond: perSecond(len(s.t.prompt), pt),
			PredictedN: s.n, PredictedMS: ms(gt), PredictedPerSecond: perSecond(s.n, gt)}
		if s.n > 0 {
			ev.Timings.PredictedPerTokenMS = ms(gt) / float64(s.n)
		}
		e.stats.finished(len(s.t.prompt), s.n, pt, gt)
		s.t.push(*ev)
	}
	e.slots[i] = nil
	e.cache.KV.Reset(i)
	e.stats.processing.Add(-1)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// step feeds every generating slot its last token and prefilling slots
// their next prompt tokens, in one pass, then samples where a prompt is
// done.
func (e *Engine) step() {
	budget := e.batch
	for i, s := range e.slots {
		e.feed[i] = nil
		if s == nil {
			continue
		}
		if s.t.ctx.Err() != nil {
			e.release(i, nil) // the client went away: its slot is free now
			continue
		}
		if s.fed == len(s.t.prompt) {
			e.feed[i] = e.lastTok[i : i+1]
			budget--
		}
	}
	// A prompt moves on by a token a step at least, however many slots
	// are generating.
	budget = max(budget, 1)
	for i, s := range e.slots {
		if s == nil || s.fed == len(s.t.prompt) || budget <= 0 {
			continue
		}
		k := min(len(s.t.prompt)-s.fed, budget)
		e.feed[i] = s.t.prompt[s.fed : s.fed+k]
		budget -= k
	}
	logits, err := e.forward()
	if err != nil {
		for i, s := range e.slots {
			if s != nil {
				e.release(i, &Event{Err: err})
			}
		}
		return
	}
	v := e.m.Config.VocabSize
	for i, s := range e.slots {
		if s == nil || len(e.feed[i]) == 0 {
			continue
		}
		if s.fed < len(s.t.prompt) {
			s.fed += len(e.feed[i])
			if s.fed < len(s.t.prompt) {
				continue
			}
			s.prompted = time.Now()
		}
		e.next(i, logits[i*v:(i+1)*v])
	}
}

// forward runs the step; a panic in the model fails the running requests
// instead of the server.
func (e *Engine) forward() (logits []float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the model failed: %v", r)
		}
	}()
	e.stats.decodes.Add(1)
	return e.m.Step(e.cache, e.feed), nil
}

// next samples slot i's next token from row and passes on what it ends.
func (e *Engine) next(i int, row []float32) {
	s := e.slots[i]
	p := &s.t.p
	for _, x := range row {
		if x-x != 0 {
			e.release(i, &Event{Err: llama.ErrNotFinite})
			return
		}
	}
	if p.Logprobs {
		e.rawSaved = append(e.rawSaved[:0], row...)
	}
	if p.PresencePenalty != 0 || p.FrequencyPenalty != 0 {
		for id, c := range s.counts {
			row[id] -= float32(float64(c)*p.FrequencyPenalty + p.PresencePenalty)
		}
	}
	id := s.sampler.Next(row)
	s.counts[id]++
	s.n++
	if id == e.eos {
		e.finish(i, "stop")
		return
	}
	if p.Logprobs {
		s.lps = append(s.lps, e.logprob(e.rawSaved, id, p.TopLogprobs))
	}
	s.pending += s.detok.Add(id)
	out, hold, hit := cutStop(s.pending, p.Stop)
	if hit {
		s.pending = out
		e.finish(i, "stop")
		return
	}
	// The token just sampled is fed next, so it must fit the cache.
	if s.n >= s.maxTokens || e.cache.Len(i)+1 >= e.ctx {
		e.finish(i, "length")
		return
	}
	s.pending = hold
	if out != "" || len(s.lps) > 0 {
		s.t.push(Event{Text: out, Logprobs: s.lps})
		s.lps = nil
	}
	e.lastTok[i] = int32(id)
}

// finish sends slot i's last text (a stop string cut off) and frees it.
func (e *Engine) finish(i int, reason string) {
	s := e.slots[i]
	text, _, hit := cutStop(s.pending+s.detok.Flush(), s.t.p.Stop)
	if hit {
		reason = "stop"
	}
	e.release(i, &Event{Text: text, Logprobs: s.lps, Finish: reason})
}

// cutStop splits text not yet sent at the first stop string (hit), or
// else into what can be sent and a tail that could still begin one.
func cutStop(text string, stops []string) (send, hold string, hit bool) {
	first := -1
	for _, st := range stops {
		if j := strings.Index(text, st); j >= 0 && (first < 0 || j < first) {
			first = j
		}
	}
	if first >= 0 {
		return text[:first], "", true
	}
	h := 0
	for _, st := range stops {
		for k := min(len(st)-1, len(text)); k > h; k-- {
			if strings.HasSuffix(text, st[:k]) {
				h = k
				break
			}
		}
	}
	return text[:len(text)-h], text[len(text)-h:], false
}

// logprob is token id's log-probability under the softmax of raw, with
// the top most likely tokens.
func (e *Engine) logprob(raw []float32, id, top int) TokenLogprob {
	mx := raw[0]
	for _, x := range raw {
		mx = max(mx, x)
	}
	var sum float64
	for _, x := range raw {
		sum += math.Exp(float64(x - mx))
	}
	lse := float64(mx) + math.Log(sum)
	lp := e.tokenLogprob(id, float64(raw[id])-lse)
	if top > 0 {
		idx := make([]int, len(raw))
		for j := range idx {
			idx[j] = j
		}
		sort.SliceStable(idx, func(a, b int) bool { return raw[idx[a]] > raw[idx[b]] })
		for _, j := range idx[:min(top, len(idx))] {
			lp.Top = append(lp.Top, e.tokenLogprob(j, float64(raw[j])-lse))
		}
	}
	return lp
}

// tokenLogprob names a token by its text: a byte piece by the byte it
// stands for.
func (e *Engine) tokenLogprob(id int, lp float64) TokenLogprob {
	var b []byte
	if id >= e.tok.Size() {
		// A row of a vocabulary padded past the tokenizer's: no text.
	} else if e.tok.Type(id) == spm.Byte {
		var v byte
		fmt.Sscanf(e.tok.IDToPiece(id), "<0x%02X>", &v)
		b = []byte{v}
	} else if e.tok.Type(id) == spm.Normal || e.tok.Type(id) == spm.UserDefined {
		b = []byte(strings.ReplaceAll(e.tok.IDToPiece(id), spm.SpaceSymbol, " "))
	}
	ints := make([]int, len(b))
	for k, c := range b {
		ints[k] = int(c)
	}
	return TokenLogprob{Token: strings.ToValidUTF8(string(b), "\uFFFD"), Logprob: lp, Bytes: ints}
}
