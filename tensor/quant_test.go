package tensor

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"zhllama/internal/testenv"
)

// The NF4 table is QLoRA's construction: normal quantiles at offset
// 0.9677083 (8 positive, 7 negative, and 0), scaled to [-1, 1].
func TestNF4CodeIsNormalQuantiles(t *testing.T) {
	ppf := func(p float64) float64 { return math.Sqrt2 * math.Erfinv(2*p-1) }
	const offset = 0.9677083
	var v []float64
	lin := func(n int) []float64 { // linspace(offset, 0.5, n)
		out := make([]float64, n)
		for i := range out {
			out[i] = float64(float32(offset + (0.5-offset)*float64(i)/float64(n-1)))
		}
		return out
	}
	for _, p := range lin(9)[:8] {
		v = append(v, ppf(p))
	}
	v = append(v, 0)
	for _, p := range lin(8)[:7] {
		v = append(v, -ppf(p))
	}
	mx := 0.0
	for _, x := range v {
		mx = math.Max(mx, x)
	}
	want := map[float32]bool{}
	for _, x := range v {
		want[float32(x/mx)] = true
	}
	for _, c := range NF4Code {
		found := false
		for w := range want {
			if math.Abs(float64(w-c)) < 2e-6 {
				found = true
			}
		}
		if !found {
			t.Errorf("NF4 value %g is not a normal quantile of the construction", c)
		}
	}
	if math.Abs(float64(DynamicCode[0])+0.99296875) > 1e-7 || DynamicCode[255] != 1 || DynamicCode[127] != 0 || DynamicCode[128] <= 0 {
		t.Errorf("dynamic map ends %g %g, middle %g %g", DynamicCode[0], DynamicCode[255], DynamicCode[127], DynamicCode[128])
	}
}

// Every value quantizes to its block's nearest NF4 value, the block scale
// goes through double quantization, and Widen gives code·scale.
func TestNF4Quantization(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	rows, cols := 37, 100 // blocks straddle rows; a short last block
	w := randn(rng, rows*cols)
	for i := 0; i < 64; i++ {
		w[640+i] = 0 // an all-zero block
	}
	q := QuantizeNF4(w, rows, cols)
	n := rows * cols
	nb := (n + 63) / 64
	var sum float64
	absmax := make([]float32, nb)
	for b := range absmax {
		for _, v := range w[b*64 : min((b+1)*64, n)] {
			absmax[b] = max(absmax[b], float32(math.Abs(float64(v))))
		}
		sum += float64(absmax[b])
	}
	if q.Offset != float32(sum/float64(nb)) {
		t.Errorf("offset %g, want the mean %g", q.Offset, sum/float64(nb))
	}
	got := make([]float32, cols)
	for r := 0; r < rows; r++ {
		q.Widen(got[:cols-3], r, 3)
		for c := 3; c < cols; c++ {
			i := r*cols + c
			b := i / 64
			// Brute force: the nearest code to w/absmax, ties to the lower.
			best := 0
			for k := range NF4Code {
				if absmax[b] > 0 && math.Abs(float64(NF4Code[k]-w[i]/absmax[b])) < math.Abs(float64(NF4Code[best]-w[i]/absmax[b])) {
					best = k
				}
			}
			if absmax[b] == 0 {
				best = 7
			}
			want := NF4Code[best] * q.absmax(b)
			if got[c-3] != want {
				t.Fatalf("[%d,%d]: %g, want code %d × %g = %g", r, c, got[c-3], best, q.absmax(b), want)
			}
		}
	}
	// Double quantization keeps the block scales close.
	for b, m := range absmax {
		if d := math.Abs(float64(q.absmax(b) - m)); d > 0.02*float64(q.Absmax2[b/256])+1e-6 {
			t.Errorf("block %d scale %g, true %g", b, q.absmax(b), m)
		}
	}
	if bits := float64(q.Bytes()*8) / float64(n); bits > 4.2 {
		t.Errorf("%.2f bits a value", bits)
	}
}

