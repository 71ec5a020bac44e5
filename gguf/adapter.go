package gguf

import (
	"fmt"
	"math"

	"zhllama/llama"
)

// WriteAdapter writes m's LoRA modules of the adapter called name as a
// llama.cpp LoRA adapter (general.type adapter), to be applied on the GGUF
// of the same base model: for each projection X, X.lora_a (PEFT's A, ne
// [in, r]) and X.lora_b (B, ne [r, out]), B's rows permuted for q_proj and
// k_proj as the base's are, and adapter.lora.alpha such that llama.cpp's
// scale alpha/r is the adapter's (rsLoRA's alpha/√r folded in). Matrices
// are in typ; rows that are not whole blocks fall back to F16.
func WriteAdapter(path string, m *llama.Model, name string, typ Type, progress func(done, total int64)) error {
	ads := m.Adapters(name)
	if len(ads) == 0 {
		return fmt.Errorf("%s: the model has no LoRA modules to write", path)
	}
	if !Convertible(typ) {
		return fmt.Errorf("%s: tensor type %s cannot be written", path, typ)
	}
	alpha := ads[0].LoRA.Scale * float32(ads[0].LoRA.R)
	var srcs []Source
	for _, a := range ads {
		l := a.LoRA
		if al := l.Scale * float32(l.R); math.Abs(float64(al-alpha)) > 1e-6*math.Abs(float64(alpha)) {
			return fmt.Errorf("%s: %s has scale %g at rank %d, another module %g at rank %d: a GGUF adapter has one alpha for all", path, a.Name, l.Scale, l.R, ads[0].LoRA.Scale, ads[0].LoRA.R)
		}
		p, err := m.Config.LookupParam(a.Name)
		if err != nil {
			return err
		}
		r := l.R
		srcs = append(srcs, Rows(p.GGUF+".lora_a", matrixType(typ, a.In), a.In, r, func(i int, dst []float32) {
			copy(dst, l.A[i*a.In:(i+1)*a.In])
		}))
		row := func(i int) int { return i }
		if permuted(p) {
			hd := m.Config.HeadDim
			row = func(i int) int { return hfRow(i, hd) }
		}
		srcs = append(srcs, Rows(p.GGUF+".lora_b", matrixType(typ, r), r, a.Out, func(i int, dst []float32) {
			k := row(i)
			copy(dst, l.B[k*r:(k+1)*r])
		}))
	}
	kvs := []KV{
		{"general.architecture", String("llama")},
		{"general.type", String("adapter")},
		{"adapter.type", String("lora")},
		{"adapter.lora.alpha", F32(alpha)},
		{"general.file_type", U32(fileType(typ))},
		{"general.quantization_version", U32(2)},
	}
	return Write(path, kvs, srcs, progress)
}
