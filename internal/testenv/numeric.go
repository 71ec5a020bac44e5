package testenv

import (
	"math"
	"testing"
)

// Float is a slice element the numeric helpers compare.
type Float interface{ ~float32 | ~float64 }

// MaxRelDiff returns the largest |got[i]−want[i]| / max(|want[i]|, floor)
// and its index (-1 for empty slices). The floor keeps entries near zero
// from counting as large relative errors. A NaN on either side is the
// worst difference, +Inf.
func MaxRelDiff[F Float](got, want []F, floor float64) (float64, int) {
	worst, at := 0.0, -1
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		d := 0.0
		if g != w {
			d = math.Abs(g-w) / math.Max(math.Abs(w), floor)
		}
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		if at < 0 || d > worst {
			worst, at = d, i
		}
	}
	return worst, at
}

// ScaledDiff is max|got[i]−want[i]| / max|want|: the worst difference on
// the scale of the whole tensor, for values (logits, gradients) whose
// near-zero entries carry no meaning of their own.
func ScaledDiff[F Float](got, want []F) float64 {
	var d, m float64
	for i := range want {
		d = math.Max(d, math.Abs(float64(got[i]-want[i])))
		m = math.Max(m, math.Abs(float64(want[i])))
	}
	return d / math.Max(m, 1e-30)
}

// AssertClose fails t when got and want differ in length or when
// MaxRelDiff(got, want, floor) exceeds tol, naming the worst entry.
func AssertClose[F Float](t testing.TB, name string, got, want []F, tol, floor float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
		return
	}
	if d, i := MaxRelDiff(got, want, floor); d > tol {
		t.Fatalf("%s[%d] = %g, want %g (relative difference %.3g > %g)", name, i, got[i], want[i], d, tol)
	}
}

// NumericGrad estimates the gradient of f with respect to x at the
// indices in at by central differences, (f(x+h·eᵢ) − f(x−h·eᵢ)) / 2h,
// restoring each x[i] after its probes. f reads x.
func NumericGrad(f func() float64, x []float32, at []int, h float64) []float64 {
	g := make([]float64, len(at))
	for n, i := range at {
		orig := x[i]
		x[i] = orig + float32(h)
		plus := f()
		x[i] = orig - float32(h)
		minus := f()
		x[i] = orig
		g[n] = (plus - minus) / (2 * h)
	}
	return g
}
