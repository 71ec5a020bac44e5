package llama

import (
	"encoding/binary"
	"unsafe"

	"zhllama/safetensors"
	"zhllama/tensor"
)

// Load reads a model directory (config.json and safetensors) into float32,
// after checking every tensor's shape against the config.
func Load(dir string) (*Model, error) { return LoadWith(dir, LoadOptions{}) }

// LoadOptions control LoadWith.
type LoadOptions struct {
	// KeepBF16 keeps bfloat16 weight matrices in bfloat16, read-only, for
	// inference: half the memory, and the same results, since widening
	// bfloat16 to float32 is exact.
	KeepBF16 bool
	// QuantizeBits, 4 or 8, stores the decoder layers' projections as NF4
	// (with double quantization) or row-wise int8, frozen, as QLoRA does;
	// embeddings, the head and the norms stay float32.
	QuantizeBits int
	// Progress, if set, is told after each tensor: done of total bytes.
	Progress func(done, total int64)
}

// LoadWith is Load with options.
func LoadWith(dir string, o LoadOptions) (*Model, error) {
	s, ck, err := openChecked(dir)
	if err != nil {
		return nil, err
	}
	m := &Model{Config: s.Config}
	mapped := false
	var done int64
	for _, r := range m.Refs() {
		t, err := ck.Tensor(r.Name)
		if err != nil {
			ck.Close()
			return nil, err
		}
		if o.Progress != nil {
			o.Progress(done, s.Bytes) // the tensors before this one are converted
		}
		done += int64(len(t.Data))
		w := r.Weight
		if w != nil && o.QuantizeBits != 0 && r.Layer >= 0 {
			// Tensor by tensor, so that the float32 model never exists whole.
			if w.W, err = t.Float32(nil); err == nil {
				err = w.quantize(t.Shape[0], t.Shape[1], o.QuantizeBits)
			}
			if err != nil {
				ck.Close()
				return nil, err
			}
			t.Release()
			continue
		}
		if w != nil && o.KeepBF16 && t.DType == safetensors.BF16 {
			w.Compact = &tensor.BF16{Rows: t.Shape[0], Cols: t.Shape[1], Data: bf16View(t.Data)}
			mapped = true
			continue
		}
		if *r.Data, err = t.Float32(nil); err != nil {
			ck.Close()
			return nil, err
		}
		t.Release()
	}
	if o.Progress != nil {
		o.Progress(s.Bytes, s.Bytes)
	}
	m.tie()
	if mapped {
		m.mapped = ck // the bfloat16 weights are the file's pages
	} else {
		ck.Close()
	}
	return m, nil
}

// bf16View is b as little-endian uint16s: the mapped file itself where
// the alignment allows (no copy, and pages the kernel can drop and reread
// under memory pressure), else a copy.
func bf16View(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&b[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
	}
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return out
}
