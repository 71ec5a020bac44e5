package llama_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/llama"
	"zhllama/llama/torchref"
	"zhllama/safetensors"
	"zhllama/spm"
	"zhllama/train"
)

func needTorch(t *testing.T) { testenv.RequireTorch(t) }

// maxRelDiff is max|a−b| / max|b|.
func maxRelDiff(a, b []float32) float64 {
	var d, m float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
		m = math.Max(m, math.Abs(float64(b[i])))
	}
	return d / math.Max(m, 1e-30)
}

// Logits, loss and every gradient agree with PyTorch on the same
// safetensors weights, for MHA and GQA, tied and untied, F32/F16/BF16 files,
// on a right-padded batch.
func TestParityWithPyTorch(t *testing.T) {
	needTorch(t)
	tok, err := spm.Load(testenv.Path(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		kvHeads int
		tied    bool
		dtype   string
	}{{"gqa-f32", 2, false, "float32"}, {"mha-tied-bf16", 4, true, "bfloat16"}, {"mqa-f16", 1, false, "float16"}} {
		t.Run(c.name, func(t *testing.T) {
			cfg, _ := llama.Preset("tiny")
			cfg.NumKeyValueHeads, cfg.TieWordEmbeddings = c.kvHeads, c.tied
			dir := t.TempDir()
			if err := llama.InitWithTokenizer(cfg, tok, dir, llama.InitOptions{Seed: 3, DType: c.dtype, MaxShard: 1 << 40}); err != nil {
				t.Fatal(err)
			}
			m, err := llama.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := spm.NewProcessor(tok)
			b, tt := 2, 12
			ids := make([]int32, b*tt)
			valid := make([]bool, b*tt)
			labels := make([]int32, b*tt)
			for s, text := range []string{"The quick brown fox jumps over the lazy dog again", "你好，世界"} {
				enc := append([]int{1}, p.Encode(text)...)
				for i := 0; i < tt; i++ {
					labels[s*tt+i] = -100
					if i < len(enc) {
						ids[s*tt+i], valid[s*tt+i], labels[s*tt+i] = int32(enc[i]), true, int32(enc[i])
					}
				}
			}
			in := map[string]any{"ids": [][]int32{ids[:tt], ids[tt:]}, "valid": [][]bool{valid[:tt], valid[tt:]}, "labels": [][]int32{labels[:tt], labels[tt:]}}
			const lr, wd, clip = 1e-3, 0.1, 1.0
			in["adamw"] = map[string]any{"lr": lr, "weight_decay": wd, "max_grad_norm": clip, "steps": 1}
			prompt := []int32{1, 450, 4996, 17354}
			const newTokens = 12
			in["generate"] = map[string]any{"prompt": prompt, "max_new_tokens": newTokens}
			inPath, outPath := filepath.Join(dir, "in.json"), filepath.Join(dir, "ref.safetensors")
			jb, _ := json.Marshal(in)
			os.WriteFile(inPath, jb, 0o644)
			if _, err := torchref.Run(dir, dir, inPath, outPath); err != nil {
				t.Fatal(err)
			}
			ref, err := safetensors.Open(outPath)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			get := func(name string) []float32 {
				tn, ok := ref.Tensor(name)
				if !ok {
					t.Fatalf("reference lacks %s", name)
				}
				v, _ := tn.Float32(nil)
				return v
			}
			a := m.NewActs(b, tt)
			grads := llama.NewModel(m.Config)
			logits := make([]float32, b*tt*m.Config.VocabSize)
			m.Forward(a, ids, valid)
			loss, _, dHidden := m.LMLoss(a, labels, grads, logits)
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
			if d := maxRelDiff(gotL, refL); d > 1e-4 {
				t.Errorf("logits differ by %.2e relative", d)
			}
			if rl := float64(get("loss")[0]); math.Abs(loss-rl) > 1e-4*math.Abs(rl) {
				t.Errorf("loss %v, PyTorch %v", loss, rl)
			}
			worst := 0.0
			for _, prm := range grads.Named() {
				d := maxRelDiff(prm.Data, get("grad."+prm.Name))
				worst = math.Max(worst, d)
				if d > 1e-4 {
					t.Errorf("gradient of %s differs by %.2e relative", prm.Name, d)
				}
			}
			t.Logf("loss %.6f; worst gradient difference %.2e relative", loss, worst)

			// Greedy generation with the KV cache gives PyTorch's ids.
			gen := m.Generate(prompt, llama.Sampling{MaxNewTokens: newTokens}, nil)
			for i, id := range get("generated") {
				if i >= len(gen) || gen[i] != int(id) {
					t.Fatalf("greedy ids %v, PyTorch %v", gen, get("generated"))
				}
			}

			// One AdamW step with gradient clipping, from PyTorch's own
			// gradients, so that the optimizer alone is compared (AdamW
			// turns the last-bit differences of near-zero gradients into
			// visible ones).
			var params, gs [][]float32
			for _, prm := range m.Named() {
				params = append(params, prm.Data)
				gs = append(gs, get("grad."+prm.Name))
			}
			opt := train.NewAdamW(params, wd)
			train.ClipGradNorm(gs, clip)
			opt.Step(params, gs, lr)
			worst = 0
			for _, prm := range m.Named() {
				d := maxRelDiff(prm.Data, get("param."+prm.Name))
				worst = math.Max(worst, d)
				if d > 1e-6 {
					t.Errorf("after an AdamW step %s differs by %.2e relative", prm.Name, d)
				}
			}
			t.Logf("after an AdamW step: worst parameter difference %.2e relative", worst)
		})
	}
}
