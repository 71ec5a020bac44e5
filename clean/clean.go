package clean

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/longbridgeapp/opencc"

	"zhllama/corpus"
	"zhllama/dataset"
	"zhllama/internal/atomicfile"
	"zhllama/internal/pipeline"
	"zhllama/template"
)

// Options are the cleaning rules; zero values turn a rule off.
type Options struct {
	Dedup            string  // none, exact or minhash
	MinhashThreshold float64 // estimated Jaccard similarity that makes a near-duplicate
	ShingleSize      int     // characters per shingle

	MinChars         int     // shorter documents (or SFT answers plus prompts) go
	MaxChars         int     // longer ones go (0: no limit)
	MinChineseRatio  float64 // share of Han among letters, for documents that must be Chinese
	MaxCharRun       int     // a character repeated more times in a row marks garbage
	MaxDupLineShare  float64 // share of repeated lines
	MaxTopNgramShare float64 // share of the text covered by its most frequent 3-gram
	Boilerplate      []string

	// Instruction data.
	MinAnswerChars int      // shorter answers are trivial
	Refusals       []string // phrases of refusals and "as an AI language model" answers

	// TraditionalToSimplified converts text with OpenCC's t2s tables.
	TraditionalToSimplified bool

	// Paragraphs makes a blank-line-separated paragraph of a plain-text
	// file one document, instead of each line.
	Paragraphs bool
	Strict     bool
	Threads    int
	Log        io.Writer `json:"-"`
}

// DefaultOptions returns the rules zhllama applies unless told otherwise.
func DefaultOptions() Options {
	return Options{
		Dedup: "minhash", MinhashThreshold: 0.8, ShingleSize: 5,
		MinChars: 5, MaxCharRun: 30, MaxDupLineShare: 0.3, MaxTopNgramShare: 0.4,
		Boilerplate:    []string{"点击查看", "点击进入", "扫码关注", "关注公众号", "版权所有", "免责声明", "未经授权禁止转载", "本文来源于网络"},
		MinAnswerChars: 2,
		Refusals: []string{
			"作为一个AI", "作为一个人工智能", "作为AI语言模型", "作为一个语言模型", "作为人工智能语言模型", "我是一个AI",
			"我是一个人工智能", "我是由OpenAI", "由OpenAI训练", "我无法回答", "很抱歉，我无法", "抱歉，我不能",
			"As an AI language model", "as an AI language model", "I'm sorry, but I cannot", "I am an AI", "trained by OpenAI",
		},
	}
}

// Rule names in the report.
const (
	RuleMalformed   = "malformed"
	RuleLayout      = "wrong_layout"
	RuleRoleOrder   = "wrong_role_order"
	RuleTooShort    = "too_short"
	RuleTooLong     = "too_long"
	RuleNotChinese  = "not_chinese"
	RuleCharRun     = "repeated_characters"
	RuleDupLines    = "repeated_lines"
	RuleNgram       = "repeated_ngrams"
	RuleBoilerplate = "boilerplate"
	RuleEmptyAnswer = "empty_or_trivial_answer"
	RuleEchoAnswer  = "answer_repeats_question"
	RuleRefusal     = "refusal"
	RuleExactDup    = "exact_duplicate"
	RuleNearDup     = "near_duplicate"
)

// Report counts what each rule removed, with examples.
type Report struct {
	Inputs   []string             `json:"inputs"`
	Output   string               `json:"output"`
	Read     int64                `json:"read"`
	Kept     int64                `json:"kept"`
	Removed  map[string]int64     `json:"removed"`
	Examples map[string][]Example `json:"examples"`
	Seconds  float64              `json:"seconds"`
	Options  Options              `json:"options"`
}

// Example is a removed record, shortened.
type Example struct {
	Where string `json:"where"`
	Text  string `json:"text"`
	Why   string `json:"why,omitempty"`
}

const examplesPerRule = 3

func (r *Report) remove(rule string, loc corpus.Location, text, why string) {
	r.Removed[rule]++
	if len(r.Examples[rule]) < examplesPerRule {
		if utf8.RuneCountInString(text) > 160 {
			text = string([]rune(text)[:160]) + "…"
		}
		r.Examples[rule] = append(r.Examples[rule], Example{Where: loc.String(), Text: text, Why: why})
	}
}

