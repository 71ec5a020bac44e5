package optim

import (
	"math"
	"testing"
)

func TestAdamWFirstStep(t *testing.T) {
	p := []float32{1, -2, 0.5}
	g := []float32{0.1, -0.3, 0}
	o := NewAdamW([]Param{{Name: "p", Data: p, Grad: g}}, []Group{{WeightDecay: 0.1}})
	o.Step(0.01)
	// Step 1: m̂ = g, v̂ = g², so the update is lr·g/(|g|+eps) after decay.
	want := []float64{1*(1-0.001) - 0.01, -2*(1-0.001) + 0.01, 0.5 * (1 - 0.001)}
	for i := range p {
		if math.Abs(float64(p[i])-want[i]) > 1e-6 {
			t.Errorf("p[%d] = %g, want %g", i, p[i], want[i])
		}
	}
}

func TestClipGradNorm(t *testing.T) {
	g := []Param{{Grad: []float32{3, 0}}, {Grad: []float32{4}}}
	if n := ClipGradNorm(g, 1); math.Abs(n-5) > 1e-9 {
		t.Errorf("norm %g", n)
	}
	if math.Abs(float64(g[0].Grad[0])-0.6) > 1e-5 || math.Abs(float64(g[1].Grad[0])-0.8) > 1e-5 {
		t.Errorf("clipped %v", g)
	}
	small := []Param{{Grad: []float32{0.1}}}
	ClipGradNorm(small, 1)
	if small[0].Grad[0] != 0.1 {
		t.Error("a small gradient was changed")
	}
}
