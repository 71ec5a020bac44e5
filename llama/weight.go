package llama

import (
	"fmt"

	"zhllama/tensor"
)

// Weight is a weight matrix [out × in]: float32 values in W, or, for a
// frozen weight kept compact in memory (bfloat16, quantized), Compact with
// W nil. Adapters are low-rank updates on top; each pass chooses which of
// them apply.
type Weight struct {
	W        []float32
	Compact  tensor.Matrix
	Adapters []*LoRA
}

// forward computes y[t×out] = x[t×in] · Wᵀ plus the adapters p applies.
func (w *Weight) forward(p *Pass, y, x []float32, t, in, out int) {
	if w.Compact != nil {
		tensor.LinearMatrix(y, x, w.Compact, t, in, out)
	} else {
		tensor.Linear(y, x, w.W, t, in, out)
	}
	for _, ad := range w.Adapters {
		if p.applies(ad) {
			ad.forward(p, y, x, t, in, out)
		}
	}
}

// forwardShared is forward for weights that read the same input x, ys[i]
// = x·wsᵢᵀ: where all are compact and without adapters they share one
// quantization of x (tensor.LinearMatrices; the same results).
func forwardShared(p *Pass, x []float32, t, in int, ws []*Weight, ys [][]float32, outs []int) {
	ms := make([]tensor.Matrix, len(ws))
	for i, w := range ws {
		if w.Compact == nil || len(w.Adapters) > 0 {
			for i, w := range ws {
				w.forward(p, ys[i], x, t, in, outs[i])
			}
			return
		}
		ms[i] = w.Compact
	}
	tensor.LinearMatrices(ys, x, ms, t, in, outs)
}

// backward adds dy·W (and the applied adapters' input gradients) to dx
// and, unless g is nil or holds no values (a frozen weight), dyᵀ·x to g;
// adapter gradients go to g's adapters of the same name. Compact weights
// are always frozen.
func (w *Weight) backward(p *Pass, dx []float32, g *Weight, dy, x []float32, t, in, out int) {
	for _, ad := range w.Adapters {
		if !p.applies(ad) {
			continue
		}
		var ga *LoRA
		if g != nil {
			ga = g.Adapter(ad.Name)
		}
		ad.backward(p, dx, ga, dy, t, in, out)
	}
	if w.Compact != nil {
		tensor.LinearMatrixBackward(dx, dy, w.Compact, t, in, out)
		return
	}
	var dw []float32
	if g != nil {
		dw = g.W
	}
	tensor.LinearBackward(dx, dw, dy, x, w.W, t, in, out)
}

// row widens row r into dst.
func (w *Weight) row(dst []float32, r int) {
	if w.Compact != nil {
		w.Compact.Widen(dst, r, 0)
		return
	}
	copy(dst, w.W[r*len(dst):(r+1)*len(dst)])
}

// Adapter is the adapter called name, or nil.
func (w *Weight) Adapter(name string) *LoRA {
	for _, ad := range w.Adapters {
		if ad.Name == name {
			return ad
		}
	}
	return nil
}

// Attach puts l on w, replacing an adapter of the same name.
func (w *Weight) Attach(l *LoRA) {
	for i, ad := range w.Adapters {
		if ad.Name == l.Name {
			w.Adapters[i] = l
			return
		}
	}
	w.Adapters = append(w.Adapters, l)
}

// Merge folds every adapter into W (W += Scale·B·A) and drops them.
func (w *Weight) Merge(out, in int) error {
	if len(w.Adapters) == 0 {
		return nil
	}
	if w.W == nil {
		return fmt.Errorf("cannot merge an adapter into a weight held compactly")
	}
	for _, l := range w.Adapters {
		tensor.Gemm(false, false, out, in, l.R, l.Scale, l.B, l.R, l.A, in, 1, w.W, in)
	}
	w.Adapters = nil
	return nil
}

func (w *Weight) quantize(rows, cols, bits int) error {
	q, err := tensor.Quantize(w.W, rows, cols, bits)
	if err != nil {
		return err
	}
	w.Compact, w.W = q, nil
	return nil
}
