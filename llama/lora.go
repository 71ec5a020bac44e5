package llama

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"

	"zhllama/tensor"
)

// DefaultAdapter is the name of an adapter nobody named, as in PEFT.
const DefaultAdapter = "default"

// LoRA is a low-rank update of a frozen weight, as PEFT defines it:
// y = x·Wᵀ + Scale·(dropout(x)·Aᵀ)·Bᵀ, A [r × in], B [out × r]. It holds
// parameters only: what a pass keeps for its backward lives in the pass,
// so that several passes through the same adapter can be in flight.
type LoRA struct {
	Name    string
	A, B    []float32
	R       int
	Scale   float32
	Dropout float64
	// key tells this adapter's dropout masks from the others' in a pass.
	key uint64
}

// NewLoRA makes a rank-r adapter for a weight [out × in]: A from
// Kaiming-uniform (a = √5, PEFT's default, so U(±1/√in)), B zero.
func NewLoRA(out, in, r int, scale float32, dropout float64, rng *rand.Rand) *LoRA {
	l := &LoRA{Name: DefaultAdapter, A: make([]float32, r*in), B: make([]float32, out*r), R: r, Scale: scale, Dropout: dropout}
	bound := 1 / math.Sqrt(float64(in))
	for i := range l.A {
		l.A[i] = float32((2*rng.Float64() - 1) * bound)
	}
	return l
}

// adapterKey derives an adapter's dropout stream from where it sits.
func adapterKey(param, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(param + "\x00" + name))
	return h.Sum64()
}

// Pass is what one forward pass (and the backward that follows it)
// decides: which adapters apply, whether dropout is on, and where the
// adapters keep their activations.
type Pass struct {
	// Adapters selects the adapters that apply by name; nil applies all
	// of them, NoAdapters none (the reference model of DPO and PPO is the
	// policy with its adapters off).
	Adapters func(name string) bool
	// Dropout turns LoRA dropout on (training); Seed seeds its masks, so
	// the same seed draws the same masks.
	Dropout bool
	Seed    uint64

	lora map[*LoRA]*loraActs
}

// NoAdapters applies no adapter.
func NoAdapters(string) bool { return false }

// OnlyAdapters applies the named adapters.
func OnlyAdapters(names ...string) func(string) bool {
	return func(n string) bool { return slices.Contains(names, n) }
}

func (p *Pass) applies(l *LoRA) bool { return p.Adapters == nil || p.Adapters(l.Name) }

// loraActs are what an adapter's forward keeps for its backward, and the
// backward's scratch.
type loraActs struct {
	xd, xa   []float32 // the input after dropout [t × in] and x·Aᵀ [t × r]
	drop     []float32 // where xd lives with dropout (without, xd is the input itself)
	mask     []float32 // dropout's scale per input value: 0 or 1/(1−p)
	dxa, dxd []float32
}

func (p *Pass) acts(l *LoRA) *loraActs {
	if p.lora == nil {
		p.lora = map[*LoRA]*loraActs{}
	}
	la := p.lora[l]
	if la == nil {
		la = &loraActs{}
		p.lora[l] = la
	}
	return la
}

func (p *Pass) dropout(l *LoRA) bool { return p.Dropout && l.Dropout > 0 }

// forward adds the low-rank term to y [t × out] for x [t × in].
func (l *LoRA) forward(p *Pass, y, x []float32, t, in, out int) {
	la := p.acts(l)
	la.xd = x
	if p.dropout(l) {
		// Never into the input's buffer, which other projections still read.
		la.xd = grow(&la.drop, t*in)
		tensor.Dropout(la.xd, grow(&la.mask, t*in), x, l.Dropout, rand.New(rand.NewPCG(p.Seed^l.key, uint64(t))))
	}
	grow(&la.xa, t*l.R)
	tensor.Linear(la.xa, la.xd, l.A, t, in, l.R)
	tensor.Gemm(false, true, t, out, l.R, l.Scale, la.xa, l.R, l.B, l.R, 1, y, out)
}

