package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"
)

// TestHalfBlockDotsAVX2 checks the assembly kernels themselves, whatever
// ZHLLAMA_NOASM says, against Widen. Their sums run in 32 lanes (4
// accumulators of 8) and are then added in 5 steps, so each lane sees
// about n/32 roundings; n/16+8 leaves room to spare yet is far tighter
// than a sequential sum's n.
func TestHalfBlockDotsAVX2(t *testing.T) {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA || !cpuidF16C() {
		t.Skip("no AVX2+FMA+F16C")
	}
	rng := rand.New(rand.NewPCG(15, 16))
	for _, n := range []int{8, 16, 24, 32, 40, 96, 296, 4096} {
		a := randn(rng, n)
		f := &F16{Rows: 1, Cols: n, Data: randF16(rng, n)}
		w := make([]float32, n)
		f.Widen(w, 0, 0)
		checkDot(t, "dotF16AVX2", n, dotF16AVX2(n, &a[0], &f.Data[0]), a, w, float64(n/16+8))
	}
	for _, nb := range []int{1, 2, 3, 9, 128} {
		n := nb * QBlock
		a := randn(rng, n)
		for _, q4 := range []bool{false, true} {
			bb, name, kern := Q8_0BlockBytes, "dotQ8_0AVX2", dotQ8_0AVX2
			if q4 {
				bb, name, kern = Q4_0BlockBytes, "dotQ4_0AVX2", dotQ4_0AVX2
			}
			m := &Blocks{Rows: 1, Cols: n, Data: randBlocks(rng, nb, bb), Q4: q4}
			w := make([]float32, n)
			m.Widen(w, 0, 0)
			checkDot(t, name, n, kern(nb, &a[0], &m.Data[0]), a, w, float64(n/16+8))
		}
	}
}

// TestGemvQ8Kernels checks each quantized-input kernel this CPU can run,
// whichever one dispatch picked, against float64 sums over the decoded
// weights and input.
func TestGemvQ8Kernels(t *testing.T) {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA || !cpuidF16C() {
		t.Skip("no AVX2+FMA+F16C")
	}
	rng := rand.New(rand.NewPCG(19, 20))
	for _, nb := range []int{1, 2, 3, 4, 24} {
		n := nb * QBlock
		x := randn(rng, n)
		qs, ds := make([]int8, n), make([]float32, nb)
		quantizeQ8(qs, ds, x)
		bias := q4BiasOf(qs)
		xw := make([]float32, n)
		DecodeQ8_0(xw, AppendQ8_0(nil, x))
		const rows = 3
		kernels := map[string]func(y []float32, w []byte){
			"gemvQ8Q8AVX2": func(y []float32, w []byte) { gemvQ8Q8AVX2(nb, &qs[0], &ds[0], &w[0], rows, &y[0]) },
			"gemvQ4Q8AVX2": func(y []float32, w []byte) { gemvQ4Q8AVX2(nb, &qs[0], &ds[0], &w[0], rows, &y[0]) },
		}
		if cpu.X86.HasAVX512VNNI && cpu.X86.HasAVX512VL {
			kernels["gemvQ4Q8VNNI"] = func(y []float32, w []byte) {
				gemvQ4Q8VNNI(nb, &qs[0], &ds[0], &bias[0], &w[0], rows, &y[0])
			}
			if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && nb%2 == 0 {
				xp, pb := q4PairsOf(qs)
				kernels["gemvQ4Q8VNNI512"] = func(y []float32, w []byte) {
					gemvQ4Q8VNNI512(nb/2, &xp[0], &ds[0], &pb[0], &w[0], rows, &y[0])
				}
			}
		}
		for name, k := range kernels {
			q4 := name != "gemvQ8Q8AVX2"
			bb := Q8_0BlockBytes
			if q4 {
				bb = Q4_0BlockBytes
			}
			m := &Blocks{Rows: rows, Cols: n, Data: randBlocks(rng, rows*nb, bb), Q4: q4}
			y := make([]float32, rows)
			k(y, m.Data)
			for r := range rows {
				w := make([]float32, n)
				m.Widen(w, r, 0)
				checkDot(t, fmt.Sprintf("%s row %d", name, r), n, y[r], xw, w, float64(nb+8))
			}
		}
	}
}
