package hfdir

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zhllama/llama"
	"zhllama/safetensors"
)

// A value head written with TRL's names reads back; a file of another
// shape or with other tensors is refused with the tensor named.
func TestValueHeadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	v := llama.NewValueHead(8)
	v.Init(rand.New(rand.NewPCG(1, 2)))
	if err := SaveValueHead(dir, v); err != nil {
		t.Fatal(err)
	}
	back, err := LoadValueHead(dir, 8)
	if err != nil || !slices.Equal(back.W, v.W) || back.B[0] != v.B[0] {
		t.Fatalf("read back %+v, %v", back, err)
	}
	if _, err := LoadValueHead(dir, 16); err == nil || !strings.Contains(err.Error(), "v_head.summary.weight") {
		t.Errorf("hidden size 16: %v", err)
	}
	path := filepath.Join(dir, ValueHeadFile)
	if err := safetensors.Write(path, nil, []safetensors.Source{safetensors.FromFloat32("v_head.summary.weight", safetensors.F32, []int{1, 8}, v.W)}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadValueHead(dir, 8); err == nil || !strings.Contains(err.Error(), "v_head.summary.bias") {
		t.Errorf("no bias: %v", err)
	}
}
