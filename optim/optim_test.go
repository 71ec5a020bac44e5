package optim

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func params() ([]Param, []Group) {
	ps := []Param{
		{Name: "w", Data: []float32{1, -2, 3}, Grad: []float32{0.5, 0.25, -1}},
		{Name: "norm", Data: []float32{1, 1}, Grad: []float32{-0.5, 2}, Group: 1},
	}
	return ps, []Group{{Name: "decay", WeightDecay: 0.1}, {Name: "no_decay"}}
}

// One AdamW step against its formula in float64; the no-decay group keeps
// its weights undecayed.
func TestAdamWStep(t *testing.T) {
	ps, gs := params()
	o := NewAdamW(ps, gs)
	before := [][]float32{append([]float32(nil), ps[0].Data...), append([]float32(nil), ps[1].Data...)}
	o.Step(0.01)
	for i, p := range ps {
		for j := range p.Data {
			w, g := float64(before[i][j]), float64(p.Grad[j])
			w *= 1 - 0.01*gs[p.Group].WeightDecay
			m, v := 0.1*g/0.1, 0.001*g*g/0.001 // bias-corrected first step
			want := w - 0.01*m/(math.Sqrt(v)+1e-8)
			if math.Abs(float64(p.Data[j])-want) > 1e-6 {
				t.Errorf("%s[%d] = %g, want %g", p.Name, j, p.Data[j], want)
			}
		}
	}
}

// State saved by name loads back by name; state saved by number (the old
// checkpoint layout) loads by position; a mismatch names the tensor.
func TestLoadState(t *testing.T) {
	ps, gs := params()
	a := NewAdamW(ps, gs)
	a.Step(0.1)
	saved := a.State()
	get := func(st map[string][]float32) func(string) ([]float32, error) {
		return func(n string) ([]float32, error) {
			v, ok := st[n]
			if !ok {
				return nil, fmt.Errorf("no %s", n)
			}
			return v, nil
		}
	}
	names := func(st map[string][]float32) []string { return sortedKeys(st) }
	b := NewAdamW(ps, gs)
	if err := LoadState(b, ps, names(saved), get(saved)); err != nil {
		t.Fatal(err)
	}
	if b.m[1][1] != a.m[1][1] || b.v[0][2] != a.v[0][2] {
		t.Error("state by name did not load")
	}
	numbered := map[string][]float32{"exp_avg.0": saved["exp_avg.w"], "exp_avg_sq.0": saved["exp_avg_sq.w"],
		"exp_avg.1": saved["exp_avg.norm"], "exp_avg_sq.1": saved["exp_avg_sq.norm"]}
	c := NewAdamW(ps, gs)
	if err := LoadState(c, ps, names(numbered), get(numbered)); err != nil || c.v[1][0] != a.v[1][0] {
		t.Errorf("numbered state: %v", err)
	}
	numbered["exp_avg.0"] = []float32{1}
	if err := LoadState(NewAdamW(ps, gs), ps, names(numbered), get(numbered)); err == nil || !strings.Contains(err.Error(), "exp_avg.0") {
		t.Errorf("wrong size: %v", err)
	}
	renamed := map[string][]float32{"exp_avg.w": saved["exp_avg.w"], "exp_avg_sq.w": saved["exp_avg_sq.w"]}
	if err := LoadState(NewAdamW(ps, gs), ps, names(renamed), get(renamed)); err == nil || !strings.Contains(err.Error(), "exp_avg.norm") {
		t.Errorf("fewer tensors: %v", err)
	}
	if err := LoadState(NewAdamW(ps[:1], gs), ps[:1], names(saved), get(saved)); err == nil || !strings.Contains(err.Error(), "exp_avg.norm") {
		t.Errorf("more tensors: %v", err)
	}
}

func TestClipAndSchedule(t *testing.T) {
	ps, _ := params()
	norm := ClipGradNorm(ps, 1)
	if math.Abs(norm-math.Sqrt(0.25+0.0625+1+0.25+4)) > 1e-9 {
		t.Errorf("norm %g", norm)
	}
	if after := ClipGradNorm(ps, math.Inf(1)); math.Abs(after-1) > 1e-5 {
		t.Errorf("after clipping %g", after)
	}
	if LR("cosine", 1, 0, 2, 10) != 0 || LR("linear", 1, 6, 2, 10) != 0.5 || LR("cosine", 1, 6, 2, 10) != 0.5000000000000001 && math.Abs(LR("cosine", 1, 6, 2, 10)-0.5) > 1e-12 {
		t.Error("schedule")
	}
}
