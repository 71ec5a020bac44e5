// Package optim updates named parameters from their gradients: AdamW and
// SGD as torch.optim computes them, parameter groups, gradient clipping and
// transformers' learning-rate schedules. State is keyed by parameter name,
// so a checkpoint resumes onto the same tensors whatever their order.
package optim

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"zhllama/tensor"
)

// Param is a trained tensor: its name in the files it is saved to, its
// values, its gradient and its group.
type Param struct {
	Name       string
	Data, Grad []float32
	Group      int // index into the optimizer's groups
}

// Group is a set of parameters with their own settings: decay and no
// decay (norm weights, as transformers' Trainer groups them), a policy and
// its value head.
type Group struct {
	Name        string
	WeightDecay float64
	LRScale     float64 // the group's learning rate over the schedule's; 0 means 1
}

func (g Group) lr(lr float64) float64 {
	if g.LRScale == 0 {
		return lr
	}
	return lr * g.LRScale
}

// Optimizer updates its parameters from their gradients.
type Optimizer interface {
	// Step updates every parameter with its gradient at learning rate lr.
	Step(lr float64)
	// State is the optimizer's state for checkpoints, as tensors named
	// "<kind>.<parameter name>".
	State() map[string][]float32
	Steps() int
	SetSteps(int)
}

// AdamW is torch.optim.AdamW: Adam with decoupled weight decay and bias
// correction.
type AdamW struct {
	Beta1, Beta2, Eps float64
	Groups            []Group
	params            []Param
	step              int
	m, v              [][]float32
}

// NewAdamW makes an optimizer with PyTorch's defaults (betas 0.9, 0.999,
// eps 1e-8) and state for params.
func NewAdamW(params []Param, groups []Group) *AdamW {
	o := &AdamW{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Groups: groups, params: params}
	for _, p := range params {
		o.m = append(o.m, make([]float32, len(p.Data)))
		o.v = append(o.v, make([]float32, len(p.Data)))
	}
	return o
}

// Step updates the parameters as torch.optim.AdamW.step does.
func (o *AdamW) Step(lr float64) {
	o.step++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.step))
	bc2Sqrt := float32(math.Sqrt(bc2))
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	for i, p := range o.params {
		g := o.Groups[p.Group]
		glr := g.lr(lr)
		tensor.AdamW(p.Data, p.Grad, o.m[i], o.v[i], tensor.AdamWStep{
			Decay: float32(1 - glr*g.WeightDecay), Beta1: b1, OneMinusBeta1: 1 - b1, Beta2: b2, OneMinusBeta2: 1 - b2,
			BC2Sqrt: bc2Sqrt, Eps: float32(o.Eps), StepSize: float32(glr / bc1),
		})
	}
}

// State names the moments "exp_avg.<name>" and "exp_avg_sq.<name>".
func (o *AdamW) State() map[string][]float32 {
	st := map[string][]float32{}
	for i, p := range o.params {
		st["exp_avg."+p.Name] = o.m[i]
		st["exp_avg_sq."+p.Name] = o.v[i]
	}
	return st
}

func (o *AdamW) Steps() int     { return o.step }
func (o *AdamW) SetSteps(n int) { o.step = n }

// SGD is torch.optim.SGD without momentum; weight decay is added to the
// gradient (coupled), as SGD does.
type SGD struct {
	Groups []Group
	params []Param
	step   int
}

// NewSGD makes an SGD optimizer for params.
func NewSGD(params []Param, groups []Group) *SGD { return &SGD{Groups: groups, params: params} }

func (o *SGD) Step(lr float64) {
	o.step++
	for _, p := range o.params {
		g := o.Groups[p.Group]
		glr, wd := float32(g.lr(lr)), float32(g.WeightDecay)
		for j, grad := range p.Grad {
			p.Data[j] -= glr * (grad + wd*p.Data[j])
		}
	}
}