// Summary is the report in a few readable lines.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "read %d records, kept %d (%.1f%%), removed %d, in %.1fs\n", r.Read, r.Kept, 100*float64(r.Kept)/float64(max(r.Read, 1)), r.Read-r.Kept, r.Seconds)
	rules := make([]string, 0, len(r.Removed))
	for k := range r.Removed {
		rules = append(rules, k)
	}
	sort.Slice(rules, func(i, j int) bool { return r.Removed[rules[i]] > r.Removed[rules[j]] })
	for _, k := range rules {
		fmt.Fprintf(&b, "  %-26s %8d", k, r.Removed[k])
		if ex := r.Examples[k]; len(ex) > 0 {
			t := []rune(strings.ReplaceAll(ex[0].Text, "\n", " "))
			fmt.Fprintf(&b, "   e.g. %s %q", ex[0].Where, string(t[:min(len(t), 50)]))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// item is one record on its way through the workers.
type item struct {
	rec    corpus.Record
	layout *dataset.Layout // nil for pretraining text
	loc    corpus.Location
	out    []byte // the cleaned record as a JSON line
	text   string // the text that dedup compares
	rule   string // set when a rule removed the record
	why    string
	sig    signature
	hasS   bool
}

// Run cleans the inputs into output (JSON Lines, one record a line, in the
// input's layout), and returns the report.
func Run(inputs []string, output string, o Options) (*Report, error) {
	switch o.Dedup {
	case "none", "exact", "minhash":
	default:
		return nil, fmt.Errorf("--dedup=%s: use none, exact or minhash", o.Dedup)
	}
	if o.Dedup == "minhash" && (o.MinhashThreshold <= 0 || o.MinhashThreshold > 1) {
		return nil, fmt.Errorf("--minhash_threshold=%g must be in (0, 1]", o.MinhashThreshold)
	}
	if o.Threads <= 0 {
		o.Threads = runtime.GOMAXPROCS(0)
	}
	var t2s *opencc.OpenCC
	if o.TraditionalToSimplified {
		var err error
		if t2s, err = opencc.New("t2s"); err != nil {
			return nil, fmt.Errorf("loading the traditional-to-simplified tables: %w", err)
		}
	}
	start := time.Now()
	rep := &Report{Inputs: inputs, Output: output, Removed: map[string]int64{}, Examples: map[string][]Example{}, Options: o}
	if err := os.MkdirAll(filepath.Dir(output), 0o755); err != nil {
		return nil, err
	}
	w, err := atomicfile.Create(output)
	if err != nil {
		return nil, err
	}
	defer w.Abort()

	k := &keeper{o: o, rep: rep, w: w, exact: map[uint64]struct{}{}, start: start, lastLog: start}
	if o.Dedup == "minhash" {
		k.near = newNearDup(o.MinhashThreshold)
	}
	work := func(_ int, batch []item) []item {
		for i := range batch {
			analyze(&batch[i], o, t2s)
		}
		return batch
	}
	if err := pipeline.Ordered(o.Threads, readItems(inputs, o), work, k.sink); err != nil {
		return nil, err
	}
	if rep.Kept == 0 {
		return rep, fmt.Errorf("no record survived cleaning (%d read): the rules removed everything; see the report", rep.Read)
	}
	if err := w.Commit(); err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// readItems is the pipeline's producer: every record of the inputs, in
// order, in batches, malformed ones included as removals.
func readItems(inputs []string, o Options) func(emit func([]item) bool) error {
	return func(emit func([]item) bool) error {
		var batch []item
		for _, in := range inputs {
			var layout *dataset.Layout
			ended := false
			push := func(it item) bool {
				batch = append(batch, it)
				if len(batch) == 256 {
					if !emit(batch) {
						ended = true
						return false
					}
					batch = nil
				}
				return true
			}
			_, err := corpus.Read(in, corpus.ReadOptions{Paragraphs: o.Paragraphs, Strict: o.Strict, Bad: func(loc corpus.Location, err error) {
				// Counted in order by the sink, like every other removal.
				push(item{loc: loc, rule: RuleMalformed, why: err.Error()})
			}}, func(rec corpus.Record, loc corpus.Location) error {
				if layout == nil {
					layout = detect(rec)
				}
				if !push(item{rec: rec, loc: loc, layout: layout}) {
					return corpus.ErrStop
				}
				return nil
			})
			if err != nil {
				return err
			}
			if ended {
				return nil
			}
		}
		if len(batch) > 0 {
			emit(batch)
		}
		return nil
	}
}

// keeper is the pipeline's sink: in input order, it removes exact and
// near duplicates of what it kept, counts every removal and writes what
// is kept.
type keeper struct {
	o              Options
	rep            *Report
	w              io.Writer
	exact          map[uint64]struct{}
	near           *nearDup
	start, lastLog time.Time
}

func (k *keeper) sink(batch []item) error {
	for i := range batch {
		it := &batch[i]
		k.rep.Read++
		if it.rule == "" && k.o.Dedup != "none" {
			h := fnv.New64a()
			h.Write([]byte(it.text))
			if _, dup := k.exact[h.Sum64()]; dup {
				it.rule = RuleExactDup
			} else {
				k.exact[h.Sum64()] = struct{}{}
				if k.near != nil && it.hasS {
					if j := k.near.add(it.sig); j >= 0 {
						it.rule, it.why = RuleNearDup, fmt.Sprintf("like kept document %d", j)
					}
				}
			}
		}
		if it.rule != "" {
			k.rep.remove(it.rule, it.loc, it.text, it.why)
			continue
		}
		k.rep.Kept++
		if _, err := k.w.Write(it.out); err != nil {
			return err
		}
	}
	if k.o.Log != nil && time.Since(k.lastLog) > 2*time.Second {
		k.lastLog = time.Now()
		el := time.Since(k.start).Seconds()
		fmt.Fprintf(k.o.Log, "cleaned %d records, kept %d, %.0f records/s\n", k.rep.Read, k.rep.Kept, float64(k.rep.Read)/el)
	}
	return nil
}

// detect names the layout of a file from its first record: nil for
// pretraining text, else an instruction or preference layout.
func detect(rec corpus.Record) *dataset.Layout {
	if _, err := corpus.DocumentText(rec); err == nil {
		return nil
	}
	if d, err := dataset.Guess(rec); err == nil {
		return &d
	}
	return nil
}

// analyze normalizes a record and applies every rule but dedup.
func analyze(it *item, o Options, t2s *opencc.OpenCC) {
	if it.rule != "" {
		return // malformed
	}
	layout := it.layout
	normalizeValues(it.rec, t2s)
	var err error
	it.out, err = marshalRecord(it.rec)
	if err != nil {
		it.rule, it.why = RuleMalformed, err.Error()
		return
	}
	it.out = append(it.out, '\n')
	if layout == nil {
		text, err := corpus.DocumentText(it.rec)
		if err != nil {
			it.rule, it.why = RuleLayout, err.Error()
			return
		}
		it.text = text
		if it.rule, it.why = textRules(text, o); it.rule == "" {
			it.rule, it.why = boilerplate(text, o)
		}
	} else {
		ex, err := layout.Convert(it.rec)
		if err != nil {
			it.rule, it.why = RuleLayout, err.Error()
			if errors.Is(err, dataset.ErrRoleOrder) {
				it.rule = RuleRoleOrder
			}
			it.text = string(bytes.TrimSpace(it.out)) // the record as JSON
			return
		}
		var prompt, answers []string
		for _, m := range ex.Prompt {
			prompt = append(prompt, m.Content)
		}
		for _, m := range ex.Response {
			answers = append(answers, m.Content)
		}
		it.text = strings.Join(append(prompt, answers...), "\n")
		if it.rule, it.why = textRules(it.text, o); it.rule == "" {
			it.rule, it.why = answerRules(ex.Prompt[len(ex.Prompt)-1].Content, ex.Response, layout.Ranking, o)
		}
	}
	if it.rule == "" && o.Dedup == "minhash" {
		it.sig, it.hasS = minhash(it.text, o.ShingleSize)
	}
}

func textRules(text string, o Options) (string, string) {
	n := utf8.RuneCountInString(text)
	switch {
	case n < o.MinChars:
		return RuleTooShort, fmt.Sprintf("%d characters", n)
	case o.MaxChars > 0 && n > o.MaxChars:
		return RuleTooLong, fmt.Sprintf("%d characters", n)
	}
	if o.MinChineseRatio > 0 {
		if r := ChineseRatio(text); r < o.MinChineseRatio {
			return RuleNotChinese, fmt.Sprintf("%.2f Chinese", r)
		}
	}
	if o.MaxCharRun > 0 {
		if r := longestRun(text); r > o.MaxCharRun {
			return RuleCharRun, fmt.Sprintf("a character %d times in a row", r)
		}
	}
	if o.MaxDupLineShare > 0 {
		if s := duplicateLineShare(text); s > o.MaxDupLineShare {
			return RuleDupLines, fmt.Sprintf("%.0f%% of lines repeated", 100*s)
		}
	}
	if o.MaxTopNgramShare > 0 {
		if s := topNgramShare(text, 3); s > o.MaxTopNgramShare {
			return RuleNgram, fmt.Sprintf("one 3-gram covers %.0f%%", 100*s)
		}
	}
	return "", ""
}

// boilerplate finds web boilerplate in pretraining text (instructions may
// legitimately say "点击进入").
func boilerplate(text string, o Options) (string, string) {
	for _, p := range o.Boilerplate {
		if p != "" && strings.Contains(text, p) {
			return RuleBoilerplate, p
		}
	}
	return "", ""
}

func answerRules(question string, answers []template.Message, ranking bool, o Options) (string, string) {
	for i, a := range answers {
		if ranking && i == 1 {
			break // a rejected answer is meant to be bad
		}
		ans := strings.TrimSpace(a.Content)
		if utf8.RuneCountInString(ans) < o.MinAnswerChars {
			return RuleEmptyAnswer, fmt.Sprintf("answer %q", ans)
		}
		if q := strings.TrimSpace(question); q != "" && (ans == q || strings.HasPrefix(ans, q) && utf8.RuneCountInString(ans) < 2*utf8.RuneCountInString(q)) {
			return RuleEchoAnswer, ""
		}
		for _, p := range o.Refusals {
			if p != "" && strings.Contains(ans, p) {
				return RuleRefusal, p
			}
		}
	}
	return "", ""
}

// normalizeValues applies NormalizeText (and t2s, if given) to every
// string in a record.
func normalizeValues(v any, t2s *opencc.OpenCC) any {
	switch x := v.(type) {
	case string:
		s := NormalizeText(x)
		if t2s != nil {
			if c, err := t2s.Convert(s); err == nil {
				s = c
			}
		}
		return s
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeValues(e, t2s)
		}
	case corpus.Record:
		for k, e := range x {
			x[k] = normalizeValues(e, t2s)
		}
	case []any:
		for i, e := range x {
			x[i] = normalizeValues(e, t2s)
		}
	}
	return v
}

// fieldOrder lists the known fields first, in the order the formats
// write them; other fields follow alphabetically.
var fieldOrder = []string{"text", "completion", "content", "source", "instruction", "input", "output", "question",
	"response_chosen", "response_rejected", "conversations", "messages", "chosen", "rejected", "system", "tools", "history"}

func marshalRecord(rec corpus.Record) ([]byte, error) {
	rank := map[string]int{}
	for i, f := range fieldOrder {
		rank[f] = i
	}
	keys := make([]string, 0, len(rec))
	for k := range rec {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		ri, iok := rank[keys[i]]
		rj, jok := rank[keys[j]]
		switch {
		case iok && jok:
			return ri < rj
		case iok != jok:
			return iok
		}
		return keys[i] < keys[j]
	})
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		kb, _ := json.Marshal(k)
		vb, err := marshalNoEscape(rec[k])
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, kb...), ':'), vb...)
	}
	return append(b, '}'), nil
}

func marshalNoEscape(v any) ([]byte, error) {
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(sb.String(), "\n")), nil
}

// WriteReport writes the report as indented JSON through a temporary file.
func WriteReport(path string, r *Report) error {
	return atomicfile.WriteJSON(path, r)
}
