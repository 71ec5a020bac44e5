package tensor

import (
	"math"
	"math/rand/v2"
)

// RMSNorm: y = x / sqrt(mean(x²) + eps) · w, per row of length d. rstd
// keeps 1/sqrt(mean(x²)+eps) of each row for the backward pass.
func RMSNorm(y, rstd, x, w []float32, rows, d int, eps float32) {
	Parallel(rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := x[r*d : (r+1)*d]
			s := float32(1 / math.Sqrt(sumSquares(xr)/float64(d)+float64(eps)))
			rstd[r] = s
			normRow(y[r*d:(r+1)*d], xr, w, s)
		}
	})
}

// sumSquares is Σ x² in float64; an AVX-512 kernel replaces it where the
// CPU has one (the same sum in another order).
var sumSquares = func(x []float32) float64 { return dotWide(x, x) }

// normRow sets y = x·s·w (x·s rounded first); an AVX-512 kernel with the
// same roundings replaces it where the CPU has one.
var normRow = normRowGo

func normRowGo(y, x, w []float32, s float32) {
	y, w = y[:len(x)], w[:len(x)]
	for i, v := range x {
		y[i] = v * s * w[i]
	}
}

// dotWide is Σ a·b in float64, as four running sums added at the end: one
// sum waits four cycles for each addition, and a norm's rows are short
// enough (288 values in stories15M) that the wait was most of its time.
func dotWide(a, b []float32) float64 {
	b = b[:len(a)]
	var p [4]float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		p[0] += float64(a[i]) * float64(b[i])
		p[1] += float64(a[i+1]) * float64(b[i+1])
		p[2] += float64(a[i+2]) * float64(b[i+2])
		p[3] += float64(a[i+3]) * float64(b[i+3])
	}
	for ; i < len(a); i++ {
		p[0] += float64(a[i]) * float64(b[i])
	}
	return (p[0] + p[1]) + (p[2] + p[3])
}

// RMSNormBackward adds to dx and dw (unless nil) the gradients of RMSNorm
// given dy.
// dw is reduced in row order on one goroutine, so it is deterministic.
func RMSNormBackward(dx, dw, dy, x, w, rstd []float32, rows, d int) {
	Parallel(rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, dyr, dxr := x[r*d:(r+1)*d], dy[r*d:(r+1)*d], dx[r*d:(r+1)*d]
			s := rstd[r]
			var p [4]float64 // Σ dy·w·x, four running sums (see dotWide)
			i := 0
			for ; i+4 <= len(xr); i += 4 {
				p[0] += float64(dyr[i]) * float64(w[i]) * float64(xr[i])
				p[1] += float64(dyr[i+1]) * float64(w[i+1]) * float64(xr[i+1])
				p[2] += float64(dyr[i+2]) * float64(w[i+2]) * float64(xr[i+2])
				p[3] += float64(dyr[i+3]) * float64(w[i+3]) * float64(xr[i+3])
			}
			for ; i < len(xr); i++ {
				p[0] += float64(dyr[i]) * float64(w[i]) * float64(xr[i])
			}
			dot := (p[0] + p[1]) + (p[2] + p[3])
			c := float32(dot/float64(d)) * s * s * s
			for i := range xr {
				dxr[i] += dyr[i]*w[i]*s - xr[i]*c
			}
		}
	})
	if dw == nil {
		return // a frozen norm
	}
	for r := 0; r < rows; r++ {
		xr, dyr := x[r*d:(r+1)*d], dy[r*d:(r+1)*d]
		s := rstd[r]
		for i := range xr {
			dw[i] += dyr[i] * xr[i] * s
		}
	}
}

