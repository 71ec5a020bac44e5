package tensor

import (
	"os"

	"golang.org/x/sys/cpu"
)

//go:noescape
func kernel4x16AVX2(k int, a *float32, cs int, b, c *float32, ldc int, alpha float32, store bool)

//go:noescape
func kernel4x16AVX2N(k int, a *float32, rs int, b, c *float32, ldc int, alpha float32, store bool)

//go:noescape
func kernel8x32AVX512(k int, a *float32, cs int, b, c *float32, ldc int, alpha float32, store bool)

//go:noescape
func kernel8x32AVX512N(k int, a *float32, rs int, b, c *float32, ldc int, alpha float32, store bool)

//go:noescape
func dotAVX2(n int, a, b *float32) float32

//go:noescape
func dotBF16AVX2(n int, a *float32, b *uint16) float32

//go:noescape
func dotF16AVX2(n int, a *float32, b *uint16) float32

//go:noescape
func dotQ8_0AVX2(nb int, a *float32, b *byte) float32

//go:noescape
func dotQ4_0AVX2(nb int, a *float32, b *byte) float32

func cpuidF16C() bool

//go:noescape
func axpyAVX2(n int, alpha float32, x, y *float32)

//go:noescape
func dot4AVX2(n int, w, x *float32, ldx int, out *float32)

//go:noescape
func dot8AVX2(n int, w, x *float32, ldx int, out *float32)

//go:noescape
func gemvAVX2(n int, x, w *float32, ldw, rows int, y *float32)

//go:noescape
func gemvQ8Q8AVX2(nb int, xq *int8, xd *float32, w *byte, rows int, y *float32)

//go:noescape
func gemvQ4Q8AVX2(nb int, xq *int8, xd *float32, w *byte, rows int, y *float32)

//go:noescape
func gemvQ4Q8VNNI(nb int, xq *int8, xd *float32, bias *int32, w *byte, rows int, y *float32)

// nf4TIdx holds widenNF4TAVX512's byte permutations: in the i-th 64
// bytes, byte 4r takes byte i of row r from the rows' 8 bytes each laid
// end to end (8r + i); the other bytes are not read.
var nf4TIdx = func() (t [8 * 64]byte) {
	for i := range 8 {
		for r := range 16 {
			t[64*i+4*r] = byte(8*r + i)
		}
	}
	return t
}()

//go:noescape
func quantizeNF4AVX512(nb int, w, mid *float32, packed *byte, absmax *float32)

//go:noescape
func widenNF4AVX512(nb int, packed *byte, scales, table, dst *float32, stride int)

//go:noescape
func widenNF4TAVX512(nb int, packed *byte, rowBytes int, scales, table *float32, idx *byte, dst *float32, ldd int)

//go:noescape
func transpose8AVX2(src *float32, lds int, dst *float32, ldd int)

//go:noescape
func widenBF16AVX2(n int, dst *float32, src *uint16)

//go:noescape
func widenF16AVX2(n int, dst *float32, src *uint16)

//go:noescape
func gemvBF16AVX2(n int, x *float32, w *uint16, ldw, rows int, y *float32)

//go:noescape
func gemvBF16AVX512(n int, x *float32, w *uint16, ldw, rows int, y *float32)

//go:noescape
func decodeQ8_0AVX2(nb int, dst *float32, b *byte)

//go:noescape
func decodeQ4_0AVX2(nb int, dst *float32, b *byte)

//go:noescape
func gemvAVX512(n int, x, w *float32, ldw, rows int, y *float32)

//go:noescape
func gemv4AVX512(n int, x, w *float32, ldw, rows, q int, y *float32)

//go:noescape
func gemv4BF16AVX512(n int, x *float32, w *uint16, ldw, rows, q int, y *float32)

//go:noescape
func gemv4F16AVX512(n int, x *float32, w *uint16, ldw, rows, q int, y *float32)

//go:noescape
func gemvF16AVX2(n int, x *float32, w *uint16, ldw, rows int, y *float32)

//go:noescape
func gemvF16AVX512(n int, x *float32, w *uint16, ldw, rows int, y *float32)

//go:noescape
func gemvQ4Q8VNNI512(np int, xq *int8, xd *float32, bias *int32, w *byte, rows int, y *float32)

//go:noescape
func wsum32AVX2(n int, p, v *float32, ldv int, out *float32)

//go:noescape
func wsum8AVX2(n int, p, v *float32, ldv int, out *float32)

