package gguf

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"

	"zhllama/internal/atomicfile"
	"zhllama/internal/half"
	"zhllama/tensor"
)

// Source is a tensor to write: its info, and Write, called once, which
// writes exactly its bytes.
type Source struct {
	Name  string
	Type  Type
	Ne    []uint64
	Write func(w io.Writer) error
}

// Raw is a Source of ready bytes (a tensor copied from another file).
func Raw(name string, typ Type, ne []uint64, data []byte) Source {
	return Source{Name: name, Type: typ, Ne: ne, Write: func(w io.Writer) error { _, err := w.Write(data); return err }}
}

// Rows is a Source that converts float32 rows to typ as it writes: rows
// rows of cols values, row(r, dst) filling row r. Only one row and one
// converted buffer are held at a time, whatever the tensor's size. typ is
// F32, F16, BF16, Q8_0 or Q4_0; for the last two cols must be a multiple
// of 32.
func Rows(name string, typ Type, cols, rows int, row func(r int, dst []float32)) Source {
	return Source{Name: name, Type: typ, Ne: []uint64{uint64(cols), uint64(rows)}, Write: func(w io.Writer) error {
		x := make([]float32, cols)
		var buf []byte
		for r := 0; r < rows; r++ {
			row(r, x)
			buf = AppendRow(buf[:0], typ, x)
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		return nil
	}}
}

// Vector is a Source of a 1-D float32 tensor.
func Vector(name string, v []float32) Source {
	return Source{Name: name, Type: F32Type, Ne: []uint64{uint64(len(v))}, Write: func(w io.Writer) error {
		_, err := w.Write(AppendRow(nil, F32Type, v))
		return err
	}}
}

// Convertible reports whether float32 values convert to and from typ.
func Convertible(typ Type) bool {
	switch typ {
	case F32Type, F16Type, BF16Type, Q8_0Type, Q4_0Type:
		return true
	}
	return false
}

// AppendRow converts x to typ (F32, F16, BF16, Q8_0 or Q4_0) and appends
// the bytes; for Q8_0 and Q4_0 len(x) is a multiple of 32.
func AppendRow(dst []byte, typ Type, x []float32) []byte {
	switch typ {
	case F16Type:
		dst = half.AppendF16(dst, x)
	case BF16Type:
		dst = half.AppendBF16(dst, x)
	case Q8_0Type:
		dst = tensor.AppendQ8_0(dst, x)
	case Q4_0Type:
		dst = tensor.AppendQ4_0(dst, x)
	default:
		for _, v := range x {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
		}
	}
	return dst
}

// Float32 widens the tensor's values (F32, F16, BF16, Q8_0 or Q4_0) into
// dst, grown as needed.
func (t *Tensor) Float32(dst []float32) ([]float32, error) {
	if !Convertible(t.Type) {
		return nil, fmt.Errorf("tensor %s is %s; zhllama reads F32, F16, BF16, Q8_0 and Q4_0 (requantize the file with llama-quantize to one of those)", t.Name, t.Type)
	}
	n := int(t.Elements())
	dst = slices.Grow(dst[:0], n)[:n]
	b := t.Data
	switch t.Type {
	case F16Type:
		half.WidenF16(dst, b)
	case BF16Type:
		half.WidenBF16(dst, b)
	case Q8_0Type:
		tensor.DecodeQ8_0(dst, b)
	case Q4_0Type:
		tensor.DecodeQ4_0(dst, b)
	default:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	}
	return dst, nil
}

// Write writes a GGUF file to path through a temporary file: the key-value
// pairs in the order given, the tensor infos, then each tensor's data in
// the same order, each padded to the alignment (general.alignment if kvs
// set it, else 32), as llama.cpp requires. progress, if set, is told the
// bytes of tensor data written so far and the total.
func Write(path string, kvs []KV, tensors []Source, progress func(done, total int64)) error {
	align := DefaultAlignment
	keys := map[string]bool{}
	for _, kv := range kvs {
		if kv.Key == "" || keys[kv.Key] {
			return fmt.Errorf("%s: key %q is empty or repeated", path, kv.Key)
		}
		keys[kv.Key] = true
		if kv.Key == "general.alignment" {
			a, ok := kv.Value.V.(uint32)
			if !ok || kv.Value.Type != TypeUint32 || a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("%s: general.alignment must be a u32 power of two", path)
			}
			align = int(a)
		}
	}
	sizes := make([]uint64, len(tensors))
	names := map[string]bool{}
	var total uint64
	hdr := binary.LittleEndian.AppendUint32(nil, Magic)
	hdr = binary.LittleEndian.AppendUint32(hdr, Version)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(tensors)))
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(kvs)))
	for _, kv := range kvs {
		hdr = appendString(hdr, kv.Key)
		var err error
		if hdr, err = appendValue(hdr, kv.Value, true); err != nil {
			return fmt.Errorf("%s: key %s: %w", path, kv.Key, err)
		}
	}
	for i, t := range tensors {
		if len(t.Name) >= maxName || names[t.Name] || t.Name == "" {
			return fmt.Errorf("%s: tensor name %q is empty, repeated, or %d bytes or longer", path, t.Name, maxName)
		}
		names[t.Name] = true
		if len(t.Ne) > 4 {
			return fmt.Errorf("%s: tensor %s has %d dimensions; GGUF allows 1 to 4", path, t.Name, len(t.Ne))
		}
		n, err := nbytes(t.Type, t.Ne)
		if err != nil {
			return fmt.Errorf("%s: tensor %s: %w", path, t.Name, err)
		}
		sizes[i] = n
		hdr = appendString(hdr, t.Name)
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(t.Ne)))
		for _, d := range t.Ne {
			hdr = binary.LittleEndian.AppendUint64(hdr, d)
		}
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(t.Type))
		hdr = binary.LittleEndian.AppendUint64(hdr, total)
		total += pad(n, align)
	}
	hdr = append(hdr, make([]byte, pad(uint64(len(hdr)), align)-uint64(len(hdr)))...)
	out, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	if _, err := out.Write(hdr); err != nil {
		out.Abort()
		return err
	}
	var done int64
	zeros := make([]byte, align)
	for i, t := range tensors {
		if progress != nil {
			progress(done, int64(total))
		}
		if err := out.WriteExactly(fmt.Sprintf("tensor %s (%s, ne %v)", t.Name, t.Type, t.Ne), int64(sizes[i]), t.Write); err != nil {
			out.Abort()
			return fmt.Errorf("%s: %w", path, err)
		}
		if _, err := out.Write(zeros[:pad(sizes[i], align)-sizes[i]]); err != nil {
			out.Abort()
			return err
		}
		done += int64(pad(sizes[i], align))
	}
	if progress != nil {
		progress(done, int64(total))
	}
	return out.Commit()
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// appendValue encodes v, its type first when typed (array elements are
// not typed one by one).
func appendValue(b []byte, v Value, typed bool) ([]byte, error) {
	if typed {
		b = binary.LittleEndian.AppendUint32(b, uint32(v.Type))
	}
	bad := func() ([]byte, error) {
		return nil, fmt.Errorf("value %T does not match its type %s", v.V, v.TypeName())
	}
	if v.Type == TypeArray {
		b = binary.LittleEndian.AppendUint32(b, uint32(v.Elem))
		return appendArray(b, v.Elem, v.V, bad)
	}
	switch x := v.V.(type) {
	case uint8:
		return check(v.Type == TypeUint8, append(b, x), bad)
	case int8:
		return check(v.Type == TypeInt8, append(b, byte(x)), bad)
	case bool:
		c := byte(0)
		if x {
			c = 1
		}
		return check(v.Type == TypeBool, append(b, c), bad)
	case uint16:
		return check(v.Type == TypeUint16, binary.LittleEndian.AppendUint16(b, x), bad)
	case int16:
		return check(v.Type == TypeInt16, binary.LittleEndian.AppendUint16(b, uint16(x)), bad)
	case uint32:
		return check(v.Type == TypeUint32, binary.LittleEndian.AppendUint32(b, x), bad)
	case int32:
		return check(v.Type == TypeInt32, binary.LittleEndian.AppendUint32(b, uint32(x)), bad)
	case float32:
		return check(v.Type == TypeFloat32, binary.LittleEndian.AppendUint32(b, math.Float32bits(x)), bad)
	case uint64:
		return check(v.Type == TypeUint64, binary.LittleEndian.AppendUint64(b, x), bad)
	case int64:
		return check(v.Type == TypeInt64, binary.LittleEndian.AppendUint64(b, uint64(x)), bad)
	case float64:
		return check(v.Type == TypeFloat64, binary.LittleEndian.AppendUint64(b, math.Float64bits(x)), bad)
	case string:
		return check(v.Type == TypeString, appendString(b, x), bad)
	}
	return bad()
}

func check(ok bool, b []byte, bad func() ([]byte, error)) ([]byte, error) {
	if !ok {
		return bad()
	}
	return b, nil
}

// appendArray encodes the slice v of elem values, each checked as a
// scalar is (an array of arrays holds Values).
func appendArray(b []byte, elem ValueType, v any, bad func() ([]byte, error)) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return bad()
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(rv.Len()))
	for i := 0; i < rv.Len(); i++ {
		e := Value{Type: elem, V: rv.Index(i).Interface()}
		if nested, ok := e.V.(Value); ok {
			if elem != TypeArray || nested.Type != TypeArray {
				return bad()
			}
			e = nested
		}
		var err error
		if b, err = appendValue(b, e, false); err != nil {
			return nil, err
		}
	}
	return b, nil
}
