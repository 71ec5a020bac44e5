package llama

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"zhllama/tensor"
)

// LoRA is a low-rank update of a frozen weight, as PEFT defines it:
// y = x·Wᵀ + Scale·(dropout(x)·Aᵀ)·Bᵀ, A [r × in], B [out × r].
type LoRA struct {
	A, B    []float32
	R       int
	Scale   float32
	Dropout float64
	// Train turns dropout on; Seed seeds its masks (the trainer sets it
	// each step, so a resumed run draws the same masks).
	Train bool
	Seed  uint64

	xd, xa   []float32 // forward's input after dropout and x·Aᵀ, kept for backward
	drop     []float32 // where xd lives with dropout (without, xd is the input itself)
	mask     []float32 // dropout's scale per input value: 0 or 1/(1−p)
	dxa, dxd []float32 // backward's scratch
}

// NewLoRA makes a rank-r adapter for a weight [out × in]: A from
// Kaiming-uniform (a = √5, PEFT's default, so U(±1/√in)), B zero.
func NewLoRA(out, in, r int, scale float32, dropout float64, rng *rand.Rand) *LoRA {
	l := &LoRA{A: make([]float32, r*in), B: make([]float32, out*r), R: r, Scale: scale, Dropout: dropout}
	bound := 1 / math.Sqrt(float64(in))
	for i := range l.A {
		l.A[i] = float32((2*rng.Float64() - 1) * bound)
	}
	return l
}

// forward adds the low-rank term to y [t × out] for x [t × in].
func (l *LoRA) forward(y, x []float32, t, in, out int) {
	l.xd = x
	if l.Train && l.Dropout > 0 {
		// Never into xd's old buffer: after a pass without dropout that is
		// the caller's input, which other projections still read.
		l.xd = grow(&l.drop, t*in)
		grow(&l.mask, t*in)
		rng := rand.New(rand.NewPCG(l.Seed, uint64(t)))
		keep := float32(1 / (1 - l.Dropout))
		for i, v := range x {
			l.mask[i] = 0
			if rng.Float64() >= l.Dropout {
				l.mask[i] = keep
			}
			l.xd[i] = v * l.mask[i]
		}
	}
	grow(&l.xa, t*l.R)
	tensor.Linear(l.xa, l.xd, l.A, t, in, l.R)
	tensor.Gemm(false, true, t, out, l.R, l.Scale, l.xa, l.R, l.B, l.R, 1, y, out)
}

// backward adds the low-rank term's gradients: to dx, and to g's A and B.
func (l *LoRA) backward(dx []float32, g *LoRA, dy []float32, t, in, out int) {
	dxa := grow(&l.dxa, t*l.R)
	// dxa = Scale · dy · B ; dB += Scale · dyᵀ · xa ; dA += dxaᵀ · xd.
	tensor.Gemm(false, false, t, l.R, out, l.Scale, dy, out, l.B, l.R, 0, dxa, l.R)
	if g != nil {
		tensor.Gemm(true, false, out, l.R, t, l.Scale, dy, out, l.xa, l.R, 1, g.B, l.R)
		tensor.Gemm(true, false, l.R, in, t, 1, dxa, l.R, l.xd, in, 1, g.A, in)
	}
	if dx == nil {
		return
	}
	if l.Train && l.Dropout > 0 {
		dxd := grow(&l.dxd, t*in)
		tensor.Gemm(false, false, t, in, l.R, 1, dxa, l.R, l.A, in, 0, dxd, in)
		for i, v := range dxd {
			dx[i] += v * l.mask[i]
		}
		return
	}
	tensor.Gemm(false, false, t, in, l.R, 1, dxa, l.R, l.A, in, 1, dx, in)
}

// Merge folds the update into W (W += Scale·B·A) and drops the adapter.
func (w *Weight) Merge(out, in int) error {
	if w.LoRA == nil {
		return nil
	}
	if w.W == nil {
		return fmt.Errorf("cannot merge an adapter into a weight held compactly")
	}
	l := w.LoRA
	tensor.Gemm(false, false, out, in, l.R, l.Scale, l.B, l.R, l.A, in, 1, w.W, in)
	w.LoRA = nil
	return nil
}

// linear is one of a layer's projections with its shape.
type linear struct {
	module  string // e.g. "self_attn.q_proj"
	w       *Weight
	out, in int
}

// name is its checkpoint name in layer l.
func (p linear) name(l int) string {
	return fmt.Sprintf("model.layers.%d.%s.weight", l, p.module)
}

// linears lists the layer's projections, in checkpoint order.
func (ly *Layer) linears(c *Config) []linear {
	h, q, kv, in := c.HiddenSize, c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim, c.IntermediateSize
	return []linear{
		{"self_attn.q_proj", &ly.Q, q, h}, {"self_attn.k_proj", &ly.K, kv, h}, {"self_attn.v_proj", &ly.V, kv, h},
		{"self_attn.o_proj", &ly.O, h, q}, {"mlp.gate_proj", &ly.Gate, in, h}, {"mlp.up_proj", &ly.Up, in, h},
		{"mlp.down_proj", &ly.Down, h, in},
	}
}

// Adapter is a trained LoRA module of a model.
type Adapter struct {
	Name   string // the projection's checkpoint name, e.g. model.layers.0.self_attn.q_proj.weight
	Module string // its module name, e.g. q_proj
	LoRA   *LoRA
	Out    int
	In     int
}

// LoRAModules are the projections an adapter can sit on.
var LoRAModules = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// AddLoRA puts a rank-r adapter on every projection whose module name
// (one of LoRAModules) is in targets, and returns them in order.
func (m *Model) AddLoRA(targets []string, r int, scale float32, dropout float64, seed uint64) []Adapter {
	rng := rand.New(rand.NewPCG(seed, 0x10ea))
	var out []Adapter
	for l := range m.Layers {
		for _, p := range m.Layers[l].linears(&m.Config) {
			mod := p.module[strings.IndexByte(p.module, '.')+1:]
			if !slices.Contains(targets, mod) {
				continue
			}
			p.w.LoRA = NewLoRA(p.out, p.in, r, scale, dropout, rng)
			out = append(out, Adapter{p.name(l), mod, p.w.LoRA, p.out, p.in})
		}
	}
	return out
}

// Adapters lists the model's LoRA modules.
func (m *Model) Adapters() []Adapter {
	var out []Adapter
	for l := range m.Layers {
		for _, p := range m.Layers[l].linears(&m.Config) {
			if p.w.LoRA != nil {
				mod := p.module[strings.IndexByte(p.module, '.')+1:]
				out = append(out, Adapter{p.name(l), mod, p.w.LoRA, p.out, p.in})
			}
		}
	}
	return out
}

// LoRAGrads is a gradient holder for m's adapters: zeroed A and B for each,
// nothing else allocated (the base is frozen).
func (m *Model) LoRAGrads() *Model {
	g := &Model{Config: m.Config, Layers: make([]Layer, m.Config.NumHiddenLayers)}
	for _, a := range m.Adapters() {
		g.Weight(a.Name).LoRA = &LoRA{A: make([]float32, len(a.LoRA.A)), B: make([]float32, len(a.LoRA.B)), R: a.LoRA.R}
	}
	return g
}

// MergeLoRA merges every adapter into its weight.
func (m *Model) MergeLoRA() error {
	for l := range m.Layers {
		for _, p := range m.Layers[l].linears(&m.Config) {
			if err := p.w.Merge(p.out, p.in); err != nil {
				return fmt.Errorf("%s: %w", p.name(l), err)
			}
		}
	}
	return nil
}
