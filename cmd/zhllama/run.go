package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"zhllama/internal/atomicfile"
)

func runCommand() *command {
	return &command{name: "run", summary: "run a pipeline: the stages of a YAML file in order, each skipped when done and unchanged, resumed when interrupted; report.html at the end",
		usage: "PIPELINE.yaml [--output_dir D] [--force STAGE,...]",
		help: `The file names an output_dir and a list of stages, each a zhllama command with its keys:

  output_dir: runs/zh
  samples: ["介绍一下北京"]          # prompts each trained model answers in the report
  stages:
    - name: pt
      run: train                    # any command: tokenizer train, data pack, train, eval mc, export, ...
      with: {stage: pt, model_name_or_path: base, dataset: wiki.txt, finetuning_type: full}
    - name: sft
      run: train
      with:
        stage: sft
        model_name_or_path: ${pt}       # in {...} flow style, quote it: "${pt}"
        template: llama2_zh
        dataset: alpaca_zh

${NAME} is stage NAME's folder (OUTPUT_DIR/NAME), ${out} the stage's own; train and export get
output_dir ${out} unless the stage sets it. A stage whose keys and inputs (the files its values
name) are unchanged since it finished is skipped; one that was interrupted resumes from its last
checkpoint (train) or starts again. report.json and report.html in OUTPUT_DIR show each stage's
metrics, curves, evaluation results and the sample answers.
`,
		run: runPipeline}
}

// pipeline is a pipeline file.
type pipeline struct {
	path      string
	OutputDir string      `yaml:"output_dir"`
	Samples   []string    `yaml:"samples"`
	Stages    []stageSpec `yaml:"stages"`
}

// stageSpec is one stage: a command, its keys, and arguments that are not
// keys (the files of 'data pack', say).
type stageSpec struct {
	Name string    `yaml:"name"`
	Run  string    `yaml:"run"`
	With yaml.Node `yaml:"with"`
	Args []string  `yaml:"args"`
	line int
}

var stageName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// readPipeline reads and checks a pipeline file; errors name the line.
func readPipeline(path string) (*pipeline, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	p := &pipeline{path: path}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s is empty: it needs output_dir and stages", path)
	}
	dec := doc.Content[0]
	if err := decodeStrict(dec, p); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	for i := 0; i+1 < len(dec.Content); i += 2 {
		if dec.Content[i].Value == "stages" {
			for j, sn := range dec.Content[i+1].Content {
				if j < len(p.Stages) {
					p.Stages[j].line = sn.Line
				}
			}
		}
	}
	if len(p.Stages) == 0 {
		return nil, fmt.Errorf("%s: no stages: add a list under stages:", path)
	}
	seen := map[string]bool{"out": true, "output_dir": true}
	root := commands()
	for i := range p.Stages {
		s := &p.Stages[i]
		at := fmt.Sprintf("%s: line %d: stage %q", path, s.line, s.Name)
		switch {
		case !stageName.MatchString(s.Name):
			return nil, fmt.Errorf("%s: the name must be letters, digits, _ or -, starting with a letter", at)
		case seen[s.Name]:
			return nil, fmt.Errorf("%s: the name is taken (by an earlier stage, or out and output_dir, which stand for folders)", at)
		case s.Run == "":
			return nil, fmt.Errorf("%s: run: is missing: name a command, e.g. train", at)
		}
		c, cmdPath := find(root, strings.Fields(s.Run))
		if c.run == nil || len(cmdPath)-1 != len(strings.Fields(s.Run)) || s.Run == "run" || s.Run == "demo" {
			return nil, fmt.Errorf("%s: run: %q is not a command a pipeline can run ('zhllama help' lists them)", at, s.Run)
		}
		if s.With.Kind != 0 && s.With.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s: line %d: with: must be a mapping of keys to values", path, s.With.Line)
		}
		seen[s.Name] = true
	}
	return p, nil
}

// decodeStrict decodes n into v refusing unknown keys, which Node.Decode
// cannot do: through the text again, with KnownFields.
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return errors.New(strings.ReplaceAll(err.Error(), "yaml: unmarshal errors:\n  ", ""))
	}
	return nil
}

var reference = regexp.MustCompile(`\$\{([^}]*)\}`)

