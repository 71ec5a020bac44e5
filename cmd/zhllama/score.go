package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/spm"
	"zhllama/train"
)

func scoreCommand() *command {
	return &command{name: "score", summary: "score texts with a reward model (the value at each text's last token)",
		usage: "--model D [--adapter A] --input FILE [--batch N]", run: score}
}

// score prints a JSON line {"text", "score"} for every line of the input:
// a JSON object with "text", or plain text. A text is [BOS] + its pieces,
// scored as the reward model scored prompt + answer in training.
func score(args []string) error {
	fs := flagSet("score")
	mf := addModelFlags(fs)
	input := fs.String("input", "", "JSON lines with \"text\", or plain text, one a line")
	batch := fs.Int("batch", 8, "texts per forward pass")
	if err := parseFlags(fs, args, "--model D [--adapter A] --input FILE [flags]"); err != nil {
		return err
	}
	if *input == "" || *batch < 1 {
		return usagef("--input is required and --batch must be at least 1")
	}
	m, p, head, err := mf.loadRewardModel()
	if err != nil {
		return err
	}
	texts, err := readTexts(*input)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	for lo := 0; lo < len(texts); lo += *batch {
		group := texts[lo:min(lo+*batch, len(texts))]
		scores, err := scoreTexts(m, p, head, group)
		if err != nil {
			return fmt.Errorf("%s: %w", *input, err)
		}
		for i, t := range group {
			if err := enc.Encode(map[string]any{"text": t, "score": scores[i]}); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadRewardModel loads a reward model: the model (with the adapter
// merged) and the value head beside the adapter of a LoRA reward model,
// else beside the model.
func (f modelFlags) loadRewardModel() (*llama.Model, *spm.Processor, *llama.ValueHead, error) {
	m, p, err := f.load()
	if err != nil {
		return nil, nil, nil, err
	}
	headDir := *f.dir
	if *f.adapter != "" {
		headDir = *f.adapter
	}
	if _, err := os.Stat(filepath.Join(headDir, hfdir.ValueHeadFile)); err != nil {
		return nil, nil, nil, fmt.Errorf("%s has no %s: it is not a reward model (train one with stage: rm)", headDir, hfdir.ValueHeadFile)
	}
	head, err := hfdir.LoadValueHead(headDir, m.Config.HiddenSize)
	if err != nil {
		return nil, nil, nil, err
	}
	return m, p, head, nil
}

// readTexts reads the non-empty lines of path: the "text" of a JSON
// object, or the line itself.
func readTexts(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<26)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "{") {
			var rec struct {
				Text *string `json:"text"`
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Text == nil {
				return nil, fmt.Errorf("%s:%d: a JSON line needs a \"text\" string", path, n)
			}
			line = *rec.Text
		}
		out = append(out, line)
	}
	return out, sc.Err()
}

// scoreTexts runs the texts as one right-padded batch and reads the value
// head at each one's last token.
func scoreTexts(m *llama.Model, p *spm.Processor, head *llama.ValueHead, texts []string) ([]float32, error) {
	seqs := make([][]int32, len(texts))
	for i, s := range texts {
		seqs[i] = p.ModelInput(s)
		if len(seqs[i]) > m.Config.MaxPositionEmbeddings {
			return nil, fmt.Errorf("a text of %d tokens is longer than the model's context %d", len(seqs[i]), m.Config.MaxPositionEmbeddings)
		}
	}
	return scoreIDs(m, head, seqs), nil
}

// scoreIDs runs token sequences as one right-padded batch and reads the
// value head at each one's last token.
func scoreIDs(m *llama.Model, head *llama.ValueHead, seqs [][]int32) []float32 {
	exs := make([]train.Example, len(seqs))
	for i, ids := range seqs {
		exs[i] = train.Example{IDs: ids, Labels: ids}
	}
	b := train.MakeBatch(exs, 0)
	a := m.NewActs(b.B, b.T)
	m.Forward(a, b.IDs, b.Valid)
	values := make([]float32, b.B*b.T)
	head.Forward(values, a.Hidden, b.B*b.T)
	out := make([]float32, len(exs))
	for i, e := range exs {
		out[i] = values[i*b.T+len(e.IDs)-1]
	}
	return out
}
