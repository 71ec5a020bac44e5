package tensor

import "math"

// AdamWStep holds the scalars of one AdamW step for a tensor, as float32,
// the precision the update is done in.
type AdamWStep struct {
	Decay         float32 // 1 − lr·weight_decay, applied to the weights first
	Beta1         float32
	OneMinusBeta1 float32
	Beta2         float32
	OneMinusBeta2 float32
	BC2Sqrt       float32 // √(1 − β₂ᵗ)
	Eps           float32
	StepSize      float32 // lr / (1 − β₁ᵗ)
}

// AdamW applies one step of AdamW (decoupled weight decay) to data given
// its gradient and moments m and v, updated in place, as
// torch.optim.AdamW does element by element:
//
//	data = data·decay; m = β₁m + (1−β₁)g; v = β₂v + (1−β₂)g·g
//	data −= stepSize·m / (√v / bc2Sqrt + eps)
//
// Elements are independent, so large tensors are split across the
// workers; the assembly kernel rounds each operation as the Go loop does
// (no fused multiply-adds), so the bits do not depend on either.
func AdamW(data, grad, m, v []float32, s AdamWStep) {
	grad, m, v = grad[:len(data)], m[:len(data)], v[:len(data)]
	f := func(lo, hi int) {
		n := adamwAsm(vexpImpl, data[lo:hi], grad[lo:hi], m[lo:hi], v[lo:hi], &s)
		adamwGo(data[lo+n:hi], grad[lo+n:hi], m[lo+n:hi], v[lo+n:hi], &s)
	}
	ParallelLarge(len(data), len(data), f)
}

func adamwGo(data, grad, m, v []float32, s *AdamWStep) {
	grad, m, v = grad[:len(data)], m[:len(data)], v[:len(data)]
	for j, g := range grad {
		d := data[j] * s.Decay
		mj := s.Beta1*m[j] + s.OneMinusBeta1*g
		vj := s.Beta2*v[j] + s.OneMinusBeta2*g*g
		m[j], v[j] = mj, vj
		denom := float32(math.Sqrt(float64(vj)))/s.BC2Sqrt + s.Eps
		data[j] = d - s.StepSize*mj/denom
	}
}
