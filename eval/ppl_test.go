package eval_test

import (
	"math"
	"strings"
	"testing"
	"zhllama/hfdir"

	"zhllama/eval"
	"zhllama/internal/testenv/spmtest"
	"zhllama/llama"
)

// Batching and padding do not change the perplexity.
func TestPerplexityIsBatchInvariant(t *testing.T) {
	p := spmtest.Processor(t, "tokenizers/llama2/tokenizer.model")
	c, err := llama.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := hfdir.Init(c, p.Model(), dir, hfdir.InitOptions{Seed: 2}); err != nil {
		t.Fatal(err)
	}
	m, err := hfdir.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	text := "A short line.\n\nA somewhat longer line of English text here.\n中文的一行。\n"
	one, err := eval.Perplexity(m, strings.NewReader(text), p, 64, 1)
	if err != nil {
		t.Fatal(err)
	}
	three, err := eval.Perplexity(m, strings.NewReader(text), p, 64, 3)
	if err != nil {
		t.Fatal(err)
	}
	if one.Documents != 3 || one.Tokens != three.Tokens || math.Abs(one.NLL-three.NLL) > 1e-5 || math.Abs(one.PPL-math.Exp(one.NLL)) > 1e-9 {
		t.Errorf("batch 1 %+v, batch 3 %+v", one, three)
	}
	if _, err := eval.Perplexity(m, strings.NewReader("\n\n"), p, 64, 2); err == nil {
		t.Error("an empty input gave a perplexity")
	}
}
