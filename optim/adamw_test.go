package optim

import (
	"math"
	"math/rand/v2"
	"runtime"
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

// TestLargeTensorsAnyWorkers checks the paths that split large tensors
// across the workers: the clipped norm against a float64 sum, and clipping
// and two AdamW steps giving the same bits on one worker and on four.
func TestLargeTensorsAnyWorkers(t *testing.T) {
	sizes := []int{3<<16 + 5, 100, 1 << 16}
	run := func(workers int) ([]Param, float64) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(workers))
		r := rand.New(rand.NewPCG(5, 6))
		var ps []Param
		for _, n := range sizes {
			p := Param{Data: make([]float32, n), Grad: make([]float32, n)}
			for j := range n {
				p.Data[j], p.Grad[j] = float32(r.NormFloat64()), float32(r.NormFloat64())
			}
			ps = append(ps, p)
		}
		o := NewAdamW(ps, []Group{{WeightDecay: 0.1}})
		norm := ClipGradNorm(ps, 1)
		o.Step(0.01)
		o.Step(0.01)
		return ps, norm
	}
	one, norm1 := run(1)
	four, norm4 := run(4)
	if norm1 != norm4 {
		t.Fatalf("norm %v on one worker, %v on four", norm1, norm4)
	}
	// The norm against float64 sums of the same gradients.
	r := rand.New(rand.NewPCG(5, 6))
	var ss float64
	for _, n := range sizes {
		for range n {
			r.NormFloat64()
			g := float64(float32(r.NormFloat64()))
			ss += g * g
		}
	}
	if want := math.Sqrt(ss); math.Abs(norm1-want) > 1e-12*want {
		t.Errorf("norm %v, float64 sum %v", norm1, want)
	}
	for i := range one {
		for j := range one[i].Data {
			if math.Float32bits(one[i].Data[j]) != math.Float32bits(four[i].Data[j]) || math.Float32bits(one[i].Grad[j]) != math.Float32bits(four[i].Grad[j]) {
				t.Fatalf("tensor %d [%d]: %v (grad %v) on one worker, %v (grad %v) on four", i, j, one[i].Data[j], one[i].Grad[j], four[i].Data[j], four[i].Grad[j])
			}
		}
	}
}
