// Package half converts between float32 and the 16-bit floats checkpoints
// store (IEEE half precision and bfloat16), rounding as PyTorch does. The
// file formats and the kernels that widen compact weights share it.
package half

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// FromBF16 widens a bfloat16.
func FromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// ToBF16 rounds to the nearest bfloat16, ties to even, as PyTorch does;
// NaN stays NaN.
func ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// FromF16 widens an IEEE half-precision float.
func FromF16(h uint16) float32 {
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

// ToF16 rounds to the nearest half-precision float, ties to even;
// values past the largest half become infinity.
func ToF16(f float32) uint16 {
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

// View is b, little-endian 16-bit values, as uint16s: the (mapped) bytes
// themselves where the alignment allows, so that no copy is made and the
// kernel can drop and reread the pages under memory pressure; else a copy.
func View(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&b[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
	}
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return out
}

// WidenF16 widens the little-endian half-precision values in b into dst
// (len(b) = 2·len(dst)).
func WidenF16(dst []float32, b []byte) {
	for i := range dst {
		dst[i] = FromF16(binary.LittleEndian.Uint16(b[2*i:]))
	}
}

// WidenBF16 widens the little-endian bfloat16 values in b into dst.
func WidenBF16(dst []float32, b []byte) {
	b = b[:2*len(dst)]
	i := 0
	for ; i+4 <= len(dst); i += 4 { // four values a load
		w, d := binary.LittleEndian.Uint64(b[2*i:]), dst[i:i+4:i+4]
		d[0] = math.Float32frombits(uint32(w) << 16)
		d[1] = math.Float32frombits(uint32(w>>16) << 16)
		d[2] = math.Float32frombits(uint32(w>>32) << 16)
		d[3] = math.Float32frombits(uint32(w>>48) << 16)
	}
	for ; i < len(dst); i++ {
		dst[i] = FromBF16(binary.LittleEndian.Uint16(b[2*i:]))
	}
}

// AppendF16 appends x rounded to half precision, little-endian.
func AppendF16(dst []byte, x []float32) []byte {
	for _, v := range x {
		dst = binary.LittleEndian.AppendUint16(dst, ToF16(v))
	}
	return dst
}

// AppendBF16 appends x rounded to bfloat16, little-endian.
func AppendBF16(dst []byte, x []float32) []byte {
	for _, v := range x {
		dst = binary.LittleEndian.AppendUint16(dst, ToBF16(v))
	}
	return dst
}