// RopeTables returns cos and sin, [positions × headDim/2], for rotary
// embeddings with base theta. scaling is "" , "linear" or "dynamic" with
// factor; dynamic NTK scaling grows the base once seqLen passes maxPos,
// as transformers does.
func RopeTables(positions, headDim int, theta float64, scaling string, factor float64, maxPos, seqLen int) (cos, sin []float32) {
	half := headDim / 2
	base := theta
	if scaling == "dynamic" && seqLen > maxPos {
		base = theta * math.Pow(factor*float64(seqLen)/float64(maxPos)-(factor-1), float64(headDim)/float64(headDim-2))
	}
	cos, sin = make([]float32, positions*half), make([]float32, positions*half)
	for i := 0; i < half; i++ {
		// transformers computes inv_freq in float32.
		invFreq := float32(1 / math.Pow(base, float64(2*i)/float64(headDim)))
		for p := 0; p < positions; p++ {
			t := float32(p)
			if scaling == "linear" {
				t /= float32(factor)
			}
			a := float64(t * invFreq)
			cos[p*half+i], sin[p*half+i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
	}
	return cos, sin
}

// Rope rotates x [T × heads × headDim] in place, rotate-half style:
// x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin for the two halves.
// pos gives each row's position.
func Rope(x []float32, pos []int, heads, headDim int, cos, sin []float32) {
	rope(x, pos, heads, headDim, cos, sin, 1)
}

// RopeBackward turns the gradient of the rotated x into the gradient of x
// in place (the inverse rotation).
func RopeBackward(dx []float32, pos []int, heads, headDim int, cos, sin []float32) {
	rope(dx, pos, heads, headDim, cos, sin, -1)
}

func rope(x []float32, pos []int, heads, headDim int, cos, sin []float32, dir float32) {
	half := headDim / 2
	if half == 0 {
		return
	}
	Parallel(len(pos), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			c, s := cos[pos[t]*half:(pos[t]+1)*half], sin[pos[t]*half:(pos[t]+1)*half]
			ropeHeads(x[t*heads*headDim:(t+1)*heads*headDim], heads, half, c, s, dir)
		}
	})
}

// ropeHeads rotates heads vectors of 2·half values (one after another in
// v) by the angles of c and s; an AVX-512 kernel with the same roundings
// replaces it where the CPU has one.
var ropeHeads = ropeHeadsGo

func ropeHeadsGo(v []float32, heads, half int, c, s []float32, dir float32) {
	for h := range heads {
		r := v[2*h*half : 2*(h+1)*half]
		for i := 0; i < half; i++ {
			x1, x2 := r[i], r[i+half]
			r[i] = x1*c[i] - dir*x2*s[i]
			r[i+half] = x2*c[i] + dir*x1*s[i]
		}
	}
}

// SwiGLU: h = silu(g) · u elementwise, silu(g) = g/(1+exp(−g)) (exp.go).
func SwiGLU(h, g, u []float32) {
	Parallel(len(h), func(lo, hi int) {
		swiglu(h[lo:hi], g[lo:hi], u[lo:hi])
	})
}

// SwiGLUBackward sets dg and du from dh.
func SwiGLUBackward(dg, du, dh, g, u []float32) {
	Parallel(len(dh), func(lo, hi int) {
		swigluBack(dg[lo:hi], du[lo:hi], dh[lo:hi], g[lo:hi], u[lo:hi])
	})
}

// Embedding copies rows of table [V × d] for ids into out.
func Embedding(out, table []float32, ids []int32, d int) {
	for t, id := range ids {
		copy(out[t*d:(t+1)*d], table[int(id)*d:(int(id)+1)*d])
	}
}

// EmbeddingBackward adds each row of dout to the gradient row of its id,
// in token order.
func EmbeddingBackward(dtable, dout []float32, ids []int32, d int) {
	for t, id := range ids {
		row := dtable[int(id)*d : (int(id)+1)*d]
		for i, v := range dout[t*d : (t+1)*d] {
			row[i] += v
		}
	}
}

// IgnoreIndex marks targets that do not count in the loss.
const IgnoreIndex = -100

// CrossEntropy computes the mean negative log-likelihood of targets under
// softmax(logits) over the rows whose target is not IgnoreIndex, and
// overwrites logits with the gradient of the summed loss divided by denom
// (softmax − one-hot, over denom), or by the count when denom is 0: with
// gradient accumulation the mean runs over every micro-batch's tokens.
// It returns the mean loss and the number of counted rows.
func CrossEntropy(logits []float32, targets []int32, rows, v, denom int) (float64, int) {
	if denom <= 0 {
		denom = CountTargets(targets[:rows])
	}
	sum, n := CrossEntropySum(logits, targets, rows, v, denom)
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}

