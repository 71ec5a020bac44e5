// Package train holds what a training step needs besides the model: the
// optimizer and gradient clipping.
package train

import "math"

// AdamW is torch.optim.AdamW: Adam with decoupled weight decay and bias
// correction, over a fixed list of parameter slices.
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	step                               int
	m, v                               [][]float32
}

// NewAdamW makes an optimizer with PyTorch's defaults (betas 0.9, 0.999,
// eps 1e-8) and state for params.
func NewAdamW(params [][]float32, lr, weightDecay float64) *AdamW {
	o := &AdamW{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay}
	for _, p := range params {
		o.m = append(o.m, make([]float32, len(p)))
		o.v = append(o.v, make([]float32, len(p)))
	}
	return o
}

// Step updates params[i] with grads[i], as torch.optim.AdamW.step does.
func (o *AdamW) Step(params, grads [][]float32) {
	o.step++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.step))
	stepSize := float32(o.LR / bc1)
	bc2Sqrt := float32(math.Sqrt(bc2))
	decay := float32(1 - o.LR*o.WeightDecay)
	b1, b2, eps := float32(o.Beta1), float32(o.Beta2), float32(o.Eps)
	for i, p := range params {
		g, m, v := grads[i], o.m[i], o.v[i]
		for j := range p {
			p[j] *= decay
			m[j] = b1*m[j] + (1-b1)*g[j]
			v[j] = b2*v[j] + (1-b2)*g[j]*g[j]
			denom := float32(math.Sqrt(float64(v[j])))/bc2Sqrt + eps
			p[j] -= stepSize * m[j] / denom
		}
	}
}

// ClipGradNorm scales grads so that their joint L2 norm is at most maxNorm,
// as torch.nn.utils.clip_grad_norm_ does, and returns the norm before.
func ClipGradNorm(grads [][]float32, maxNorm float64) float64 {
	var ss float64
	for _, g := range grads {
		for _, x := range g {
			ss += float64(x) * float64(x)
		}
	}
	norm := math.Sqrt(ss)
	if c := maxNorm / (norm + 1e-6); c < 1 {
		for _, g := range grads {
			for j := range g {
				g[j] *= float32(c)
			}
		}
	}
	return norm
}
