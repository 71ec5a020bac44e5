package tensor

import "zhllama/internal/half"

// A float16 key/value cache (CachedSeq.Keys16) halves what attention reads
// a decoded token, as llama.cpp's default cache does; these are its
// kernels. Assembly replaces them where the CPU has AVX2, FMA and F16C.
var (
	// dot8F16 is dot8 over float16 rows.
	dot8F16 = dot8F16Go
	// wsumF16 is wsum over float16 rows.
	wsumF16 = wsumF16Go
	// narrowF16 rounds src to float16, nearest even, into dst.
	narrowF16 = narrowF16Go
)

// NarrowF16 sets dst[i] to src[i] rounded to IEEE float16 (nearest even,
// overflow to infinity), for i < len(src).
func NarrowF16(dst []uint16, src []float32) { narrowF16(dst[:len(src)], src) }

func dot8F16Go(w []float32, x []uint16, ldx int, out *[8]float32) {
	for r := range out {
		out[r] = dotF16Go(w, x[r*ldx:r*ldx+len(w)])
	}
}

func wsumF16Go(p []float32, v []uint16, ldv int, out []float32) {
	clear(out)
	for j, a := range p {
		for c, x := range v[j*ldv : j*ldv+len(out)] {
			out[c] += a * half.FromF16(x)
		}
	}
}

func narrowF16Go(dst []uint16, src []float32) {
	for i, v := range src {
		dst[i] = half.ToF16(v)
	}
}