// CrossEntropySum is CrossEntropy returning the summed loss, for a mean
// taken over several calls (chunks of rows, micro-batches): the gradient
// is divided by denom, which must count the tokens of them all.
func CrossEntropySum(logits []float32, targets []int32, rows, v, denom int) (float64, int) {
	scale := float32(0)
	if denom > 0 {
		scale = 1 / float32(denom)
	}
	return logSoftmaxRows(logits, targets, rows, v, nil, func(r int, l []float32, sum float32) {
		scal(l, scale/sum)
		l[targets[r]] -= scale
	})
}

// SoftmaxWeights sets dst[i] = exp(scale·x[i] − max_j scale·x[j]), the
// softmax of the scaled row before normalising, and returns their sum (in
// float64): a sampler's weights at temperature 1/scale.
func SoftmaxWeights(dst, x []float32, scale float32) float64 {
	x = x[:len(dst)]
	for i, v := range x {
		dst[i] = v * scale
	}
	return expSub(dst, dst, rowMax(dst))
}

// CountTargets counts the targets that are not IgnoreIndex.
func CountTargets(targets []int32) int {
	n := 0
	for _, t := range targets {
		if t != IgnoreIndex {
			n++
		}
	}
	return n
}

// LogProbs writes to dst[r] the log-probability of targets[r] under
// softmax(logits[r]), 0 where the target is IgnoreIndex; logits are left
// as they were. It returns the number of counted rows.
func LogProbs(dst, logits []float32, targets []int32, rows, v int) int {
	_, n := logSoftmaxRows(logits, targets, rows, v, dst, nil)
	return n
}

// LogProbsBackward overwrites logits with the gradient of Σ dlogp[r] ·
// log p(targets[r]): dlogp[r] · (one-hot − softmax), zero where the target
// is IgnoreIndex.
func LogProbsBackward(logits []float32, targets []int32, dlogp []float32, rows, v int) {
	logSoftmaxRows(logits, targets, rows, v, nil, func(r int, l []float32, sum float32) {
		g := dlogp[r]
		scal(l, -g/sum)
		l[targets[r]] += g
	})
}

// logSoftmaxRows computes, for each row with a target, −log softmax at the
// target (returned summed, and as log-probabilities in logp if not nil).
// With grad set, the row is overwritten by exp(x − max) and grad turns it
// into a gradient, given Σexp; rows without a target are cleared. Σexp is
// summed in float64 (expSub) and its log taken in float64.
func logSoftmaxRows(logits []float32, targets []int32, rows, v int, logp []float32, grad func(r int, l []float32, sum float32)) (float64, int) {
	count := CountTargets(targets[:rows])
	losses := make([]float64, rows)
	Parallel(rows, func(lo, hi int) {
		var scratch *[]float32 // where exp goes when the logits stay
		if grad == nil {
			scratch = getBuf(v)
			defer putBuf(scratch)
		}
		for r := lo; r < hi; r++ {
			l := logits[r*v : (r+1)*v]
			if targets[r] == IgnoreIndex {
				if grad != nil {
					clear(l)
				}
				if logp != nil {
					logp[r] = 0
				}
				continue
			}
			mx := rowMax(l)
			target := l[targets[r]]
			var sum float64
			if grad != nil {
				sum = expSub(l, l, mx)
			} else {
				sum = expSub(*scratch, l, mx)
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
	return total, count
}

// Add adds x to y elementwise: the residual connections.
func Add(y, x []float32) { addRow(y, x) }

// addRow is Add; an AVX-512 kernel replaces it where the CPU has one.
var addRow = addRowGo

func addRowGo(y, x []float32) {
	for i, v := range x[:len(y)] {
		y[i] += v
	}
}

// Dropout writes x with each value dropped (zeroed) with probability p and
// the rest scaled by 1/(1−p) to out, and the factor of each (0 or
// 1/(1−p)) to mask for the backward pass, drawing from rng in order.
func Dropout(out, mask, x []float32, p float64, rng *rand.Rand) {
	keep := float32(1 / (1 - p))
	for i, v := range x {
		mask[i] = 0
		if rng.Float64() >= p {
			mask[i] = keep
		}
		out[i] = v * mask[i]
	}
}
