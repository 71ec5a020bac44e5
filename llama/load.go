package llama

import (
	"fmt"

	"zhllama/internal/half"
	"zhllama/safetensors"
	"zhllama/tensor"
)

// LoadOptions control LoadWeights.
type LoadOptions struct {
	// KeepBF16 keeps bfloat16 weight matrices in bfloat16, read-only, for
	// inference: half the memory, and the same results, since widening
	// bfloat16 to float32 is exact.
	KeepBF16 bool
	// KeepF16 keeps float16 weight matrices likewise (their widening to
	// float32 is exact too): for readers of whole rows, such as the GGUF
	// exporter, which would otherwise hold a 7B model's 27 GB of float32.
	KeepF16 bool
	// QuantizeBits, 4 or 8, stores the decoder layers' projections as NF4
	// (with double quantization) or row-wise int8, frozen, as QLoRA does;
	// embeddings, the head and the norms stay float32.
	QuantizeBits int
	// Progress, if set, is told after each tensor: done of total bytes.
	Progress func(done, total int64)
}

// LoadWeights reads the model c describes from a checkpoint whose tensors
// were checked against c. With KeepBF16 (KeepF16) the model reads bfloat16
// (float16) weights from the checkpoint's mapped pages and owns it (Close
// releases it);
// otherwise the checkpoint is closed when LoadWeights returns.
func LoadWeights(c Config, ck *safetensors.Checkpoint, o LoadOptions) (*Model, error) {
	m := &Model{Config: c}
	refs := m.Refs()
	var total, done int64
	for _, r := range refs {
		t, err := ck.Tensor(r.Name)
		if err != nil {
			ck.Close()
			return nil, err
		}
		total += int64(len(t.Data))
	}
	if err := CheckFinite(ck, refs); err != nil {
		ck.Close()
		return nil, err
	}
	mapped := false
	var scratch []float32 // the float32 values of the tensor being quantized
	for _, r := range refs {
		t, _ := ck.Tensor(r.Name)
		if o.Progress != nil {
			o.Progress(done, total) // the tensors before this one are converted
		}
		done += int64(len(t.Data))
		var err error
		w := r.Weight
		switch {
		case w != nil && o.QuantizeBits != 0 && r.Layer >= 0:
			// Tensor by tensor, so that the float32 model never exists whole,
			// each converted into the same buffer by all the workers.
			if scratch, err = float32Parallel(t, scratch); err == nil {
				w.W = scratch
				err = w.quantize(t.Shape[0], t.Shape[1], o.QuantizeBits)
			}
			t.Release()
		case w != nil && o.KeepBF16 && t.DType == safetensors.BF16:
			w.Compact = &tensor.BF16{Rows: t.Shape[0], Cols: t.Shape[1], Data: half.View(t.Data)}
			mapped = true
		case w != nil && o.KeepF16 && t.DType == safetensors.F16:
			w.Compact = &tensor.F16{Rows: t.Shape[0], Cols: t.Shape[1], Data: half.View(t.Data)}
			mapped = true
		default:
			*r.Data, err = t.Float32(nil)
			t.Release()
		}
		if err != nil {
			ck.Close()
			return nil, fmt.Errorf("tensor %s: %w", r.Name, err)
		}
	}
	if o.Progress != nil {
		o.Progress(total, total)
	}
	m.Tie()
	if mapped {
		m.mapped = ck // the bfloat16 weights are the file's pages
	} else {
		ck.Close()
	}
	return m, nil
}

// float32Parallel converts t to float32 into buf (grown if short), pieces
// of it on all the workers: reading a mapped checkpoint, most of the time
// goes to page faults and widening, which the cores share.
func float32Parallel(t *safetensors.Tensor, buf []float32) ([]float32, error) {
	n := t.Elements()
	if cap(buf) < n {
		buf = make([]float32, n)
	}
	buf = buf[:n]
	if err := t.Float32At(buf[:0], 0); err != nil { // the dtype
		return nil, err
	}
	const piece = 1 << 16
	tensor.ParallelFine((n+piece-1)/piece, func(lo, hi int) {
		_ = t.Float32At(buf[lo*piece:min(hi*piece, n)], lo*piece) // in range, of a float dtype
	})
	return buf, nil
}

// CheckFinite refuses NaN and infinite weights, which would only give
// garbage (a damaged file, or a run that diverged).
func CheckFinite(ck *safetensors.Checkpoint, refs []Ref) error {
	ts := make([]*safetensors.Tensor, len(refs))
	for i, r := range refs {
		t, err := ck.Tensor(r.Name)
		if err != nil {
			return err
		}
		ts[i] = t
	}
	// Tensors side by side on the workers (the pass reads the whole file);
	// the first bad one in order is reported, whatever the timing.
	bad := make([][2]int, len(ts)) // count, first index
	tensor.ParallelFine(len(ts), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			bad[i][0], bad[i][1] = ts[i].NonFinite()
		}
	})
	for i, b := range bad {
		if b[0] > 0 {
			return fmt.Errorf("tensor %s holds %d NaN or infinite values (the first at index %d): the checkpoint is damaged or comes from a run that diverged; use an earlier checkpoint", refs[i].Name, b[0], b[1])
		}
	}
	return nil
}

// Sources are the model's tensors for a safetensors writer, in dtype.
// Weights held compactly are an error: save the model they were loaded
// from.
func (m *Model) Sources(dt safetensors.DType) ([]safetensors.Source, error) {
	var srcs []safetensors.Source
	for _, r := range m.Refs() {
		if r.Weight != nil && r.Weight.Compact != nil {
			return nil, fmt.Errorf("tensor %s is held compactly and cannot be saved", r.Name)
		}
		srcs = append(srcs, safetensors.FromFloat32(r.Name, dt, r.Shape, *r.Data))
	}
	return srcs, nil
}
