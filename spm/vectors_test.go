package spm

import (
	"os"
	"strings"
	"testing"

	"zhllama/internal/testenv"
)

// llama.cpp's LLaMA tokenizer vectors: inputs with newlines, leading spaces
// and mixed scripts, with the ids they must give (no bos).
func TestLlamaCppVectors(t *testing.T) {
	inp, err := os.ReadFile(testenv.Path(t, "llama.cpp-vectors/ggml-vocab-llama-spm.gguf.inp"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(testenv.Path(t, "llama.cpp-vectors/ggml-vocab-llama-spm.gguf.out"))
	if err != nil {
		t.Fatal(err)
	}
	inputs := strings.Split(strings.TrimSuffix(string(inp), "\n__ggml_vocab_test__\n"), "\n__ggml_vocab_test__\n")
	wants := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(inputs) != len(wants) {
		t.Fatalf("%d inputs, %d outputs", len(inputs), len(wants))
	}
	p := sharedProcessor(t, "tokenizers/llama2/tokenizer.model")
	for i, in := range inputs {
		got := formatIDs(p.Encode(in))
		if got != strings.TrimSpace(wants[i]) {
			t.Errorf("input %d %q:\n got %s\nwant %s", i, in, got, strings.TrimSpace(wants[i]))
		}
		// Decoding gives the text back (LLaMA's normalizer is the identity).
		if dec, err := p.Decode(p.Encode(in)); err != nil || dec != in {
			t.Errorf("input %d %q decodes to %q (%v)", i, in, dec, err)
		}
	}
	t.Logf("%d vectors", len(inputs))
}
