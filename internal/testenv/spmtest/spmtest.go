// Package spmtest loads the shared test tokenizers for tests outside
// package spm (whose own tests cannot import a package that imports spm).
package spmtest

import (
	"testing"

	"zhllama/internal/testenv"
	"zhllama/spm"
)

// Model loads the tokenizer model at rel under the shared data directory,
// or fails t (or skips it, see testenv.Need, without the shared data).
func Model(t testing.TB, rel string) *spm.Model {
	t.Helper()
	m, err := spm.Load(testenv.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Processor is Model prepared for encoding.
func Processor(t testing.TB, rel string) *spm.Processor {
	t.Helper()
	p, err := spm.NewProcessor(Model(t, rel))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return p
}
