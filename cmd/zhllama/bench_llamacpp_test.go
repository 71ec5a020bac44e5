package main

import (
	"os/exec"
	"strings"
	"testing"

	"zhllama/internal/testenv"
)

// bench generate --vs llamacpp on the tiny preset: both sides measured on
// the same GGUF, a ratio per test and thread count. llama-bench is built
// once in the user cache folder (about 20 s, from npm's node-llama-cpp).
func TestBenchGenerateVsLlamaCpp(t *testing.T) {
	for _, tool := range []string{"node", "npm", "git", "g++"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Need(t, tool, "install Node.js 20 or later (node, npm), git and g++ (apt-get install nodejs npm git g++) to build llama.cpp's llama-bench")
		}
	}
	out, errOut, code := zhllama(t, "", "bench", "generate", "--vs", "llamacpp", "--preset", "tiny", "--outtype", "f16",
		"--threads", "1", "--max_new_tokens", "16", "--prompt", "16", "--runs", "1")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if _, why, ok := strings.Cut(out, "llama.cpp side skipped: "); ok {
		testenv.Need(t, "llama-bench", why)
	}
	for _, want := range []string{"zhllama tok/s", "llama.cpp tok/s", "ratio", "tg16@d33", "pp16"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var res struct {
		Weights string           `json:"weights"`
		KVCache string           `json:"kv_cache_dtype"`
		Results []map[string]any `json:"results"`
	}
	lastJSON(t, out, &res)
	if res.Weights != "f16" || res.KVCache != "float16" || len(res.Results) != 1 {
		t.Fatalf("summary %+v", res)
	}
	for _, k := range []string{"decode_tokens_per_s", "prompt_tokens_per_s", "llamacpp_decode_tokens_per_s", "llamacpp_prompt_tokens_per_s", "decode_ratio", "prompt_ratio"} {
		if v, ok := res.Results[0][k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, res.Results[0][k])
		}
	}
}

// A 7B model is refused as f32 (27 GB, which zhllama would widen into its
// heap), naming the types that fit.
func TestBenchGenerateVsLlamaCppRefusesF32At7B(t *testing.T) {
	_, errOut, code := zhllama(t, "", "bench", "generate", "--vs", "llamacpp", "--preset", "llama2-7b", "--outtype", "f32")
	if code != 2 || !strings.Contains(errOut, "--outtype f32") || !strings.Contains(errOut, "q4_0") {
		t.Errorf("exit %d\n%s", code, errOut)
	}
}
