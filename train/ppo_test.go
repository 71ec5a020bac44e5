package train

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"zhllama/hfdir"
	"zhllama/internal/testenv"
	"zhllama/llama"
	"zhllama/spm"
)

// rewardModel trains a tiny LoRA reward model for two steps and returns
// its output directory.
func rewardModel(t *testing.T, model string) string {
	t.Helper()
	tr := newTrainer(t, rmConfig(t, model, "--max_steps", "2", "--val_size", "0"))
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return tr.Cfg.OutputDir
}

func ppoConfig(t *testing.T, model, rm string, extra ...string) Config {
	t.Helper()
	args := append([]string{"--stage", "ppo", "--model_name_or_path", model, "--reward_model", rm,
		"--dataset", testenv.Path(t, "sft/alpaca_zh_demo.json"), "--template", "llama2", "--cutoff_len", "40", "--max_samples", "12",
		"--finetuning_type", "lora", "--lora_rank", "4", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
		"--ppo_buffer_size", "2", "--ppo_epochs", "2", "--max_new_tokens", "6", "--top_k", "0", "--top_p", "1", "--temperature", "1",
		"--output_dir", filepath.Join(t.TempDir(), "out"), "--learning_rate", "1e-3", "--logging_steps", "1", "--max_steps", "2"}, extra...)
	c, _, err := Parse("", args)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// PPO with a LoRA reward adapter on the policy's own base: it runs, logs
// TRL's metrics, saves the adapter with the critic's value head, and a run
// resumed from its checkpoint ends bit for bit where the straight run does
// (sampling, KL coefficient and score statistics included).
func TestPPORunAndResume(t *testing.T) {
	model := tinyModel(t)
	rm := rewardModel(t, model)
	extra := []string{"--ppo_score_norm", "--save_steps", "1", "--max_steps", "3"}
	a := newTrainer(t, ppoConfig(t, model, rm, extra...))
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(a.Cfg.OutputDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	first := strings.SplitN(string(b), "\n", 2)[0]
	var rec map[string]any
	if err := json.Unmarshal([]byte(first), &rec); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"reward", "objective/kl", "objective/kl_coef", "objective/entropy", "ppo/loss/policy", "ppo/loss/value",
		"ppo/loss/total", "ppo/policy/clipfrac", "ppo/policy/approxkl", "ppo/val/clipfrac", "tokens/responses_len_mean",
		"time/generate", "time/score", "time/train", "loss"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("metrics.jsonl lacks %s: %s", k, first)
		}
	}
	if _, err := hfdir.LoadValueHead(a.Cfg.OutputDir, a.Model.Config.HiddenSize); err != nil {
		t.Error(err)
	}
	if _, err := hfdir.ReadAdapterConfig(a.Cfg.OutputDir); err != nil {
		t.Error(err)
	}

	c := newTrainer(t, ppoConfig(t, model, rm, append(extra, "--output_dir", a.Cfg.OutputDir)...))
	if err := c.Resume(filepath.Join(a.Cfg.OutputDir, "checkpoint-1")); err != nil {
		t.Fatal(err)
	}
	for c.Step < c.Total {
		if r := c.TrainStep(); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	for i, p := range a.Params {
		if !slices.Equal(p.Data, c.Params[i].Data) {
			t.Fatalf("%s differs after resuming", p.Name)
		}
	}
	if a.PPO.KL != c.PPO.KL || a.PPO.Moments != c.PPO.Moments {
		t.Errorf("state after resuming: %+v %+v, straight %+v %+v", c.PPO.KL, c.PPO.Moments, a.PPO.KL, a.PPO.Moments)
	}
}

// With one mini-batch, one epoch and no dropout, the first recomputed
// log-probabilities are the old ones: ratio 1, policykl 0 (§6.11a). And the
// gradients of the PPO loss (policy adapters and critic head) match
// central differences.
func TestPPOStepAndGradients(t *testing.T) {
	model := tinyModel(t)
	rm := rewardModel(t, model)
	tr := newTrainer(t, ppoConfig(t, model, rm, "--ppo_buffer_size", "1", "--ppo_epochs", "1", "--lora_dropout", "0"))
	o := tr.PPO
	o.drop.p = 0
	r := tr.TrainStep()
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if m := r.Metrics; math.Abs(m["ppo/policy/ratio"]-1) > 1e-6 || math.Abs(m["ppo/policy/policykl"]) > 1e-6 || m["ppo/policy/clipfrac"] != 0 {
		t.Errorf("first update: ratio %g, policykl %g, clipfrac %g; want 1, 0, 0", m["ppo/policy/ratio"], m["ppo/policy/policykl"], m["ppo/policy/clipfrac"])
	}

	// Gradients on a fixed batch of rollouts, after the adapters moved.
	rolls, err := o.generate(o.prompts(0), 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.experience(rolls, []float64{0.5, -1}); err != nil {
		t.Fatal(err)
	}
	for _, ad := range tr.Model.Adapters("default") {
		for i := range ad.LoRA.B {
			ad.LoRA.B[i] += 0.03 * float32(i%7-3)
		}
	}
	for _, p := range o.Trained() {
		clear(p.Grad)
	}
	o.trainMini(rolls, 1, 0)
	loss := func() float64 {
		_, logp, vpred := o.forward(o.Model, o.acts, o.policy, rolls, true, 0)
		old, oldV, adv, ret := [][]float64{}, [][]float64{}, [][]float64{}, [][]float64{}
		for _, ro := range rolls {
			old, oldV, adv, ret = append(old, ro.logp), append(oldV, ro.values), append(adv, ro.adv), append(ret, ro.ret)
		}
		st, _, _ := o.Clip.PPOLoss(logp, old, vpred, oldV, adv, ret)
		return st.Total
	}
	checked := 0
	for _, p := range o.Trained() {
		if !strings.HasPrefix(p.Name, "v_head") && !strings.Contains(p.Name, "layers.1.self_attn.v_proj.lora_B") {
			continue
		}
		for _, i := range []int{0, len(p.Data) - 1} {
			num := testenv.NumericGrad(loss, p.Data, []int{i}, 1e-2)[0]
			if math.Abs(num-float64(p.Grad[i])) > 3e-2*math.Max(0.02, math.Abs(num)) {
				t.Errorf("%s[%d]: gradient %g, numeric %g", p.Name, i, p.Grad[i], num)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
}

// The reward service of reward_model_type api: what is sent (one request
// per mini-batch, as LLaMA-Factory asks), and the errors when it is down
// or answers the wrong count.
func TestPPORewardAPI(t *testing.T) {
	model := tinyModel(t)
	var got []string
	requests := 0
	answer := func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model    string   `json:"model"`
			Messages []string `json:"messages"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		got = append(got, req.Messages...)
		requests++
		scores := make([]float64, len(req.Messages))
		for i, m := range req.Messages {
			scores[i] = float64(len(m)) / 100
		}
		json.NewEncoder(w).Encode(map[string]any{"scores": scores})
	}
	srv := httptest.NewServer(http.HandlerFunc(answer))
	defer srv.Close()
	tr := newTrainer(t, ppoConfig(t, model, srv.URL, "--reward_model_type", "api", "--max_steps", "1"))
	r := tr.TrainStep()
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	want := 0.0
	for _, m := range got {
		want += float64(len(m)) / 100 / float64(len(got))
		if !strings.HasPrefix(m, "<s>[INST]") {
			t.Errorf("text sent %q: want the decoded sequence with its special tokens", m)
		}
	}
	if len(got) != 4 || requests != 2 || math.Abs(r.Metrics["reward"]-want) > 1e-12 {
		t.Errorf("reward %g from %d texts in %d requests, want %g from 4 in 2", r.Metrics["reward"], len(got), requests, want)
	}

	short := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"scores": [1]}`)
	}))
	defer short.Close()
	tr = newTrainer(t, ppoConfig(t, model, short.URL, "--reward_model_type", "api"))
	if r := tr.TrainStep(); r.Err == nil || !strings.Contains(r.Err.Error(), "answered 1 scores for 2 texts") {
		t.Errorf("wrong count: %v", r.Err)
	}
	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL
	down.Close()
	tr = newTrainer(t, ppoConfig(t, model, url, "--reward_model_type", "api", "--output_dir", filepath.Join(t.TempDir(), "o")))
	tr.PPO.Reward.(*apiScorer).wait = time.Millisecond
	err := tr.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is the reward service running") || !strings.Contains(err.Error(), url) {
		t.Errorf("service down: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tr.Cfg.OutputDir, "adapter_model.safetensors")); err == nil {
		t.Error("a failed run wrote a model")
	}
}

// Reward models PPO cannot use are refused with what to do.
func TestPPOBadRewardModels(t *testing.T) {
	model := tinyModel(t)
	rm := rewardModel(t, model)
	expect := func(name string, c Config, parseErr error, want string) {
		t.Helper()
		err := parseErr
		if err == nil {
			_, err = New(c, io.Discard)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", name, err, want)
		}
	}
	args := func(extra ...string) []string {
		return append([]string{"--stage", "ppo", "--model_name_or_path", model, "--dataset", testenv.Path(t, "sft/alpaca_zh_demo.json"),
			"--output_dir", t.TempDir()}, extra...)
	}
	_, _, err := Parse("", args("--reward_model", rm, "--finetuning_type", "full"))
	expect("lora reward, full policy", Config{}, err, "needs finetuning_type: lora")
	_, _, err = Parse("", args())
	expect("no reward model", Config{}, err, "needs key reward_model")
	_, _, err = Parse("", args("--reward_model", "localhost:8000", "--reward_model_type", "api"))
	expect("api without a URL", Config{}, err, "not an http(s) URL")

	// An SFT adapter has no value head.
	sft := newTrainer(t, sftConfig(t, model, "--finetuning_type", "lora", "--max_steps", "1"))
	if err := sft.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	expect("no value head", ppoConfig(t, model, sft.Cfg.OutputDir), nil, "has no value_head.safetensors")

	// A value head of another width.
	bad := filepath.Join(t.TempDir(), "rm")
	os.CopyFS(bad, os.DirFS(rm))
	if err := hfdir.SaveValueHead(bad, llama.NewValueHead(7)); err != nil {
		t.Fatal(err)
	}
	expect("head width", ppoConfig(t, model, bad), nil, "has shape [1 7]")

	// A full reward model of another vocabulary.
	tok, err := spm.Load(testenv.Path(t, "tokenizers/chinese-llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := llama.Preset("tiny")
	other := filepath.Join(t.TempDir(), "other")
	if err := hfdir.Init(cfg, tok, other, hfdir.InitOptions{Seed: 1, DType: "float32"}); err != nil {
		t.Fatal(err)
	}
	hfdir.SaveValueHead(other, llama.NewValueHead(cfg.HiddenSize))
	expect("vocabulary", ppoConfig(t, model, other, "--reward_model_type", "full"), nil, "must share the tokenizer and vocabulary")
}

// The three ways to give PPO the same reward model agree: a LoRA reward
// adapter on the policy's own base, and the base with that adapter merged
// as a separate model (reward_model_adapters).
func TestPPORewardModelTypesAgree(t *testing.T) {
	model := tinyModel(t)
	rm := rewardModel(t, model)
	lora := newTrainer(t, ppoConfig(t, model, rm))
	full := newTrainer(t, ppoConfig(t, model, model, "--reward_model_type", "full", "--reward_model_adapters", rm))
	rolls, err := lora.PPO.generate(lora.PPO.prompts(0), 1)
	if err != nil {
		t.Fatal(err)
	}
	seqs := make([][]int32, len(rolls))
	for i, ro := range rolls {
		seqs[i] = ro.seq
	}
	a, err := lora.PPO.Reward.Score(seqs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := full.PPO.Reward.Score(seqs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-4*math.Max(1, math.Abs(a[i])) {
			t.Errorf("sequence %d: lora reward %g, merged full reward %g", i, a[i], b[i])
		}
	}
}

// Prompts cut to cutoff_len (their questions possibly gone) are counted in
// a note, not passed over in silence.
func TestPPOPromptsCutNote(t *testing.T) {
	model := tinyModel(t)
	var log strings.Builder
	if _, err := New(ppoConfig(t, model, "http://127.0.0.1:1", "--reward_model_type", "api", "--cutoff_len", "12"), &log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "prompts were cut to cutoff_len 12") {
		t.Errorf("no note of cut prompts:\n%s", log.String())
	}
}
