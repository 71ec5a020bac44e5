package safetensors

import (
	"fmt"
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

func checkFloat(d DType) error {
	switch d {
	case F32, F16, BF16:
		return nil
	}
	return fmt.Errorf("dtype %s is not a float type zhllama converts (F32, F16, BF16)", d)
}