func TestInt8AndQuantizedLinear(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	in, out := 96, 40
	w := randn(rng, out*in)
	for _, bits := range []int{4, 8} {
		q, err := Quantize(w, out, in, bits)
		if err != nil {
			t.Fatal(err)
		}
		wide := make([]float32, out*in)
		for r := 0; r < out; r++ {
			q.Widen(wide[r*in:(r+1)*in], r, 0)
		}
		var e2, w2 float64
		for i := range w {
			e2 += math.Pow(float64(wide[i]-w[i]), 2)
			w2 += float64(w[i]) * float64(w[i])
		}
		if rel := math.Sqrt(e2 / w2); (bits == 8 && rel > 0.01) || rel > 0.12 {
			t.Errorf("%d bits: relative error %g", bits, rel)
		}
		for _, rows := range []int{2, 20} {
			x := randn(rng, rows*in)
			got, want := make([]float32, rows*out), make([]float32, rows*out)
			LinearMatrix(got, x, q, rows, in, out)
			Linear(want, x, wide, rows, in, out)
			testenv.AssertClose(t, "quantized linear", got, want, 1e-4, 1)
		}
	}
	if _, err := Quantize(w, out, in, 3); err == nil {
		t.Error("3 bits accepted")
	}
}

func BenchmarkNF4Widen(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 3))
	w := randn(rng, 1024*4096)
	q := QuantizeNF4(w, 1024, 4096)
	dst := make([]float32, 4096)
	b.SetBytes(4096 * 1024)
	for i := 0; i < b.N; i++ {
		for r := 0; r < 1024; r++ {
			q.Widen(dst, r, 0)
		}
	}
}

// TestNF4WidenKernel checks that Widen gives the same values, bit for bit,
// with and without the whole-block kernel, over spans that start and end
// on and off block boundaries and cross rows' blocks.
func TestNF4WidenKernel(t *testing.T) {
	if widenNF4 == nil {
		t.Skip("no NF4 widening kernel on this CPU")
	}
	rng := rand.New(rand.NewPCG(23, 24))
	rows, cols := 3, 1000
	q := QuantizeNF4(randn(rng, rows*cols), rows, cols)
	kern := widenNF4
	defer func() { widenNF4 = kern }()
	for _, s := range [][3]int{{0, 0, 1000}, {1, 0, 1000}, {2, 24, 976}, {1, 64, 128}, {0, 3, 200}, {2, 1, 63}, {1, 128, 1}} {
		got, want := make([]float32, s[2]), make([]float32, s[2])
		widenNF4 = kern
		q.Widen(got, s[0], s[1])
		widenNF4 = nil
		q.Widen(want, s[0], s[1])
		testenv.AssertClose(t, fmt.Sprintf("Widen row %d from %d", s[0], s[1]), got, want, 0, 1)
	}
}

// TestNF4WidenT checks widenT, the transposed widening of 16 rows at once,
// against the portable Widen row by row, bit for bit (a zero block among them), over
// spans of one block, of more blocks than a kernel call takes
// and starting past column 0, writing nothing but its 16 columns; and
// that it declines spans off block boundaries and rows past the matrix.
func TestNF4WidenT(t *testing.T) {
	if widenNF4T == nil {
		t.Skip("no transposed NF4 widening kernel on this CPU")
	}
	rng := rand.New(rand.NewPCG(31, 32))
	rows, cols := 40, 21*nf4Block
	w := randn(rng, rows*cols)
	clear(w[9*cols+128 : 9*cols+192])
	q := QuantizeNF4(w, rows, cols)
	const stride = 37
	for _, s := range [][3]int{{0, 0, cols}, {7, 64, 64}, {24, 192, 17 * nf4Block}, {3, 0, 2 * nf4Block}} {
		r0, c0, n := s[0], s[1], s[2]
		dst := make([]float32, n*stride)
		for i := range dst {
			dst[i] = -7
		}
		if !q.widenT(dst, stride, r0, c0, n) {
			t.Fatalf("rows %d.., columns %d+%d: declined", r0, c0, n)
		}
		row := make([]float32, n)
		for j := range stride {
			if j < 16 {
				kern := widenNF4
				widenNF4 = nil // the portable Widen, each scale from absmax
				q.Widen(row, r0+j, c0)
				widenNF4 = kern
			}
			for k := range n {
				want := float32(-7)
				if j < 16 {
					want = row[k]
				}
				if got := dst[k*stride+j]; math.Float32bits(got) != math.Float32bits(want) {
					t.Fatalf("rows %d.., columns %d+%d: row %d value %d = %v, want %v", r0, c0, n, r0+j, k, got, want)
				}
			}
		}
	}
	dst := make([]float32, cols*16)
	for _, s := range [][3]int{{0, 32, 64}, {0, 0, 100}, {25, 0, 64}} {
		if q.widenT(dst, 16, s[0], s[1], s[2]) {
			t.Errorf("rows %d.., columns %d+%d: taken, want declined", s[0], s[1], s[2])
		}
	}
}

