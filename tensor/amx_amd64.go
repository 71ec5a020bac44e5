package tensor

import "unsafe"

// func amxQ8(nb, nt int, x *int8, xs *x16Scale, ws *byte, wstride int, y *float32, ldy int, buf *byte, cfg *byte)
//
//go:noescape
func amxQ8(nb, nt int, x *int8, xs *x16Scale, ws *byte, wstride int, y *float32, ldy int, buf *byte, cfg *byte)

// func amxSigned(nb int, w *byte, ws *byte, q4 bool)
//
//go:noescape
func amxSigned(nb int, w *byte, ws *byte, q4 bool)

// amxConfig is the tile configuration amxQ8 loads (palette 1): TMM0–3
// the 16 × 16 int32 sums, TMM4–5 16 input rows of 32 codes, TMM6–7 a
// block's codes of sixteen weight rows as 8 rows of 64 bytes.
var amxConfig = func() (c [64]byte) {
	c[0] = 1
	for i, t := range [8]struct{ colsb, rows int }{{64, 16}, {64, 16}, {64, 16}, {64, 16}, {32, 16}, {32, 16}, {64, 8}, {64, 8}} {
		c[16+2*i] = byte(t.colsb)
		c[48+i] = byte(t.rows)
	}
	return c
}()

func initAMX() {
	if x16Kernel == nil || !amxAllowed() {
		return
	}
	amxKernel = func(nb, nt int, x []int8, xs []x16Scale, ws []byte, y []float32, ldy int, sc *amxScratch) {
		// The kernel reads and writes up to these.
		_, _, _, _ = x[nt*nb*amxRows*QBlock-1], xs[nt*nb*amxRows-1], ws[2*nb*amxBlockBytes-1], y[(nt*amxRows-1)*ldy+2*groupRows-1]
		buf := sc.buf[(64-uintptr(unsafe.Pointer(&sc.buf[0]))%64)%64:] // whole cache lines
		amxQ8(nb, nt, &x[0], &xs[0], &ws[0], nb*amxBlockBytes, &y[0], ldy, &buf[0], &amxConfig[0])
	}
	amxSign = func(q4 bool, nb int, w, ws []byte) {
		bb := Q8_0BlockBytes
		if q4 {
			bb = Q4_0BlockBytes
		}
		_, _ = w[nb*groupRows*bb-1], ws[nb*amxBlockBytes-1]
		amxSigned(nb, &w[0], &ws[0], q4)
	}
}