func init() {
	avx2 := func(k int, a, b, c []float32, ldc int, alpha float32, store bool) {
		kernel4x16AVX2(k, &a[0], 4, &b[0], &c[0], ldc, alpha, store)
	}
	// avx2Direct reads A in place: rows rs apart, steps cs apart, one of
	// them 1.
	avx2Direct := func(k int, a []float32, rs, cs int, b, c []float32, ldc int, alpha float32, store bool) {
		if rs == 1 {
			kernel4x16AVX2(k, &a[0], cs, &b[0], &c[0], ldc, alpha, store)
		} else {
			kernel4x16AVX2N(k, &a[0], rs, &b[0], &c[0], ldc, alpha, store)
		}
	}
	avx512 := func(k int, a, b, c []float32, ldc int, alpha float32, store bool) {
		kernel8x32AVX512(k, &a[0], 8, &b[0], &c[0], ldc, alpha, store)
	}
	// avx512Direct reads A in place: rows rs apart, steps cs apart, one of
	// them 1.
	avx512Direct := func(k int, a []float32, rs, cs int, b, c []float32, ldc int, alpha float32, store bool) {
		if rs == 1 {
			kernel8x32AVX512(k, &a[0], cs, &b[0], &c[0], ldc, alpha, store)
		} else {
			kernel8x32AVX512N(k, &a[0], rs, &b[0], &c[0], ldc, alpha, store)
		}
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		asmKernels = append(asmKernels, kernelInfo{"avx2+fma 4x16", 4, 16, avx2, avx2Direct})
	}
	if cpu.X86.HasAVX512F {
		asmKernels = append(asmKernels, kernelInfo{"avx512 8x32", 8, 32, avx512, avx512Direct})
	}
	// useAVX512 is whether the 512-bit kernels outside the GEMM may run
	// (AVX-512 F and BW, and not turned off by ZHLLAMA_NOAVX512=1).
	useAVX512 := cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && !noAsm() && os.Getenv("ZHLLAMA_NOAVX512") != "1"
	if useAVX512 {
		quantizeNF4Blocks = func(w []float32, packed []byte, absmax []float32) {
			nb := len(absmax)
			if nb == 0 {
				return
			}
			_, _ = w[nb*nf4Block-1], packed[nb*nf4Block/2-1]
			quantizeNF4AVX512(nb, &w[0], &nf4Mid16[0], &packed[0], &absmax[0])
		}
		widenNF4 = func(dst []float32, stride int, packed []byte, scales [16]float32, nb int) {
			_, _, _ = scales[nb-1], dst[(2*nb-1)*stride+31], packed[nb*nf4Block/2-1]
			widenNF4AVX512(nb, &packed[0], &scales[0], &NF4Code[0], &dst[0], 4*stride)
		}
		if cpu.X86.HasAVX512VBMI {
			widenNF4T = func(dst []float32, stride int, packed []byte, rowBytes int, scales [16 * 16]float32, nb int) {
				_, _, _ = scales[16*nb-1], dst[(nb*nf4Block-1)*stride+15], packed[15*rowBytes+nb*nf4Block/2-1]
				widenNF4TAVX512(nb, &packed[0], rowBytes, &scales[0], &NF4Code[0], &nf4TIdx[0], &dst[0], 4*stride)
			}
		}
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && !noAsm() {
		dot = func(a, b []float32) float32 {
			n := len(a) &^ 7
			if n == 0 {
				return dotGo(a, b)
			}
			return dotAVX2(n, &a[0], &b[0]) + dotGo(a[n:], b[n:len(a)])
		}
		dot4 = func(w, x []float32, ldx int, out *[4]float32) {
			n := len(w) &^ 7
			if n == 0 {
				dot4Go(w, x, ldx, out)
				return
			}
			dot4AVX2(n, &w[0], &x[0], ldx, &out[0])
			if n == len(w) {
				return
			}
			for r := range out {
				out[r] += dotGo(w[n:], x[r*ldx+n:r*ldx+len(w)])
			}
		}
		dot8 = func(w, x []float32, ldx int, out *[8]float32) {
			n := len(w) &^ 7
			if n == 0 {
				dot8Go(w, x, ldx, out)
				return
			}
			dot8AVX2(n, &w[0], &x[0], ldx, &out[0])
			if n == len(w) {
				return // no tail: skipping the empty calls matters at one call per weight row
			}
			for r := range out {
				out[r] += dotGo(w[n:], x[r*ldx+n:r*ldx+len(w)])
			}
		}
		axpy = func(alpha float32, x, y []float32) {
			n := len(x) &^ 7
			if n > 0 {
				axpyAVX2(n, alpha, &x[0], &y[0])
			}
			axpyGo(alpha, x[n:], y[n:len(x)])
		}
		gemv1 = func(y, x, w []float32) {
			n, rows := len(x), len(y)
			if n%8 != 0 || n == 0 || rows == 0 {
				gemv1Go(y, x, w)
				return
			}
			_ = w[(rows-1)*n+n-1] // the kernel reads up to here
			if useAVX512 && n%16 == 0 {
				gemvStreams(x, w, y, gemv4AVX512, gemvAVX512)
				return
			}
			gemvAVX2(n, &x[0], &w[0], n, rows, &y[0])
		}
		transpose8 = func(src []float32, lds int, dst []float32, ldd int) {
			_, _ = src[7*lds+7], dst[7*ldd+7]
			transpose8AVX2(&src[0], lds, &dst[0], ldd)
		}
		wsum = wsumKernels(wsum32AVX2, wsum8AVX2, wsumGo)
		// halfWiden and halfGemv dispatch the kernels over 16-bit values
		// (bfloat16, or IEEE half), which take whole groups of 8 (or 16).
		halfWiden := func(kern func(n int, dst *float32, src *uint16), tail func([]float32, []uint16)) func([]float32, []uint16) {
			return func(dst []float32, src []uint16) {
				n := len(dst) &^ 7
				if n > 0 {
					_ = src[n-1]
					kern(n, &dst[0], &src[0])
				}
				tail(dst[n:], src[n:len(dst)])
			}
		}
		halfGemv := func(avx2, avx512 func(n int, x *float32, w *uint16, ldw, rows int, y *float32), avx512x4 func(n int, x *float32, w *uint16, ldw, rows, q int, y *float32), other func(y, x []float32, w []uint16)) func(y, x []float32, w []uint16) {
			return func(y, x []float32, w []uint16) {
				n, rows := len(x), len(y)
				if n%8 != 0 || n == 0 || rows == 0 {
					other(y, x, w)
					return
				}
				_ = w[rows*n-1] // the kernel reads up to here
				if useAVX512 && n%16 == 0 {
					gemvStreams(x, w, y, avx512x4, avx512)
					return
				}
				avx2(n, &x[0], &w[0], n, rows, &y[0])
			}
		}
		widenBF16 = halfWiden(widenBF16AVX2, widenBF16Go)
		gemvBF16 = halfGemv(gemvBF16AVX2, gemvBF16AVX512, gemv4BF16AVX512, gemvBF16Go)
		dotBF16 = func(a []float32, b []uint16) float32 {
			n := len(b) &^ 7
			if n == 0 {
				return dotBF16Go(a, b)
			}
			return dotBF16AVX2(n, &a[0], &b[0]) + dotBF16Go(a[n:], b[n:])
		}
		// The half-float kernels also need F16C's VCVTPH2PS, which every
		// AVX2 CPU so far has but x/sys/cpu does not report; CPUID says.
		if cpuidF16C() {
			widenF16 = halfWiden(widenF16AVX2, widenF16Go)
			gemvF16 = halfGemv(gemvF16AVX2, gemvF16AVX512, gemv4F16AVX512, gemvF16Go)
			dotF16 = func(a []float32, b []uint16) float32 {
				n := len(b) &^ 7
				if n == 0 {
					return dotF16Go(a, b)
				}
				return dotF16AVX2(n, &a[0], &b[0]) + dotF16Go(a[n:], b[n:])
			}
			vnni := cpu.X86.HasAVX512VNNI && cpu.X86.HasAVX512VL
			// With AVX-512 too, an even number of blocks goes two blocks a
			// 512-bit register.
			pairs := func(nb int) bool { return useAVX512 && nb%2 == 0 }
			if vnni {
				q4Prep = func(qs []int8) ([]int8, []int32) {
					if pairs(len(qs) / QBlock) {
						return q4PairsOf(qs)
					}
					return qs, q4BiasOf(qs)
				}
			}
			gemvQ8 = func(y []float32, qs []int8, ds []float32, bias []int32, w []byte, q4 bool) {
				nb, rows := len(ds), len(y)
				if nb == 0 || rows == 0 {
					gemvQ8Go(y, qs, ds, bias, w, q4)
					return
				}
				_ = qs[nb*QBlock-1]
				if q4 {
					_ = w[rows*nb*Q4_0BlockBytes-1] // the kernel reads up to here
					switch {
					case vnni && pairs(nb):
						_ = bias[nb*8-1]
						gemvQ4Q8VNNI512(nb/2, &qs[0], &ds[0], &bias[0], &w[0], rows, &y[0])
					case vnni:
						_ = bias[nb*8-1]
						gemvQ4Q8VNNI(nb, &qs[0], &ds[0], &bias[0], &w[0], rows, &y[0])
					default:
						gemvQ4Q8AVX2(nb, &qs[0], &ds[0], &w[0], rows, &y[0])
					}
				} else {
					_ = w[rows*nb*Q8_0BlockBytes-1]
					gemvQ8Q8AVX2(nb, &qs[0], &ds[0], &w[0], rows, &y[0])
				}
			}
			decodeQ8_0 = func(dst []float32, b []byte) {
				nb := len(dst) / QBlock
				if nb > 0 {
					_ = b[nb*Q8_0BlockBytes-1]
					decodeQ8_0AVX2(nb, &dst[0], &b[0])
				}
			}
			decodeQ4_0 = func(dst []float32, b []byte) {
				nb := len(dst) / QBlock
				if nb > 0 {
					_ = b[nb*Q4_0BlockBytes-1]
					decodeQ4_0AVX2(nb, &dst[0], &b[0])
				}
			}
			dotQ8_0 = func(a []float32, b []byte) float32 {
				nb := len(a) / QBlock
				if nb == 0 {
					return 0
				}
				_ = b[nb*Q8_0BlockBytes-1]
				return dotQ8_0AVX2(nb, &a[0], &b[0])
			}
			dotQ4_0 = func(a []float32, b []byte) float32 {
				nb := len(a) / QBlock
				if nb == 0 {
					return 0
				}
				_ = b[nb*Q4_0BlockBytes-1]
				return dotQ4_0AVX2(nb, &a[0], &b[0])
			}
		}
	}
	switch {
	case noAsm():
	case cpu.X86.HasAVX512F && os.Getenv("ZHLLAMA_NOAVX512") != "1":
		mr, nr, microKernel, directKernel, KernelName = 8, 32, avx512, avx512Direct, "avx512 8x32"
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
		microKernel, directKernel, KernelName = avx2, avx2Direct, "avx2+fma 4x16"
	}
}

// wsumKernels makes a wsum (or wsumF16) from kernels over 32 and 8
// columns and the Go code for what is left and for empty calls.
func wsumKernels[T float32 | uint16](k32, k8 func(n int, p *float32, v *T, ldv int, out *float32), other func(p []float32, v []T, ldv int, out []float32)) func(p []float32, v []T, ldv int, out []float32) {
	return func(p []float32, v []T, ldv int, out []float32) {
		n, c := len(p), len(out)&^7
		if n == 0 || c == 0 {
			other(p, v, ldv, out)
			return
		}
		_ = v[(n-1)*ldv+len(out)-1] // the kernels read up to here
		c0 := 0
		for ; c0+32 <= c; c0 += 32 {
			k32(n, &p[0], &v[c0], ldv, &out[c0])
		}
		for ; c0 < c; c0 += 8 { // head sizes such as 48 and 80
			k8(n, &p[0], &v[c0], ldv, &out[c0])
		}
		other(p, v[c:], ldv, out[c:])
	}
}

// gemvStreams is a GEMV of y = w·x (w row-major, len(x) values a row) by
// a kernel over four streams of rows a quarter apart (k4), then one over
// the rows left (k1). Decoding reads every weight once, and four streams
// read at once draw more of memory's bandwidth than one (stories110M
// float32 decoding, 1 thread, on a Xeon: about a third more tokens/s).
// Both kernels sum each row the same way, so a row's result does not
// depend on which one took it.
func gemvStreams[T float32 | uint16](x []float32, w []T, y []float32, k4 func(n int, x *float32, w *T, ldw, rows, q int, y *float32), k1 func(n int, x *float32, w *T, ldw, rows int, y *float32)) {
	n, rows := len(x), len(y)
	q := rows / 4
	if q > 0 {
		k4(n, &x[0], &w[0], n, q, q, &y[0])
	}
	if r := 4 * q; r < rows {
		k1(n, &x[0], &w[r*n], n, rows-r, &y[r])
	}
}
