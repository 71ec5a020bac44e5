package half

import (
	"encoding/binary"
	"math"
	"testing"
)

func TestHalfConversions(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := FromF16(uint16(h))
		if f != f {
			if back := ToF16(f); back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("NaN %04x came back as %04x", h, back)
			}
			continue
		}
		if back := ToF16(f); back != uint16(h) {
			t.Fatalf("f16 %04x -> %g -> %04x", h, f, back)
		}
		if b := FromBF16(uint16(h)); b == b && ToBF16(b) != uint16(h) {
			t.Fatalf("bf16 %04x -> %g -> %04x", h, b, ToBF16(b))
		}
	}
	for _, c := range []struct {
		in   float32
		f16  uint16
		bf16 uint16
	}{
		{1, 0x3c00, 0x3f80},
		{65520, 0x7c00, 0x4780}, // ties to even: past the largest half
		{65519, 0x7bff, 0x4780},
		{1.0009765625 / 2 * 2, 0x3c01, 0x3f80},   // exactly one f16 ulp above 1
		{1 + 1.0/2048, 0x3c00, 0x3f80},           // halfway between 1 and the next f16: ties to even
		{1 + 3.0/2048, 0x3c02, 0x3f80},           // halfway, rounds up to even
		{5.960464477539063e-08, 0x0001, 0x3380},  // smallest f16 subnormal
		{2.9802322387695312e-08, 0x0000, 0x3300}, // half of it: ties to even zero
		{1.00390625, 0x3c04, 0x3f80},             // bf16 halfway between 0x3f80 and 0x3f81: to even
		{float32(math.Copysign(0, -1)), 0x8000, 0x8000},
	} {
		if got := ToF16(c.in); got != c.f16 {
			t.Errorf("ToF16(%g) = %04x, want %04x", c.in, got, c.f16)
		}
		if got := ToBF16(c.in); got != c.bf16 {
			t.Errorf("ToBF16(%g) = %04x, want %04x", c.in, got, c.bf16)
		}
	}
}

// header builds a file from a literal JSON header and n data bytes.

// WidenBF16 gives FromBF16 of each value, four a load and in the tail.
func TestWidenBF16(t *testing.T) {
	for n := range 10 {
		b := make([]byte, 2*n)
		for i := range b {
			b[i] = byte(i*53 + 7)
		}
		got := make([]float32, n)
		WidenBF16(got, b)
		for i, v := range got {
			if want := FromBF16(binary.LittleEndian.Uint16(b[2*i:])); math.Float32bits(v) != math.Float32bits(want) {
				t.Fatalf("n %d: value %d is %g, want %g", n, i, v, want)
			}
		}
	}
}
