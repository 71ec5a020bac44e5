package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"zhllama/hfdir"
	"zhllama/internal/atomicfile"
	"zhllama/llama"
	"zhllama/spm"
	chattpl "zhllama/template"
)

// runReport is what a pipeline run leaves in report.json and report.html.
type runReport struct {
	Title     string        `json:"title"`
	Pipeline  string        `json:"pipeline"`
	OutputDir string        `json:"output_dir"`
	Started   time.Time     `json:"started"`
	Stages    []stageReport `json:"stages"`
}

// stageReport is one stage: how it went, its numbers, curves, evaluation
// tables and sample answers.
type stageReport struct {
	Name    string             `json:"name"`
	Run     string             `json:"run"`
	Dir     string             `json:"dir"`
	Args    []string           `json:"args"`
	Status  string             `json:"status"` // ran, skipped or failed
	Seconds float64            `json:"seconds"`
	Error   string             `json:"error,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Tables  []textTable        `json:"tables,omitempty"`
	Plots   []string           `json:"plots,omitempty"` // SVG files in Dir
	Samples []sampleRow        `json:"samples,omitempty"`
	Notes   []string           `json:"notes,omitempty"`
}

type textTable struct {
	Title string `json:"title"`
	Text  string `json:"text"`
}

type sampleRow struct {
	Prompt string `json:"prompt"`
	Before string `json:"before"`
	After  string `json:"after"`
}

func (r *runReport) add(s stageReport) {
	for i := range r.Stages {
		if r.Stages[i].Name == s.Name {
			r.Stages[i] = s
			return
		}
	}
	r.Stages = append(r.Stages, s)
}

// collect reads what the stage's command left in its folder: training's
// metrics.jsonl (the first and last loss, the last of every other
// number), the *results.json files of eval and the like, results.log
// tables, and the SVG charts.
func (s *stageReport) collect() {
	s.Metrics = map[string]float64{}
	if f, err := os.Open(filepath.Join(s.Dir, "metrics.jsonl")); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			for k, v := range rec {
				if x, ok := v.(float64); ok {
					if _, seen := s.Metrics["first_"+k]; !seen && k == "loss" {
						s.Metrics["first_loss"] = x
					}
					s.Metrics[k] = x
				}
			}
		}
		f.Close()
	}
	results, _ := filepath.Glob(filepath.Join(s.Dir, "*results.json"))
	for _, path := range results {
		var rec map[string]any
		if readJSONFile(path, &rec) != nil {
			continue
		}
		for k, v := range rec {
			if x, ok := v.(float64); ok {
				s.Metrics[k] = x
			}
		}
	}
	logs, _ := filepath.Glob(filepath.Join(s.Dir, "*.log"))
	for _, path := range logs {
		if b, err := os.ReadFile(path); err == nil && len(b) < 1<<16 {
			s.Tables = append(s.Tables, textTable{Title: filepath.Base(path), Text: string(b)})
		}
	}
	svgs, _ := filepath.Glob(filepath.Join(s.Dir, "*.svg"))
	for _, path := range svgs {
		s.Plots = append(s.Plots, filepath.Base(path))
	}
	if len(s.Metrics) == 0 {
		s.Metrics = nil
	}
}

// trainedModel is a model a stage trained: a full model directory, or a
// base with adapters merged in order.
type trainedModel struct {
	dir      string
	adapters []string
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// stageModel is the model a train stage wrote to own: its adapter on the
// stage's model (and adapters), or the full model.
func stageModel(own string, keys map[string]string) trainedModel {
	if _, err := os.Stat(filepath.Join(own, "adapter_config.json")); err == nil {
		return trainedModel{dir: keys["model_name_or_path"], adapters: append(splitList(keys["adapter_name_or_path"]), own)}
	}
	return trainedModel{dir: own}
}

func (t trainedModel) load() (*llama.Model, *spm.Processor, error) {
	m, err := hfdir.Load(t.dir)
	if err != nil {
		return nil, nil, err
	}
	for _, a := range t.adapters {
		if _, _, err := hfdir.LoadAdapter(m, a, llama.DefaultAdapter); err != nil {
			return nil, nil, err
		}
		if err := m.MergeLoRA(); err != nil {
			return nil, nil, err
		}
	}
	dirs := append(slices.Clone(t.adapters), t.dir)
	slices.Reverse(dirs[:len(dirs)-1])
	p, err := spm.LoadProcessor(filepath.Join(hfdir.TokenizerDir(dirs...), "tokenizer.model"))
	if err != nil {
		return nil, nil, err
	}
	return m, p, nil
}

// sampleAnswerTokens is how long a sample answer may grow.
const sampleAnswerTokens = 64

// sampler has models answer a pipeline's sample prompts greedily,
// remembering each model's answers under each template: the model a stage
// starts from is the one the stage before it trained, answered already.
type sampler struct {
	prompts  []string
	answered map[string][]string // model and template → answers
}

// rows has the models before and after a training stage answer the
// prompts: through the stage's template, or, for pretraining, as text to
// continue.
func (sm *sampler) rows(before, after trainedModel, keys map[string]string) ([]sampleRow, error) {
	tplName := ""
	if keys["stage"] != "pt" {
		if tplName = keys["template"]; tplName == "" {
			tplName = "default" // train's default
		}
	}
	b, err := sm.answers(before, tplName)
	if err != nil {
		return nil, err
	}
	a, err := sm.answers(after, tplName)
	if err != nil {
		return nil, err
	}
	rows := make([]sampleRow, len(sm.prompts))
	for i, q := range sm.prompts {
		rows[i] = sampleRow{Prompt: q, Before: b[i], After: a[i]}
	}
	return rows, nil
}

func (sm *sampler) answers(tm trainedModel, tplName string) ([]string, error) {
	key := strings.Join(append([]string{tplName, tm.dir}, tm.adapters...), "\x00")
	if a, ok := sm.answered[key]; ok {
		return a, nil
	}
	var tpl *chattpl.Template
	if tplName != "" {
		var err error
		if tpl, err = chattpl.Get(tplName); err != nil {
			return nil, err
		}
	}
	m, p, err := tm.load()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	ids := make([][]int32, len(sm.prompts))
	for i, q := range sm.prompts {
		if tpl == nil {
			ids[i] = p.ModelInput(q)
		} else if ids[i], err = tpl.Prompt(p, []chattpl.Message{{Role: chattpl.User, Content: q}}, ""); err != nil {
			return nil, err
		}
	}
	s := llama.Sampling{MaxNewTokens: sampleAnswerTokens}
	if eos := p.SpecialID("eos"); eos >= 0 {
		s.StopIDs = []int{eos}
	}
	outs, err := m.GenerateBatch(ids, s, nil)
	if err != nil {
		return nil, err
	}
	texts := make([]string, len(outs))
	for i, o := range outs {
		if n := len(o); n > 0 && slices.Contains(s.StopIDs, o[n-1]) {
			o = o[:n-1]
		}
		texts[i], _ = p.Decode(o)
	}
	if sm.answered == nil {
		sm.answered = map[string][]string{}
	}
	sm.answered[key] = texts
	return texts, nil
}

// write saves report.json and report.html in dir.
func (r *runReport) write(dir string) error {
	if err := atomicfile.WriteJSON(filepath.Join(dir, "report.json"), r); err != nil {
		return err
	}
	var b bytes.Buffer
	if err := reportPage.Execute(&b, r); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, "report.html"), b.Bytes())
}

var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"metrics": func(m map[string]float64) [][2]string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		rows := make([][2]string, len(keys))
		for i, k := range keys {
			v := m[k]
			s := fmt.Sprintf("%.4g", v)
			if v == math.Trunc(v) && math.Abs(v) < 1e9 {
				s = fmt.Sprintf("%d", int64(v))
			}
			rows[i] = [2]string{k, s}
		}
		return rows
	},
	// svg inlines a chart the run drew, as an image (no script runs).
	"svg": func(dir, name string) template.URL {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return ""
		}
		return template.URL("data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString(b))
	},
	"secs": func(s float64) string {
		return (time.Duration(s * float64(time.Second))).Round(100 * time.Millisecond).String()
	},
	"args": func(a []string) string { return strings.Join(a, " ") },
}).Parse(`<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
.ran{color:#070}.skipped{color:#777}.failed{color:#b00}
pre{background:#f6f6f6;padding:.6em;overflow:auto}code{font-size:90%}img{max-width:32em;margin:.3em}
</style></head><body>
<h1>{{.Title}}</h1>
<p>Output: <code>{{.OutputDir}}</code> · started {{.Started.Format "2006-01-02 15:04:05"}}</p>
<table><tr><th>stage</th><th>command</th><th>status</th><th>time</th></tr>
{{range .Stages}}<tr><td><a href="#{{.Name}}">{{.Name}}</a></td><td>{{.Run}}</td><td class="{{.Status}}">{{.Status}}</td><td>{{secs .Seconds}}</td></tr>
{{end}}</table>
{{range $s := .Stages}}
<h2 id="{{.Name}}">{{.Name}} <small class="{{.Status}}">{{.Status}}</small></h2>
<p><code>zhllama {{.Run}} {{args .Args}}</code></p>
{{if .Error}}<pre class="failed">{{.Error}}</pre>{{end}}
{{range .Notes}}<p>{{.}}</p>{{end}}
{{if .Metrics}}<table>{{range metrics .Metrics}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table>{{end}}
{{range .Plots}}<img alt="{{.}}" src="{{svg $s.Dir .}}">{{end}}
{{range .Tables}}<h3>{{.Title}}</h3><pre>{{.Text}}</pre>{{end}}
{{if .Samples}}<h3>Samples</h3><table><tr><th>prompt</th><th>before</th><th>after</th></tr>
{{range .Samples}}<tr><td>{{.Prompt}}</td><td>{{.Before}}</td><td>{{.After}}</td></tr>{{end}}</table>{{end}}
{{end}}
</body></html>
`))
