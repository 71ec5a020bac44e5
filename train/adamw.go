// Package train is the training loop and what it needs besides the model:
// optimizers, schedules, data batches, checkpoints and metrics.
package train

import (
	"math"
	"strconv"
)

// Optimizer updates parameters from their gradients.
type Optimizer interface {
	// Step updates params[i] with grads[i] at learning rate lr.
	Step(params, grads [][]float32, lr float64)
	// State is the optimizer's state as named float32 slices, for
	// checkpoints; SetStep restores the step count.
	State() map[string][]float32
	Steps() int
	SetSteps(int)
}

// AdamW is torch.optim.AdamW: Adam with decoupled weight decay and bias
// correction, over a fixed list of parameter slices.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	// NoDecay marks parameters without weight decay (norm weights, as
	// transformers' Trainer groups them).
	NoDecay []bool
	step    int
	m, v    [][]float32
}

// NewAdamW makes an optimizer with PyTorch's defaults (betas 0.9, 0.999,
// eps 1e-8) and state for params.
func NewAdamW(params [][]float32, weightDecay float64) *AdamW {
	o := &AdamW{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay, NoDecay: make([]bool, len(params))}
	for _, p := range params {
		o.m = append(o.m, make([]float32, len(p)))
		o.v = append(o.v, make([]float32, len(p)))
	}
	return o
}

// Step updates params[i] with grads[i], as torch.optim.AdamW.step does.
func (o *AdamW) Step(params, grads [][]float32, lr float64) {
	o.step++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.step))
	stepSize := float32(lr / bc1)
	bc2Sqrt := float32(math.Sqrt(bc2))
	b1, b2, eps := float32(o.Beta1), float32(o.Beta2), float32(o.Eps)
	for i, p := range params {
		decay := float32(1 - lr*o.WeightDecay)
		if o.NoDecay[i] {
			decay = 1
		}
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

// State names the moments "exp_avg.i" and "exp_avg_sq.i".
func (o *AdamW) State() map[string][]float32 {
	st := map[string][]float32{}
	for i := range o.m {
		st[stateName("exp_avg", i)] = o.m[i]
		st[stateName("exp_avg_sq", i)] = o.v[i]
	}
	return st
}

func (o *AdamW) Steps() int     { return o.step }
func (o *AdamW) SetSteps(n int) { o.step = n }

// SGD is torch.optim.SGD without momentum; weight decay is added to the
// gradient (coupled), as SGD does.
type SGD struct {
	WeightDecay float64
	NoDecay     []bool
	step        int
}

func (o *SGD) Step(params, grads [][]float32, lr float64) {
	o.step++
	for i, p := range params {
		wd := float32(o.WeightDecay)
		if o.NoDecay != nil && o.NoDecay[i] {
			wd = 0
		}
		g := grads[i]
		for j := range p {
			p[j] -= float32(lr) * (g[j] + wd*p[j])
		}
	}
}

func (o *SGD) State() map[string][]float32 { return map[string][]float32{} }
func (o *SGD) Steps() int                  { return o.step }
func (o *SGD) SetSteps(n int)              { o.step = n }

func stateName(kind string, i int) string { return kind + "." + strconv.Itoa(i) }

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

// LR is the learning rate of optimizer step (counting from 0) as
// transformers' schedulers give it: warmup rises linearly from 0, then
// linear decays to 0, cosine follows half a cosine to 0, constant stays.
func LR(kind string, base float64, step, warmup, total int) float64 {
	if step < warmup && kind != "constant" {
		return base * float64(step) / float64(max(1, warmup))
	}
	switch kind {
	case "linear":
		return base * max(0, float64(total-step)/float64(max(1, total-warmup)))
	case "cosine":
		progress := float64(step-warmup) / float64(max(1, total-warmup))
		return base * max(0, 0.5*(1+math.Cos(math.Pi*progress)))
	}
	return base
}
