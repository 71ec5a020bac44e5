package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README's first command: the whole pipeline from nothing, every
// stage improving what it should, report.json holding the numbers.
func TestDemo(t *testing.T) {
	if os.Getenv("ZHLLAMA_NOASM") != "" {
		t.Skip("the demo runs once, with the assembly kernels (the portable ones pass the same kernel tests)")
	}
	dir := filepath.Join(t.TempDir(), "demo")
	_, errs, code := zhllama(t, "", "demo", "--output_dir", dir)
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s", code, errs)
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tokenizer.chars_per_token_before", "tokenizer.chars_per_token_after", "pt.val_ppl_before", "pt.val_ppl_after",
		"sft.answer_accuracy_before", "sft.answer_accuracy_after", "eval.mc_accuracy_before", "eval.mc_accuracy_after", "rm.pair_accuracy",
		"ppo.reward_before", "ppo.reward_after", "ppo.kl", "dpo.reward_margin_before", "dpo.reward_margin_after", "seconds"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report.json lacks %s", k)
		}
	}
	if !strings.Contains(errs, "every stage improved") {
		t.Errorf("stderr:\n%s", errs)
	}
	// A second run into the same directory is refused, nothing overwritten.
	if _, errs, code := zhllama(t, "", "demo", "--output_dir", dir); code != 2 || !strings.Contains(errs, "not empty") {
		t.Errorf("rerun into %s: exit %d, %s", dir, code, errs)
	}
}