// nearest is the index of the code value nearest to x (code sorted; a
// tie goes to the lower value), by sort.Search: the reference for
// nearestNF4 and nearestDynamic.
func nearest(code []float32, x float32) int {
	i := sort.Search(len(code), func(i int) bool { return code[i] >= x })
	switch {
	case i == 0:
		return 0
	case i == len(code):
		return len(code) - 1
	case code[i]-x < x-code[i-1]:
		return i
	}
	return i - 1
}

// nearestDynamic's branchless search picks the code nearest does: on,
// between and either side of every code, at the midpoints (ties), past both
// ends and for NaN.
func TestNearestDynamic(t *testing.T) {
	xs := []float32{float32(math.Inf(-1)), -2, 2, float32(math.Inf(1)), float32(math.NaN()), 0}
	c := DynamicCode
	for i, v := range c {
		xs = append(xs, v, math.Nextafter32(v, -2), math.Nextafter32(v, 2))
		if i > 0 {
			mid := (c[i-1] + v) / 2
			xs = append(xs, mid, math.Nextafter32(mid, -2), math.Nextafter32(mid, 2))
		}
	}
	for _, x := range xs {
		if got, want := nearestDynamic(x), nearest(c[:], x); got != want {
			t.Errorf("nearestDynamic(%v) = %d, want %d", x, got, want)
		}
	}
}

// nearestNF4's binary search counts the midpoints below x, as a scan
// does, on and either side of every midpoint and past both ends.
func TestNearestNF4(t *testing.T) {
	xs := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), -1, 1, 0}
	for _, m := range nf4Mid {
		xs = append(xs, m, math.Nextafter32(m, -2), math.Nextafter32(m, 2))
	}
	for _, x := range xs {
		want := 0
		for _, m := range nf4Mid {
			if x > m {
				want++
			}
		}
		if got := nearestNF4(x); got != want {
			t.Errorf("nearestNF4(%g) = %d, want %d", x, got, want)
		}
	}
}

// TestNF4QuantizeKernel checks that the quantizing kernel gives the
// portable codes and maxima bit for bit, with an all-zero block, a NaN, an
// infinity, values on midpoints, signed zeros and a partial last block.
func TestNF4QuantizeKernel(t *testing.T) {
	if quantizeNF4Blocks == nil {
		t.Skip("no NF4 quantizing kernel on this CPU")
	}
	rng := rand.New(rand.NewPCG(29, 30))
	n := 64*40 + 22
	w := randn(rng, n)
	clear(w[64:128])
	w[400] = float32(math.Copysign(0, -1))
	clear(w[448:512])
	w[448] = 2 // block 7's maximum: the rest on midpoints
	for i, m := range nf4Mid {
		w[449+i] = 2 * m
		w[470+i] = -2 * m
	}
	kern := quantizeNF4Blocks
	defer func() { quantizeNF4Blocks = kern }()
	check := func(what string) {
		quantizeNF4Blocks = kern
		got := QuantizeNF4(w, 1, n)
		quantizeNF4Blocks = nil
		want := QuantizeNF4(w, 1, n)
		for i := range got.Packed {
			if got.Packed[i] != want.Packed[i] {
				t.Fatalf("%s: byte %d (block %d): %#x, want %#x", what, i, i/32, got.Packed[i], want.Packed[i])
			}
		}
		if !bytes.Equal(got.QAbsmax, want.QAbsmax) || math.Float32bits(got.Offset) != math.Float32bits(want.Offset) {
			t.Fatalf("%s: block maxima differ", what)
		}
	}
	check("finite")
	w[300] = float32(math.Inf(-1))
	check("an infinity")
	w[200] = float32(math.NaN()) // the mean of the maxima is NaN too
	check("a NaN")
}
