package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/spm"
)

// Scorer gives each token sequence (prompt + response) a scalar reward.
type Scorer interface {
	Score(seqs [][]int32) ([]float64, error)
}

// modelScorer is a reward model: a trunk and a value head, the score read
// at each sequence's last token. adapters selects the trunk's adapters
// (the "reward" adapter on the policy's own base, or nil for all).
type modelScorer struct {
	m        *llama.Model
	head     *llama.ValueHead
	adapters func(string) bool
	acts     *llama.Acts
	rows     int
	pad      int32
	values   []float32
}

func (s *modelScorer) Score(seqs [][]int32) ([]float64, error) {
	out := make([]float64, len(seqs))
	for lo := 0; lo < len(seqs); lo += s.rows {
		exs := make([]Example, min(lo+s.rows, len(seqs))-lo)
		for i := range exs {
			exs[i] = Example{IDs: seqs[lo+i], Labels: seqs[lo+i]}
		}
		b := MakeBatch(exs, s.pad)
		s.acts.Adapters, s.acts.Dropout = s.adapters, false
		s.acts.Reshape(&s.m.Config, b.B, b.T)
		s.m.Forward(s.acts, b.IDs, b.Valid)
		s.values = grow(&s.values, b.B*b.T)
		s.head.Forward(s.values, s.acts.Hidden, b.B*b.T)
		for i, e := range exs {
			out[lo+i] = float64(s.values[i*b.T+len(e.IDs)-1])
		}
		s.acts.Adapters = nil
	}
	return out, nil
}

// RewardAdapter is the name of the reward model's adapter when it shares
// the policy's base (reward_model_type lora).
const RewardAdapter = "reward"

// loadRewardHead reads a reward model directory's value head, saying what
// the directory must be when it has none.
func loadRewardHead(dir string, h int) (*llama.ValueHead, error) {
	if _, err := os.Stat(filepath.Join(dir, hfdir.ValueHeadFile)); err != nil {
		return nil, fmt.Errorf("reward_model %s has no %s: it must be the output_dir of a stage rm run (an SFT model has no value head)", dir, hfdir.ValueHeadFile)
	}
	return hfdir.LoadValueHead(dir, h)
}

// newRewardScorer sets up c's reward model for policy t: an adapter with
// its value head on the policy's own frozen base (lora), a separate model
// (full) or an HTTP service (api).
func newRewardScorer(c *Config, t *Tuned, acts *llama.Acts, rows int, pad int32) (Scorer, error) {
	h := t.Model.Config.HiddenSize
	switch c.RewardModelType {
	case "api":
		return &apiScorer{url: c.RewardModel, tok: t.Tok, client: &http.Client{Timeout: 2 * time.Minute}, tries: 3, wait: time.Second}, nil
	case "lora":
		ac, err := hfdir.ReadAdapterConfig(c.RewardModel)
		if err != nil {
			return nil, fmt.Errorf("reward_model (reward_model_type lora): %w; a full reward model needs reward_model_type: full", err)
		}
		if len(ac.ModulesToSave) > 0 {
			return nil, fmt.Errorf("reward_model %s trains %s whole, which would replace the policy's own: with reward_model_type lora the reward adapter must share the policy's base; use reward_model_type: full", c.RewardModel, strings.Join(ac.ModulesToSave, ", "))
		}
		head, err := loadRewardHead(c.RewardModel, h)
		if err != nil {
			return nil, err
		}
		if _, _, err := hfdir.LoadAdapter(t.Model, c.RewardModel, RewardAdapter); err != nil {
			return nil, fmt.Errorf("reward_model %s: %w (a reward adapter must be trained on the policy's base model)", c.RewardModel, err)
		}
		return &modelScorer{m: t.Model, head: head, adapters: llama.OnlyAdapters(RewardAdapter), acts: acts, rows: rows, pad: pad}, nil
	}
	m, err := hfdir.Load(c.RewardModel)
	if err != nil {
		return nil, fmt.Errorf("reward_model: %w", err)
	}
	headDir := c.RewardModel
	for _, a := range c.RewardModelAdapters {
		if _, _, err := hfdir.LoadAdapter(m, a, llama.DefaultAdapter); err != nil {
			return nil, fmt.Errorf("reward_model_adapters: %w", err)
		}
		headDir = a
	}
	if len(c.RewardModelAdapters) > 0 {
		if err := m.MergeLoRA(); err != nil {
			return nil, err
		}
	}
	if err := sameVocabulary(c.RewardModel, m, t); err != nil {
		return nil, err
	}
	head, err := loadRewardHead(headDir, m.Config.HiddenSize)
	if err != nil {
		return nil, err
	}
	return &modelScorer{m: m, head: head, acts: m.NewActs(acts.B, acts.T), rows: rows, pad: pad}, nil
}

