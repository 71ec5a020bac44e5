package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAdamW checks the AdamW update against its formula in float64, and
// every implementation this CPU runs against the Go loop bit for bit (the
// kernel rounds each operation as Go does, which holds while Go does not
// fuse multiply-adds: GOAMD64 below v3), over a tensor large enough to be
// split across the workers, with a tail and zero gradients.
func TestAdamW(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	n := 1<<15 + 13
	data, grad, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range n {
		data[i] = float32(rng.NormFloat64())
		if i%17 != 0 {
			grad[i] = float32(rng.NormFloat64() * 1e-3)
		}
		m[i] = float32(rng.NormFloat64() * 1e-3)
		v[i] = float32(rng.Float64() * 1e-6)
	}
	b1, b2, lr, wd, eps, step := 0.9, 0.999, 1e-3, 0.1, 1e-8, 3.0
	s := AdamWStep{
		Decay: float32(1 - lr*wd), Beta1: float32(b1), OneMinusBeta1: 1 - float32(b1), Beta2: float32(b2), OneMinusBeta2: 1 - float32(b2),
		BC2Sqrt: float32(math.Sqrt(1 - math.Pow(b2, step))), Eps: float32(eps), StepSize: float32(lr / (1 - math.Pow(b1, step))),
	}
	copies := func() ([]float32, []float32, []float32) {
		return append([]float32(nil), data...), append([]float32(nil), m...), append([]float32(nil), v...)
	}
	wd0, wm0, wv0 := copies()
	adamwGo(wd0, grad, wm0, wv0, &s)
	for i := range n {
		g := float64(grad[i])
		mm := b1*float64(m[i]) + (1-b1)*g
		vv := b2*float64(v[i]) + (1-b2)*g*g
		want := float64(data[i])*(1-lr*wd) - lr/(1-math.Pow(b1, step))*mm/(math.Sqrt(vv)/math.Sqrt(1-math.Pow(b2, step))+eps)
		if d := math.Abs(float64(wd0[i]) - want); d > 1e-6*math.Max(1, math.Abs(want)) {
			t.Fatalf("data[%d] = %v, float64 formula %v", i, wd0[i], want)
		}
	}
	saved := vexpImpl
	defer func() { vexpImpl = saved }()
	for _, impl := range vexpImpls {
		vexpImpl = impl
		gd, gm, gv := copies()
		AdamW(gd, grad, gm, gv, s)
		for i := range n {
			if math.Float32bits(gd[i]) != math.Float32bits(wd0[i]) || math.Float32bits(gm[i]) != math.Float32bits(wm0[i]) || math.Float32bits(gv[i]) != math.Float32bits(wv0[i]) {
				t.Fatalf("%s: element %d: data, m, v = %v %v %v, Go loop %v %v %v", implNames[impl], i, gd[i], gm[i], gv[i], wd0[i], wm0[i], wv0[i])
			}
		}
	}
}
