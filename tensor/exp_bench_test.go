package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The kernels as they were before the vector exp (scalar math.Exp), to
// measure against.

func logSoftmaxRowsOld(logits []float32, targets []int32, rows, v int, logp []float32, grad func(r int, l []float32, sum float32)) float64 {
	losses := make([]float64, rows)
	Parallel(rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			l := logits[r*v : (r+1)*v]
			mx := l[0]
			for _, x := range l {
				mx = max(mx, x)
			}
			target := l[targets[r]]
			var sum float64
			if grad != nil {
				for i, x := range l {
					e := float32(math.Exp(float64(x - mx)))
					l[i] = e
					sum += float64(e)
				}
			} else {
				for _, x := range l {
					sum += float64(float32(math.Exp(float64(x - mx))))
				}
			}
			losses[r] = float64(mx) + math.Log(sum) - float64(target)
			if logp != nil {
				logp[r] = float32(-losses[r])
			}
			if grad != nil {
				grad(r, l, float32(sum))
			}
		}
	})
	var total float64
	for _, x := range losses {
		total += x
	}
	return total
}

func crossEntropySumOld(logits []float32, targets []int32, rows, v int, scale float32) float64 {
	return logSoftmaxRowsOld(logits, targets, rows, v, nil, func(r int, l []float32, sum float32) {
		inv := scale / sum
		for i := range l {
			l[i] *= inv
		}
		l[targets[r]] -= scale
	})
}

func siluOld(x float32) float32 { return x / (1 + float32(math.Exp(float64(-x)))) }

func swigluOld(h, g, u []float32) {
	Parallel(len(h), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			h[i] = siluOld(g[i]) * u[i]
		}
	})
}

func swigluBackOld(dg, du, dh, g, u []float32) {
	Parallel(len(dh), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			sg := 1 / (1 + float32(math.Exp(float64(-g[i]))))
			du[i] = dh[i] * g[i] * sg
			dg[i] = dh[i] * u[i] * sg * (1 + g[i]*(1-sg))
		}
	})
}

// TestOldAgrees checks the new kernels against the old ones on a
// vocabulary-wide row and an MLP-sized SwiGLU.
func TestOldAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	v := 32000
	logits := randn(rng, v)
	for i := range logits {
		logits[i] *= 3
	}
	targets := []int32{123}
	a, b := append([]float32(nil), logits...), append([]float32(nil), logits...)
	la := crossEntropySumOld(a, targets, 1, v, 0.5)
	lb, _ := CrossEntropySum(b, targets, 1, v, 2)
	if math.Abs(la-lb) > 1e-6*math.Abs(la) {
		t.Errorf("loss %v, before %v", lb, la)
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-6*math.Abs(float64(a[i]))+1e-12 {
			t.Fatalf("dlogits[%d] %v, before %v", i, b[i], a[i])
		}
	}
	n := 4099
	g, u, dh := randn(rng, n), randn(rng, n), randn(rng, n)
	h0, h1 := make([]float32, n), make([]float32, n)
	dg0, dg1, du0, du1 := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	swigluOld(h0, g, u)
	SwiGLU(h1, g, u)
	swigluBackOld(dg0, du0, dh, g, u)
	SwiGLUBackward(dg1, du1, dh, g, u)
	for i := range h0 {
		for _, c := range [][2]float32{{h0[i], h1[i]}, {dg0[i], dg1[i]}, {du0[i], du1[i]}} {
			if math.Abs(float64(c[0]-c[1])) > 1e-6*math.Abs(float64(c[0]))+1e-8 { // dg cancels near g = −1.28
				t.Fatalf("g=%v: %v, before %v", g[i], c[1], c[0])
			}
		}
	}
}

// BenchmarkLogSoftmaxRow is one 32000-wide row: the loss with its
// gradient (as CrossEntropySum, a copy of the row included) and the log
// probability alone (LogProbs).
func BenchmarkLogSoftmaxRow(b *testing.B) {
	rng := rand.New(rand.NewPCG(33, 34))
	v := 32000
	src := randn(rng, v)
	work := make([]float32, v)
	targets := []int32{5}
	logp := make([]float32, 1)
	b.Run("grad/old", func(b *testing.B) {
		for b.Loop() {
			copy(work, src)
			crossEntropySumOld(work, targets, 1, v, 1)
		}
	})
	b.Run("grad/new", func(b *testing.B) {
		for b.Loop() {
			copy(work, src)
			CrossEntropySum(work, targets, 1, v, 1)
		}
	})
	b.Run("logprobs/old", func(b *testing.B) {
		for b.Loop() {
			logSoftmaxRowsOld(src, targets, 1, v, logp, nil)
		}
	})
	b.Run("logprobs/new", func(b *testing.B) {
		for b.Loop() {
			LogProbs(logp, src, targets, 1, v)
		}
	})
}

// BenchmarkSwiGLU is the MLP activation of 2048 tokens × 768, forward
// and backward.
func BenchmarkSwiGLU(b *testing.B) {
	rng := rand.New(rand.NewPCG(35, 36))
	n := 2048 * 768
	g, u, dh := randn(rng, n), randn(rng, n), randn(rng, n)
	h, dg, du := make([]float32, n), make([]float32, n), make([]float32, n)
	b.Run("fwd/old", func(b *testing.B) {
		for b.Loop() {
			swigluOld(h, g, u)
		}
	})
	b.Run("fwd/new", func(b *testing.B) {
		for b.Loop() {
			SwiGLU(h, g, u)
		}
	})
	b.Run("bwd/old", func(b *testing.B) {
		for b.Loop() {
			swigluBackOld(dg, du, dh, g, u)
		}
	})
	b.Run("bwd/new", func(b *testing.B) {
		for b.Loop() {
			SwiGLUBackward(dg, du, dh, g, u)
		}
	})
}
