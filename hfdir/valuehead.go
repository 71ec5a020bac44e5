package hfdir

import (
	"fmt"
	"path/filepath"

	"zhllama/llama"
	"zhllama/safetensors"
)

// ValueHeadFile is where TRL (and LLaMA-Factory's reward models) keep the
// value head beside the model or adapter.
const ValueHeadFile = "value_head.safetensors"

// SaveValueHead writes v to dir/value_head.safetensors with TRL's names.
func SaveValueHead(dir string, v *llama.ValueHead) error {
	return safetensors.Write(filepath.Join(dir, ValueHeadFile), map[string]string{"format": "pt"}, []safetensors.Source{
		safetensors.FromFloat32(llama.ValueHeadWeight, safetensors.F32, []int{1, len(v.W)}, v.W),
		safetensors.FromFloat32(llama.ValueHeadBias, safetensors.F32, []int{1}, v.B),
	})
}

// LoadValueHead reads dir/value_head.safetensors for a model of hidden
// size h, checking the names and shapes.
func LoadValueHead(dir string, h int) (*llama.ValueHead, error) {
	path := filepath.Join(dir, ValueHeadFile)
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	v := llama.NewValueHead(h)
	for _, want := range []struct {
		name  string
		dst   []float32
		shape []int
	}{{llama.ValueHeadWeight, v.W, []int{1, h}}, {llama.ValueHeadBias, v.B, []int{1}}} {
		t, ok := f.Tensor(want.name)
		if !ok {
			return nil, fmt.Errorf("%s: no tensor %s (a value head has %s and %s)", path, want.name, llama.ValueHeadWeight, llama.ValueHeadBias)
		}
		if fmt.Sprint(t.Shape) != fmt.Sprint(want.shape) {
			return nil, fmt.Errorf("%s: tensor %s has shape %v, a model of hidden size %d needs %v", path, want.name, t.Shape, h, want.shape)
		}
		if _, err := t.Float32(want.dst); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if len(f.Tensors) != 2 {
		return nil, fmt.Errorf("%s: %d tensors; a value head has 2", path, len(f.Tensors))
	}
	return v, nil
}
