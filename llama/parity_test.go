package llama_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"zhllama/hfdir"

	"zhllama/internal/testenv"
	"zhllama/llama"
	"zhllama/llama/torchref"
	"zhllama/optim"
	"zhllama/safetensors"
	"zhllama/spm"
)

func needTorch(t *testing.T) { testenv.RequireTorch(t) }

// parityModel writes a tiny random checkpoint in dtype and loads it.
func parityModel(t *testing.T, kvHeads int, tied bool, dtype string) (string, *llama.Model) {
	tok, err := spm.Load(testenv.Path(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := llama.Preset("tiny")
	cfg.NumKeyValueHeads, cfg.TieWordEmbeddings = kvHeads, tied
	dir := t.TempDir()
	if err := hfdir.Init(cfg, tok, dir, hfdir.InitOptions{Seed: 3, DType: dtype, MaxShard: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	m, err := hfdir.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, m
}

// parityBatch is an English and a Chinese sentence as a right-padded
// batch of b=2 sequences of tt tokens, labels -100 on the padding.
func parityBatch(t *testing.T, b, tt int) (ids []int32, valid []bool, labels []int32) {
	tok, err := spm.Load(testenv.Path(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := spm.NewProcessor(tok)
	ids, valid, labels = make([]int32, b*tt), make([]bool, b*tt), make([]int32, b*tt)
	for s, text := range []string{"The quick brown fox jumps over the lazy dog again", "你好，世界"}[:b] {
		enc := append([]int{1}, p.Encode(text)...)
		for i := 0; i < tt; i++ {
			labels[s*tt+i] = -100
			if i < len(enc) {
				ids[s*tt+i], valid[s*tt+i], labels[s*tt+i] = int32(enc[i]), true, int32(enc[i])
			}
		}
	}
	return ids, valid, labels
}

// runReference runs the PyTorch reference with in as its INPUT.json (args
// before it, such as the mode and the model directory) and returns a
// lookup of its output tensors.
func runReference(t *testing.T, dir string, in map[string]any, args ...string) func(string) []float32 {
	inPath, outPath := filepath.Join(dir, "in.json"), filepath.Join(dir, "ref.safetensors")
	jb, err := json.Marshal(in)
	if err == nil {
		err = os.WriteFile(inPath, jb, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := torchref.Run(dir, append(args, inPath, outPath)...); err != nil {
		t.Fatal(err)
	}
	ref, err := safetensors.Open(outPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	return func(name string) []float32 {
		tn, ok := ref.Tensor(name)
		if !ok {
			t.Fatalf("reference lacks %s", name)
		}
		v, err := tn.Float32(nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// Logits, loss and every gradient agree with PyTorch on the same
// safetensors weights, for MHA and GQA, tied and untied, F32/F16/BF16 files,
// on a right-padded batch.
func TestParityWithPyTorch(t *testing.T) {
	needTorch(t)
	for _, c := range []struct {
		name    string
		kvHeads int
		tied    bool
		dtype   string
	}{{"gqa-f32", 2, false, "float32"}, {"mha-tied-bf16", 4, true, "bfloat16"}, {"mqa-f16", 1, false, "float16"}} {
		t.Run(c.name, func(t *testing.T) {
			dir, m := parityModel(t, c.kvHeads, c.tied, c.dtype)
			b, tt := 2, 12
			ids, valid, labels := parityBatch(t, b, tt)
			in := map[string]any{"ids": [][]int32{ids[:tt], ids[tt:]}, "valid": [][]bool{valid[:tt], valid[tt:]}, "labels": [][]int32{labels[:tt], labels[tt:]}}
			const lr, wd, clip = 1e-3, 0.1, 1.0
			in["adamw"] = map[string]any{"lr": lr, "weight_decay": wd, "max_grad_norm": clip, "steps": 1}
			prompt := []int32{1, 450, 4996, 17354}
			const newTokens = 12
			in["generate"] = map[string]any{"prompt": prompt, "max_new_tokens": newTokens}
			get := runReference(t, dir, in, dir)
			a := m.NewActs(b, tt)
			grads := llama.NewModel(m.Config)
			logits := make([]float32, b*tt*m.Config.VocabSize)
			m.Forward(a, ids, valid)
			m.Logits(a, logits)
			loss, _, dHidden := m.LMLoss(a, labels, 0, grads)
			m.Backward(a, dHidden, grads)
			// Padded positions' logits are not compared: no loss reads them.
			var gotL, refL []float32
			refLogits := get("logits")
			for i, ok := range valid {
				if ok {
					v := m.Config.VocabSize
					gotL = append(gotL, logits[i*v:(i+1)*v]...)
					refL = append(refL, refLogits[i*v:(i+1)*v]...)
				}
			}
			if d := testenv.ScaledDiff(gotL, refL); d > 1e-4 {
				t.Errorf("logits differ by %.2e relative", d)
			}
			if rl := float64(get("loss")[0]); math.Abs(loss-rl) > 1e-4*math.Abs(rl) {
				t.Errorf("loss %v, PyTorch %v", loss, rl)
			}
			worst := 0.0
			for _, prm := range grads.Named() {
				d := testenv.ScaledDiff(prm.Data, get("grad."+prm.Name))
				worst = math.Max(worst, d)
				if d > 1e-4 {
					t.Errorf("gradient of %s differs by %.2e relative", prm.Name, d)
				}
			}
			t.Logf("loss %.6f; worst gradient difference %.2e relative", loss, worst)

			// Greedy generation with the KV cache gives PyTorch's ids.
			gen, err := m.Generate(prompt, llama.Sampling{MaxNewTokens: newTokens}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, id := range get("generated") {
				if i >= len(gen) || gen[i] != int(id) {
					t.Fatalf("greedy ids %v, PyTorch %v", gen, get("generated"))
				}
			}

			// One AdamW step with gradient clipping, from PyTorch's own
			// gradients, so that the optimizer alone is compared (AdamW
			// turns the last-bit differences of near-zero gradients into
			// visible ones).
			var params []optim.Param
			for _, prm := range m.Named() {
				params = append(params, optim.Param{Name: prm.Name, Data: prm.Data, Grad: get("grad." + prm.Name)})
			}
			opt := optim.NewAdamW(params, []optim.Group{{WeightDecay: wd}})
			optim.ClipGradNorm(params, clip)
			opt.Step(lr)
			worst = 0
			for _, prm := range m.Named() {
				d := testenv.ScaledDiff(prm.Data, get("param."+prm.Name))
				worst = math.Max(worst, d)
				if d > 1e-6 {
					t.Errorf("after an AdamW step %s differs by %.2e relative", prm.Name, d)
				}
			}
			t.Logf("after an AdamW step: worst parameter difference %.2e relative", worst)
		})
	}
}
