package train

import (
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"zhllama/hfdir"
	"zhllama/llama"
	"zhllama/serve"
	"zhllama/spm"
	"zhllama/template"
)

// zhllama serve on a reward model is the reward service of
// reward_model_type api: the scores PPO's api scorer reads from it are the
// reward model's own, and a PPO step runs against it.
func TestPPORewardFromServe(t *testing.T) {
	dir := tinyModel(t)
	head := llama.NewValueHead(64)
	head.Init(rand.New(rand.NewPCG(3, 4)))
	if err := hfdir.SaveValueHead(dir, head); err != nil {
		t.Fatal(err)
	}
	m, err := hfdir.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := spm.LoadProcessor(filepath.Join(dir, "tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	tpl, _ := template.Get("llama2")
	s, err := serve.New(serve.Options{Model: m, Tok: tok, Renderer: serve.TemplateRenderer{T: tpl, Tok: tok}, ValueHead: head})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	defer func() { hs.Close(); s.Close() }()
	url := hs.URL + "/v1/score/evaluation"

	ids := func(parts ...any) []int32 {
		var out []int32
		for _, p := range parts {
			switch p := p.(type) {
			case string:
				for _, id := range tok.Encode(p) {
					out = append(out, int32(id))
				}
			case int:
				out = append(out, int32(p))
			}
		}
		return out
	}
	bos, eos := tok.SpecialID("bos"), tok.SpecialID("eos")
	seqs := [][]int32{
		ids(bos, "[INST] 你好 [/INST]", "你好！有什么可以帮你？", eos),
		ids(bos, "[INST] 北京是哪个国家的首都？ [/INST]", "中国", eos),
		ids(bos, "[INST] hi [/INST]", "hello there"),
	}
	api := &apiScorer{url: url, tok: tok, client: &http.Client{Timeout: time.Minute}, tries: 1}
	got, err := api.Score(seqs)
	if err != nil {
		t.Fatal(err)
	}
	ref := &modelScorer{m: m, head: head, acts: m.NewActs(2, 32), rows: 2, pad: 0}
	want, err := ref.Score(seqs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-4*math.Max(1, math.Abs(want[i])) {
			t.Errorf("sequence %d: the service scores %g, the reward model %g", i, got[i], want[i])
		}
	}

	tr := newTrainer(t, ppoConfig(t, dir, url, "--reward_model_type", "api", "--max_steps", "1"))
	r := tr.TrainStep()
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if v := r.Metrics["reward"]; math.IsNaN(v) || v == 0 {
		t.Errorf("reward %g", v)
	}
}
