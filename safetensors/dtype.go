package safetensors

import (
	"fmt"
	"math"
)

// DType is a tensor element type, spelled as in the header.
type DType string

// Element types zhllama reads and writes.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	F64  DType = "F64"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	Bool DType = "BOOL"
)

// Size is the element size in bytes, or 0 for an unknown type.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, Bool, "F8_E4M3", "F8_E5M2":
		return 1
	}
	return 0
}

// BF16ToF32 widens a bfloat16.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 rounds to the nearest bfloat16, ties to even, as PyTorch does;
// NaN stays NaN.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToF32 widens an IEEE half-precision float.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalize
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// F32ToF16 rounds to the nearest half-precision float, ties to even;
// values past the largest half become infinity.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	abs := b & 0x7fffffff
	switch {
	case abs > 0x7f800000: // NaN
		return sign | 0x7e00
	case abs >= 0x477ff000: // 65520 and up round to infinity
		return sign | 0x7c00
	case abs < 0x38800000: // below 2^-14: a subnormal half, or zero
		if abs < 0x33000000 {
			return sign
		}
		exp := abs >> 23
		mant := abs&0x7fffff | 0x800000
		shift := 126 - exp // to units of 2^-24
		q := mant >> shift
		rem, half := mant&(1<<shift-1), uint32(1)<<(shift-1)
		if rem > half || rem == half && q&1 == 1 {
			q++
		}
		return sign | uint16(q)
	}
	q := (abs>>23-127+15)<<10 | (abs&0x7fffff)>>13
	if rem := abs & 0x1fff; rem > 0x1000 || rem == 0x1000 && q&1 == 1 {
		q++ // a carry into the exponent is the right result
	}
	return sign | uint16(q)
}

func checkFloat(d DType) error {
	switch d {
	case F32, F16, BF16:
		return nil
	}
	return fmt.Errorf("dtype %s is not a float type zhllama converts (F32, F16, BF16)", d)
}