// stageArgs is the stage's command line: its keys as --key value (lists
// joined with commas, as the commands read them), ${...} replaced.
func (p *pipeline) stageArgs(s *stageSpec, dirs map[string]string) ([]string, map[string]string, error) {
	keys := map[string]string{}
	var order []string
	at := fmt.Sprintf("%s: stage %s", p.path, s.Name)
	subst := func(v string, line int) (string, error) {
		var bad error
		out := reference.ReplaceAllStringFunc(v, func(m string) string {
			name := m[2 : len(m)-1]
			d, ok := dirs[name]
			if !ok && bad == nil {
				bad = fmt.Errorf("%s: line %d: ${%s} names no earlier stage (and is not ${out} or ${output_dir})", at, line, name)
			}
			return d
		})
		return out, bad
	}
	for i := 0; i+1 < len(s.With.Content); i += 2 {
		k, vn := s.With.Content[i], s.With.Content[i+1]
		var val string
		switch vn.Kind {
		case yaml.ScalarNode:
			val = vn.Value
		case yaml.SequenceNode:
			var items []string
			for _, it := range vn.Content {
				if it.Kind != yaml.ScalarNode {
					return nil, nil, fmt.Errorf("%s: line %d: %s: a list of plain values is expected", at, it.Line, k.Value)
				}
				items = append(items, it.Value)
			}
			val = strings.Join(items, ",")
		default:
			return nil, nil, fmt.Errorf("%s: line %d: %s: give a value or a list of values", at, vn.Line, k.Value)
		}
		v, err := subst(val, vn.Line)
		if err != nil {
			return nil, nil, err
		}
		if _, dup := keys[k.Value]; dup {
			return nil, nil, fmt.Errorf("%s: line %d: %s is given twice", at, k.Line, k.Value)
		}
		keys[k.Value] = v
		order = append(order, k.Value)
	}
	if _, ok := keys["output_dir"]; !ok && (s.Run == "train" || s.Run == "export") {
		keys["output_dir"] = dirs["out"]
		order = append(order, "output_dir")
	}
	var args []string
	for _, k := range order {
		args = append(args, "--"+k, keys[k])
	}
	for _, a := range s.Args {
		v, err := subst(a, s.line)
		if err != nil {
			return nil, nil, err
		}
		args = append(args, v)
	}
	return args, keys, nil
}

// stageMark is written to a stage's folder when it finishes: what it ran
// and the fingerprint of its keys and inputs, to skip it next time.
type stageMark struct {
	Key      string      `json:"key"`
	Run      string      `json:"run"`
	Args     []string    `json:"args"`
	Seconds  float64     `json:"seconds"`
	Finished time.Time   `json:"finished"`
	Samples  []sampleRow `json:"samples,omitempty"`
}

func samePrompts(rows []sampleRow, prompts []string) bool {
	if len(rows) != len(prompts) {
		return false
	}
	for i, r := range rows {
		if r.Prompt != prompts[i] {
			return false
		}
	}
	return true
}

const markFile = ".zhllama-stage.json"

