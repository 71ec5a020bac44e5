package spm

import (
	"testing"

	"zhllama/internal/testenv"
)

// These tests cannot use testenv/spmtest, which imports this package.

// loadShared loads a model of the shared test data.
func loadShared(t testing.TB, rel string) *Model {
	t.Helper()
	m, err := Load(testenv.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sharedProcessor is a model of the shared test data prepared for encoding.
func sharedProcessor(t testing.TB, rel string) *Processor {
	t.Helper()
	return processorFor(t, testenv.Path(t, rel))
}

// processorFor loads a model file and prepares it for encoding.
func processorFor(t testing.TB, path string) *Processor {
	t.Helper()
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProcessor(m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