// sameVocabulary refuses a separate reward model that reads token ids
// differently from the policy: scores of another vocabulary's ids are
// garbage.
func sameVocabulary(dir string, m *llama.Model, t *Tuned) error {
	if m.Config.VocabSize != t.Model.Config.VocabSize {
		return fmt.Errorf("reward_model %s has vocab_size %d, the policy %d: the reward model and the policy must share the tokenizer and vocabulary", dir, m.Config.VocabSize, t.Model.Config.VocabSize)
	}
	tok, err := spm.LoadProcessor(dir)
	if err != nil {
		return nil // no tokenizer beside it: the sizes are all there is to check
	}
	for id := range tok.Size() {
		if id >= t.Tok.Size() || tok.IDToPiece(id) != t.Tok.IDToPiece(id) {
			return fmt.Errorf("reward_model %s: its tokenizer's piece %d is %q, the policy's %q: the reward model and the policy must share the tokenizer", dir, id, tok.IDToPiece(id), pieceOr(t.Tok, id))
		}
	}
	return nil
}

func pieceOr(p *spm.Processor, id int) string {
	if id < p.Size() {
		return p.IDToPiece(id)
	}
	return "(none)"
}

// apiScorer asks an HTTP reward service, as LLaMA-Factory's api reward
// type does: POST {"model": "model", "messages": [text, ...]} to the URL,
// read {"scores": [...]}, one per text. Texts are the decoded sequences
// with their special tokens.
type apiScorer struct {
	url    string
	tok    *spm.Processor
	client *http.Client
	tries  int
	wait   time.Duration
}

func (s *apiScorer) Score(seqs [][]int32) ([]float64, error) {
	texts := make([]string, len(seqs))
	for i, q := range seqs {
		var err error
		// As Hugging Face's batch_decode(skip_special_tokens=False).
		if texts[i], err = s.tok.DecodeSpecial(spm.Ints(q)); err != nil {
			return nil, fmt.Errorf("reward_model %s: sequence %d: %w", s.url, i, err)
		}
	}
	body, _ := json.Marshal(map[string]any{"model": "model", "messages": texts})
	var last error
	for try := range s.tries {
		if try > 0 {
			time.Sleep(s.wait << (try - 1))
		}
		scores, retry, err := s.post(body)
		if err == nil {
			if len(scores) != len(texts) {
				return nil, fmt.Errorf("reward_model %s answered %d scores for %d texts", s.url, len(scores), len(texts))
			}
			return scores, nil
		}
		last = err
		if !retry {
			break
		}
	}
	return nil, fmt.Errorf("reward_model %s: %w (after %d tries; is the reward service running? e.g. zhllama serve --model RM)", s.url, last, s.tries)
}

// post sends one request; retry says whether another try may help.
func (s *apiScorer) post(body []byte) (scores []float64, retry bool, err error) {
	resp, err := s.client.Post(s.url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, true, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, true, err
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(b))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return nil, resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests, fmt.Errorf("HTTP %s: %s", resp.Status, msg)
	}
	var out struct {
		Scores *[]float64 `json:"scores"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Scores == nil {
		return nil, false, errors.New(`the answer is not JSON with "scores": a list of numbers`)
	}
	return *out.Scores, false, nil
}