// backward adds the low-rank term's gradients: to dx, and to g's A and B.
func (l *LoRA) backward(p *Pass, dx []float32, g *LoRA, dy []float32, t, in, out int) {
	la := p.acts(l)
	dxa := grow(&la.dxa, t*l.R)
	// dxa = Scale · dy · B ; dB += Scale · dyᵀ · xa ; dA += dxaᵀ · xd.
	tensor.Gemm(false, false, t, l.R, out, l.Scale, dy, out, l.B, l.R, 0, dxa, l.R)
	if g != nil {
		tensor.Gemm(true, false, out, l.R, t, l.Scale, dy, out, la.xa, l.R, 1, g.B, l.R)
		tensor.Gemm(true, false, l.R, in, t, 1, dxa, l.R, la.xd, in, 1, g.A, in)
	}
	if dx == nil {
		return
	}
	if p.dropout(l) {
		dxd := grow(&la.dxd, t*in)
		tensor.Gemm(false, false, t, in, l.R, 1, dxa, l.R, l.A, in, 0, dxd, in)
		for i, v := range dxd {
			dx[i] += v * la.mask[i]
		}
		return
	}
	tensor.Gemm(false, false, t, in, l.R, 1, dxa, l.R, l.A, in, 1, dx, in)
}

// Attach puts l on the projection called param (a LoRA target), as the
// adapter l.Name.
func (m *Model) Attach(param string, l *LoRA) error {
	r, err := m.Tensor(param)
	if err != nil {
		return err
	}
	if !r.LoRA {
		return fmt.Errorf("%s is not a projection an adapter can sit on", param)
	}
	out, in := r.Shape[0], r.Shape[1]
	if l.R < 1 || len(l.A) != l.R*in || len(l.B) != out*l.R {
		return fmt.Errorf("%s: an adapter of rank %d needs A [%d × %d] and B [%d × %d], got %d and %d values", param, l.R, l.R, in, out, l.R, len(l.A), len(l.B))
	}
	l.key = adapterKey(param, l.Name)
	r.Weight.Attach(l)
	return nil
}

// Adapter is one LoRA module of a model.
type Adapter struct {
	Name   string // the projection's checkpoint name, e.g. model.layers.0.self_attn.q_proj.weight
	Module string // its module name, e.g. q_proj
	LoRA   *LoRA
	Out    int
	In     int
}

// AddLoRA puts a rank-r adapter called name on every projection whose
// module (one of LoRAModules) is in targets, and returns them in order.
func (m *Model) AddLoRA(name string, targets []string, r int, scale float32, dropout float64, seed uint64) []Adapter {
	rng := rand.New(rand.NewPCG(seed, 0x10ea))
	var out []Adapter
	for _, ref := range m.Refs() {
		if !ref.LoRA || !slices.Contains(targets, ref.Module) {
			continue
		}
		l := NewLoRA(ref.Shape[0], ref.Shape[1], r, scale, dropout, rng)
		l.Name, l.key = name, adapterKey(ref.Name, name)
		ref.Weight.Attach(l)
		out = append(out, Adapter{ref.Name, ref.Module, l, ref.Shape[0], ref.Shape[1]})
	}
	return out
}

// Adapters lists the model's LoRA modules called name (all of them when
// name is "").
func (m *Model) Adapters(name string) []Adapter {
	var out []Adapter
	for _, ref := range m.Refs() {
		if ref.Weight == nil {
			continue
		}
		for _, l := range ref.Weight.Adapters {
			if name == "" || l.Name == name {
				out = append(out, Adapter{ref.Name, ref.Module, l, ref.Shape[0], ref.Shape[1]})
			}
		}
	}
	return out
}

// LoRAGrads is a gradient holder for m's adapters: zeroed A and B for each,
// under the same names, nothing else allocated (the base is frozen).
func (m *Model) LoRAGrads() *Model {
	g := &Model{Config: m.Config, Layers: make([]Layer, m.Config.NumHiddenLayers)}
	for _, a := range m.Adapters("") {
		ref, _ := g.Tensor(a.Name)
		ref.Weight.Attach(&LoRA{Name: a.LoRA.Name, A: make([]float32, len(a.LoRA.A)), B: make([]float32, len(a.LoRA.B)), R: a.LoRA.R})
	}
	return g
}

// MergeLoRA merges every adapter into its weight.
func (m *Model) MergeLoRA() error {
	for _, ref := range m.Refs() {
		if ref.Weight == nil {
			continue
		}
		if err := ref.Weight.Merge(ref.Shape[0], ref.Shape[1]); err != nil {
			return fmt.Errorf("%s: %w", ref.Name, err)
		}
	}
	return nil
}