// fingerprint hashes the command, its arguments, the program's version
// and every file the arguments name (size and modification time; a
// folder's files recursively) outside the stage's own folder, so a stage
// reruns when an earlier stage did or an input file changed.
func fingerprint(run string, args []string, own string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "zhllama %s\x00%s\x00", version, run)
	for _, a := range args {
		fmt.Fprintf(h, "%s\x00", a)
	}
	for _, a := range args {
		for _, part := range strings.Split(a, ",") {
			if part == "" || strings.HasPrefix(part, "--") {
				continue
			}
			abs, err := filepath.Abs(part)
			if err != nil {
				continue
			}
			if rel, err := filepath.Rel(own, abs); err == nil && !strings.HasPrefix(rel, "..") {
				continue
			}
			err = filepath.WalkDir(abs, func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() || d.Name() == markFile {
					return err
				}
				info, err := d.Info()
				if err != nil {
					return err
				}
				fmt.Fprintf(h, "%s\x00%d\x00%d\x00", path, info.Size(), info.ModTime().UnixNano())
				return nil
			})
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func runPipeline(args []string) error {
	fs := flagSet("run")
	outFlag := fs.String("output_dir", "", "override the file's output_dir")
	force := fs.String("force", "", "stages to run again even when done and unchanged (comma-separated)")
	pos, err := parseArgs(fs, args, "PIPELINE.yaml [flags]", 1, 1)
	if err != nil {
		return err
	}
	p, err := readPipeline(pos[0])
	if err != nil {
		return err
	}
	if *outFlag != "" {
		p.OutputDir = *outFlag
	}
	if p.OutputDir == "" {
		return usagef("%s: output_dir is missing (or give --output_dir)", p.path)
	}
	forced := map[string]bool{}
	for _, n := range strings.Split(*force, ",") {
		if n = strings.TrimSpace(n); n != "" {
			if !slices.ContainsFunc(p.Stages, func(s stageSpec) bool { return s.Name == n }) {
				return usagef("--force: %s has no stage %q", p.path, n)
			}
			forced[n] = true
		}
	}
	root, err := filepath.Abs(p.OutputDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	dirs := map[string]string{"output_dir": root}
	rep := &runReport{Title: "zhllama run " + p.path, Pipeline: p.path, OutputDir: root, Started: time.Now()}
	var prev trainedModel // the model the next training stage starts from, for its samples
	samples := &sampler{prompts: p.Samples}
	for i := range p.Stages {
		s := &p.Stages[i]
		own := filepath.Join(root, s.Name)
		dirs["out"] = own
		stageArgs, keys, err := p.stageArgs(s, dirs)
		if err != nil {
			return err
		}
		dirs[s.Name] = own
		sr := stageReport{Name: s.Name, Run: s.Run, Dir: own, Args: stageArgs}
		key, err := fingerprint(s.Run, stageArgs, own)
		if err != nil {
			return fmt.Errorf("stage %s: %w", s.Name, err)
		}
		var mark stageMark
		markPath := filepath.Join(own, markFile)
		done := readJSONFile(markPath, &mark) == nil
		changed := false // the mark is to be written
		switch {
		case done && mark.Key == key && !forced[s.Name]:
			sr.Status, sr.Seconds = "skipped", mark.Seconds
			fmt.Fprintf(os.Stderr, "[%d/%d] %s: done and unchanged, skipped\n", i+1, len(p.Stages), s.Name)
		default:
			if done || forced[s.Name] {
				// Changed since it finished: start afresh in its own folder.
				if err := os.RemoveAll(own); err != nil {
					return err
				}
			} else if entries, _ := os.ReadDir(own); len(entries) > 0 {
				stageArgs = resumeArgs(s.Run, own, keys, stageArgs)
			}
			fmt.Fprintf(os.Stderr, "[%d/%d] %s: zhllama %s %s\n", i+1, len(p.Stages), s.Name, s.Run, strings.Join(stageArgs, " "))
			if err := os.MkdirAll(own, 0o755); err != nil {
				return err
			}
			c, _ := find(commands(), strings.Fields(s.Run))
			start := time.Now()
			err := c.run(stageArgs)
			sr.Seconds = time.Since(start).Seconds()
			if err != nil {
				sr.Status, sr.Error = "failed", err.Error()
				rep.add(sr)
				if werr := rep.write(root); werr != nil {
					fmt.Fprintln(os.Stderr, "note: the report was not written:", werr)
				}
				return fmt.Errorf("stage %s (%s): %w; fix it and run again: finished stages are skipped", s.Name, s.Run, err)
			}
			sr.Status, changed = "ran", true
			mark = stageMark{Key: key, Run: s.Run, Args: stageArgs, Seconds: sr.Seconds, Finished: time.Now().UTC()}
		}
		sr.collect()
		if len(p.Samples) > 0 && s.Run == "train" && keys["stage"] != "rm" {
			// Each trained model answers the samples, beside the model it
			// started from, with the stage's template; a skipped stage
			// keeps the answers it gave.
			after := stageModel(own, keys)
			if prev.dir == "" {
				prev = trainedModel{dir: keys["model_name_or_path"], adapters: splitList(keys["adapter_name_or_path"])}
			}
			if sr.Status == "ran" || !samePrompts(mark.Samples, p.Samples) {
				rows, err := samples.rows(prev, after, keys)
				if err != nil {
					sr.Notes = append(sr.Notes, "samples: "+err.Error())
				}
				mark.Samples, changed = rows, true
			}
			sr.Samples, prev = mark.Samples, after
		}
		if changed {
			if err := atomicfile.WriteJSON(markPath, mark); err != nil {
				return err
			}
		}
		rep.add(sr)
		if err := rep.write(root); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "pipeline done: %s/report.html\n", root)
	return nil
}

// resumeArgs continues an interrupted stage: train from its newest
// checkpoint (or afresh when it saved none); other commands start again.
func resumeArgs(run, own string, keys map[string]string, args []string) []string {
	if run == "train" {
		if _, ok := keys["resume_from_checkpoint"]; !ok {
			if cks, _ := filepath.Glob(filepath.Join(own, "checkpoint-*")); len(cks) > 0 {
				fmt.Fprintf(os.Stderr, "%s was interrupted: resuming from its last checkpoint\n", own)
				return append(args, "--resume_from_checkpoint", "true")
			}
			if _, ok := keys["overwrite_output_dir"]; !ok {
				return append(args, "--overwrite_output_dir", "true")
			}
		}
		return args
	}
	os.RemoveAll(own)
	return args
}

func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
