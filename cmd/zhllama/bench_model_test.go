package main

import (
	"strings"
	"testing"

	"zhllama/internal/testenv"
)

// bench train runs PyTorch eager on the same step, full and LoRA: both
// sides train the same values (every parameter; the adapters only) and
// the ratio is reported.
func TestBenchTrainTorch(t *testing.T) {
	testenv.RequireTorch(t)
	for _, ft := range []string{"full", "lora"} {
		out, errb, code := zhllama(t, "", "bench", "train", "--preset", "tiny", "--batch", "2", "--seq_len", "16", "--steps", "1", "--finetuning_type", ft)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", ft, code, errb)
		}
		var res struct {
			Trainable      int                `json:"trainable"`
			TorchTrainable int                `json:"torch_trainable"`
			Ratio          float64            `json:"ratio"`
			Phases         map[string]float64 `json:"phases_ms"`
		}
		lastJSON(t, out, &res)
		if res.Trainable == 0 || res.Trainable != res.TorchTrainable || res.Ratio <= 0 {
			t.Errorf("%s: zhllama trains %d values, PyTorch %d, ratio %g", ft, res.Trainable, res.TorchTrainable, res.Ratio)
		}
		for _, name := range stepPhases {
			if ms, ok := res.Phases[name]; !ok || ms < 0 {
				t.Errorf("%s: step part %s: %v ms (present %v) in %v", ft, name, ms, ok, res.Phases)
			}
		}
		if !strings.Contains(out, "median of each part: forward ") {
			t.Errorf("%s: no step breakdown in %q", ft, out)
		}
		t.Logf("%s: %d trainable values, ratio %.2f", ft, res.Trainable, res.Ratio)
	}
}

// bench generate runs PyTorch eager's decoding on the same shapes and
// reports the ratio.
func TestBenchGenerateTorch(t *testing.T) {
	testenv.RequireTorch(t)
	out, errb, code := zhllama(t, "", "bench", "generate", "--preset", "tiny", "--max_new_tokens", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	var res struct {
		Tokens float64 `json:"tokens_per_s"`
		Torch  float64 `json:"torch_tokens_per_s"`
		Ratio  float64 `json:"ratio"`
		BLAS   string  `json:"torch_blas"`
	}
	lastJSON(t, out, &res)
	if res.Tokens <= 0 || res.Torch <= 0 || res.Ratio <= 0 || res.BLAS == "" {
		t.Errorf("zhllama %g tokens/s, PyTorch %g (%q), ratio %g", res.Tokens, res.Torch, res.BLAS, res.Ratio)
	}
}

// bench dpo and bench ppo run the same step in PyTorch eager and report
// the ratio.
func TestBenchPreferenceTorch(t *testing.T) {
	testenv.RequireTorch(t)
	tok := testenv.Path(t, "tokenizers/llama2/tokenizer.model")
	for _, args := range [][]string{
		{"dpo", "--batch", "2", "--prompt_len", "16", "--seq_len", "32", "--steps", "1"},
		{"ppo", "--batch", "2", "--mini_batch", "2", "--prompt_len", "16", "--max_new_tokens", "4", "--steps", "1"},
	} {
		out, errb, code := zhllama(t, "", append([]string{"bench", args[0], "--preset", "tiny", "--tokenizer", tok}, args[1:]...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", args[0], code, errb)
		}
		var res struct {
			Ratio float64 `json:"ratio"`
			BLAS  string  `json:"torch_blas"`
		}
		lastJSON(t, out, &res)
		if res.Ratio <= 0 || res.BLAS == "" {
			t.Errorf("%s: ratio %g, PyTorch's BLAS %q", args[0], res.Ratio, res.BLAS)
		}
	}
}