func (o *SGD) State() map[string][]float32 { return map[string][]float32{} }
func (o *SGD) Steps() int                  { return o.step }
func (o *SGD) SetSteps(n int)              { o.step = n }

// LoadState fills o's state from a checkpoint's tensors: get returns the
// named tensor's values. Every state tensor must be there with its size;
// a mismatch names the tensor. Checkpoints that numbered the parameters
// ("exp_avg.0", ...) instead of naming them load by position when params
// (in the optimizer's order) match them in number and sizes.
func LoadState(o Optimizer, params []Param, names []string, get func(name string) ([]float32, error)) error {
	st := o.State()
	legacy := !slices.ContainsFunc(names, func(n string) bool { _, ok := st[n]; return ok }) && slices.Contains(names, "exp_avg.0")
	if legacy {
		return loadNumbered(st, params, names, get)
	}
	for _, n := range names {
		if _, ok := st[n]; !ok {
			return fmt.Errorf("the checkpoint has optimizer state %s, which this run does not train: resume with the settings it was made with", n)
		}
	}
	for _, want := range sortedKeys(st) {
		if !slices.Contains(names, want) {
			return fmt.Errorf("optimizer state %s is missing: the checkpoint trained other tensors (it has %d state tensors, this run needs %d)", want, len(names), len(st))
		}
		v, err := get(want)
		if err != nil {
			return err
		}
		if len(v) != len(st[want]) {
			return fmt.Errorf("optimizer state %s has %d values, the parameter %d", want, len(v), len(st[want]))
		}
		copy(st[want], v)
	}
	return nil
}

// loadNumbered reads state saved under parameter numbers.
func loadNumbered(st map[string][]float32, params []Param, names []string, get func(string) ([]float32, error)) error {
	count := 0
	for _, n := range names {
		if strings.HasPrefix(n, "exp_avg.") {
			count++
		}
	}
	if count != len(params) {
		return fmt.Errorf("the checkpoint's optimizer state numbers %d parameters, this run trains %d: resume with the settings it was made with", count, len(params))
	}
	for i, p := range params {
		for _, kind := range []string{"exp_avg", "exp_avg_sq"} {
			dst, ok := st[kind+"."+p.Name]
			if !ok {
				continue // an optimizer without this state
			}
			v, err := get(kind + "." + strconv.Itoa(i))
			if err != nil {
				return err
			}
			if len(v) != len(dst) {
				return fmt.Errorf("optimizer state %s.%d has %d values, but parameter %d (%s) has %d: resume with the settings the checkpoint was made with", kind, i, len(v), i, p.Name, len(dst))
			}
			copy(dst, v)
		}
	}
	return nil
}

func sortedKeys(m map[string][]float32) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ClipGradNorm scales the gradients so that their joint L2 norm is at
// most maxNorm, as torch.nn.utils.clip_grad_norm_ does, and returns the
// norm before.
func ClipGradNorm(params []Param, maxNorm float64) float64 {
	// Squares are summed in float64 over fixed spans of each tensor, the
	// spans' sums then in order: the same result on any number of workers.
	const span = 1 << 16
	var ss float64
	for _, p := range params {
		parts := make([]float64, (len(p.Grad)+span-1)/span)
		tensor.ParallelLarge(len(parts), len(p.Grad), func(lo, hi int) {
			for s := lo; s < hi; s++ {
				var sum float64
				for _, x := range p.Grad[s*span : min(len(p.Grad), (s+1)*span)] {
					sum += float64(x) * float64(x)
				}
				parts[s] = sum
			}
		})
		for _, sum := range parts {
			ss += sum
		}
	}
	norm := math.Sqrt(ss)
	if c := maxNorm / (norm + 1e-6); c < 1 {
		for _, p := range params {
			g := p.Grad
			tensor.ParallelLarge(len(g), len(g), func(lo, hi int) {
				for j := lo; j < hi; j++ {
					g[j] *= float32(c)
				}
			})
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
