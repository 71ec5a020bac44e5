// Package gguf reads and writes GGUF files (version 3), the format of
// llama.cpp and ollama: typed metadata (key-value pairs in file order),
// tensor infos, and aligned tensor data in ggml's types. The reader maps the
// file and checks what llama.cpp's loader checks; the writer streams the
// tensors, converting as it goes. model.go maps a llama model to a file and
// back.
package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"

	"zhllama/internal/mmap"
)

// Magic is "GGUF" read as a little-endian uint32.
const Magic = 0x46554747

// Version is the version the writer writes; the reader also takes 2, whose
// layout is the same.
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// maxName is ggml's GGML_MAX_NAME: tensor names are shorter.
const maxName = 64

// ValueType is a metadata value's type.
type ValueType uint32

// Metadata value types, numbered as in the file.
const (
	TypeUint8 ValueType = iota
	TypeInt8
	TypeUint16
	TypeInt16
	TypeUint32
	TypeInt32
	TypeFloat32
	TypeBool
	TypeString
	TypeArray
	TypeUint64
	TypeInt64
	TypeFloat64
)

var valueTypeNames = [...]string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("type %d", uint32(t))
}

// size is the encoded size of a fixed-size value type, 0 for string and array.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// Value is a typed metadata value. V holds the Go value of the type:
// uint8, int8, uint16, int16, uint32, int32, float32, bool, string, uint64,
// int64 or float64; for an array, a slice of those of type Elem, or []Value
// for an array of arrays.
type Value struct {
	Type ValueType
	Elem ValueType // of an array's elements
	V    any
}

// KV is a metadata key and its value.
type KV struct {
	Key   string
	Value Value
}

// Constructors of the values llama.cpp reads.
func U32(v uint32) Value       { return Value{Type: TypeUint32, V: v} }
func I32(v int32) Value        { return Value{Type: TypeInt32, V: v} }
func F32(v float32) Value      { return Value{Type: TypeFloat32, V: v} }
func Bool(v bool) Value        { return Value{Type: TypeBool, V: v} }
func String(v string) Value    { return Value{Type: TypeString, V: v} }
func Strings(v []string) Value { return Value{Type: TypeArray, Elem: TypeString, V: v} }
func F32s(v []float32) Value   { return Value{Type: TypeArray, Elem: TypeFloat32, V: v} }
func I32s(v []int32) Value     { return Value{Type: TypeArray, Elem: TypeInt32, V: v} }

// TypeName is the value's type as an error message shows it.
func (v Value) TypeName() string {
	if v.Type == TypeArray {
		return "array of " + v.Elem.String()
	}
	return v.Type.String()
}

// Type is a tensor's ggml type.
type Type uint32

// The ggml types zhllama writes and reads.
const (
	F32Type  Type = 0
	F16Type  Type = 1
	Q4_0Type Type = 2
	Q8_0Type Type = 8
	BF16Type Type = 30
)

// typeInfo is a ggml type's block: values and bytes.
type typeInfo struct {
	name         string
	block, bytes int
}

// types lists the ggml types whose sizes the reader knows, so that it can
// read the metadata and layout of any common file; only F32, F16, BF16,
// Q8_0 and Q4_0 convert to float32.
var types = map[Type]typeInfo{
	0: {"F32", 1, 4}, 1: {"F16", 1, 2}, 2: {"Q4_0", 32, 18}, 3: {"Q4_1", 32, 20},
	6: {"Q5_0", 32, 22}, 7: {"Q5_1", 32, 24}, 8: {"Q8_0", 32, 34}, 9: {"Q8_1", 32, 36},
	10: {"Q2_K", 256, 84}, 11: {"Q3_K", 256, 110}, 12: {"Q4_K", 256, 144}, 13: {"Q5_K", 256, 176},
	14: {"Q6_K", 256, 210}, 15: {"Q8_K", 256, 292}, 24: {"I8", 1, 1}, 25: {"I16", 1, 2},
	26: {"I32", 1, 4}, 27: {"I64", 1, 8}, 28: {"F64", 1, 8}, 30: {"BF16", 1, 2},
	34: {"TQ1_0", 256, 54}, 35: {"TQ2_0", 256, 66},
}

func (t Type) String() string {
	if ti, ok := types[t]; ok {
		return ti.name
	}
	return fmt.Sprintf("type %d", uint32(t))
}

// RowBytes is the size of n values of type t, or an error when n is not a
// whole number of t's blocks or t is unknown.
func (t Type) RowBytes(n uint64) (uint64, error) {
	ti, ok := types[t]
	if !ok {
		return 0, fmt.Errorf("unknown ggml type %d", uint32(t))
	}
	if n%uint64(ti.block) != 0 {
		return 0, fmt.Errorf("a row of %d values is not a whole number of %s blocks of %d", n, ti.name, ti.block)
	}
	return n / uint64(ti.block) * uint64(ti.bytes), nil
}

// Tensor is a tensor's info and, in a file read, its bytes.
type Tensor struct {
	Name string
	Type Type
	// Ne are the dimensions in ggml's order, the fastest first: a Hugging
	// Face weight [out × in] has Ne [in, out].
	Ne     []uint64
	Offset uint64 // from the start of the data section
	Data   []byte // aliases the mapped file
}

// Elements is the number of values.
func (t *Tensor) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Ne {
		n *= d
	}
	return n
}

// nbytes is the data size of a tensor of type typ and dims ne.
func nbytes(typ Type, ne []uint64) (uint64, error) {
	if len(ne) == 0 {
		return 0, fmt.Errorf("no dimensions")
	}
	n, err := typ.RowBytes(ne[0])
	if err != nil {
		return 0, err
	}
	for _, d := range ne[1:] {
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("dimensions %v too large", ne)
		}
		n *= d
	}
	return n, nil
}

// File is a GGUF file read.
type File struct {
	Path      string
	Version   uint32
	KVs       []KV // in file order
	Tensors   []Tensor
	Alignment int
	// DataOffset is where the tensor data starts in the file.
	DataOffset int64

	keys   map[string]int
	names  map[string]int
	mapped []byte
}

// Open maps a GGUF file and parses it; errors name the file.
func Open(path string) (*File, error) {
	f, b, err := mmap.Open(path, Parse)
	if err != nil {
		return nil, err
	}
	f.Path, f.mapped = path, b
	return f, nil
}

// Close unmaps the file; its tensors' data must not be used afterwards.
func (f *File) Close() error {
	err := mmap.Unmap(f.mapped)
	f.mapped = nil
	return err
}

// reader decodes the header from b, failing (not panicking) past its end.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *reader) take(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)-r.off) {
		r.fail("truncated: %s needs %d bytes at offset %d, the file has %d", what, n, r.off, len(r.b))
		return nil
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *reader) u32(what string) uint32 {
	if s := r.take(4, what); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if s := r.take(8, what); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

func (r *reader) str(what string) string { return string(r.take(r.u64(what), what)) }

// left is the number of unread bytes.
func (r *reader) left() uint64 { return uint64(len(r.b) - r.off) }

// scalar decodes one value of a fixed-size type or a string: an array of
// one, so that each type is decoded in one place.
func (r *reader) scalar(t ValueType, what string) any {
	if t == TypeString {
		return r.str(what)
	}
	a := r.array(t, 1, what, 0)
	if r.err != nil {
		return nil
	}
	return reflect.ValueOf(a).Index(0).Interface()
}

// maxDepth bounds arrays of arrays, so that hostile nesting cannot exhaust
// the stack.
const maxDepth = 8

func (r *reader) value(t ValueType, what string, depth int) Value {
	v := Value{Type: t}
	switch {
	case t == TypeArray:
		if depth >= maxDepth {
			r.fail("%s: arrays nested deeper than %d", what, maxDepth)
			return v
		}
		v.Elem = ValueType(r.u32(what))
		n := r.u64(what)
		if r.err != nil {
			return v
		}
		// Each element takes at least one byte (a string eight): a count
		// past the bytes left is a damaged file, not an allocation to try.
		minSize := uint64(v.Elem.size())
		if v.Elem == TypeString || v.Elem == TypeArray {
			minSize = 8
		}
		if minSize == 0 {
			r.fail("%s: unknown array element type %d", what, uint32(v.Elem))
			return v
		}
		if n > r.left()/minSize {
			r.fail("truncated: %s: an array of %d %s values does not fit the %d bytes left", what, n, v.Elem, r.left())
			return v
		}
		v.V = r.array(v.Elem, int(n), what, depth)
	case t.size() > 0 || t == TypeString:
		v.V = r.scalar(t, what)
	default:
		r.fail("%s: unknown value type %d", what, uint32(t))
	}
	return v
}

func (r *reader) array(t ValueType, n int, what string, depth int) any {
	switch t {
	case TypeArray:
		out := make([]Value, n)
		for i := range out {
			out[i] = r.value(TypeArray, what, depth+1)
		}
		return out
	case TypeString:
		out := make([]string, n)
		for i := range out {
			out[i] = r.str(what)
		}
		return out
	}
	raw := r.take(uint64(n*t.size()), what)
	if raw == nil {
		return nil
	}
	switch t {
	case TypeUint8:
		return append([]uint8(nil), raw...)
	case TypeInt8:
		return fill(n, func(i int) int8 { return int8(raw[i]) })
	case TypeBool:
		for i, c := range raw {
			if c > 1 {
				r.fail("%s: bool element %d is %d, neither 0 nor 1", what, i, c)
			}
		}
		return fill(n, func(i int) bool { return raw[i] == 1 })
	case TypeUint16:
		return fill(n, func(i int) uint16 { return binary.LittleEndian.Uint16(raw[2*i:]) })
	case TypeInt16:
		return fill(n, func(i int) int16 { return int16(binary.LittleEndian.Uint16(raw[2*i:])) })
	case TypeUint32:
		return fill(n, func(i int) uint32 { return binary.LittleEndian.Uint32(raw[4*i:]) })
	case TypeInt32:
		return fill(n, func(i int) int32 { return int32(binary.LittleEndian.Uint32(raw[4*i:])) })
	case TypeFloat32:
		return fill(n, func(i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])) })
	case TypeUint64:
		return fill(n, func(i int) uint64 { return binary.LittleEndian.Uint64(raw[8*i:]) })
	case TypeInt64:
		return fill(n, func(i int) int64 { return int64(binary.LittleEndian.Uint64(raw[8*i:])) })
	case TypeFloat64:
		return fill(n, func(i int) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])) })
	}
	return nil
}

func fill[T any](n int, at func(i int) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = at(i)
	}
	return out
}

// Parse reads a GGUF file held in memory; tensor data aliases b. It
// refuses what llama.cpp's loader refuses: a wrong magic or version,
// empty or repeated keys, a general.alignment that is not a u32 power of
// two, repeated or over-long tensor names, more than four dimensions,
// unknown tensor types, rows that are not whole blocks, offsets that are
// not contiguous in tensor-info order, and data past the end of the file.
func Parse(b []byte) (*File, error) {
	r := &reader{b: b}
	if m := r.u32("the magic number"); r.err == nil && m != Magic {
		return nil, fmt.Errorf("not a GGUF file: it starts with %q, not \"GGUF\"", b[:4])
	}
	f := &File{Version: r.u32("the version"), keys: map[string]int{}, names: map[string]int{}, Alignment: DefaultAlignment}
	if r.err == nil && f.Version != 2 && f.Version != 3 {
		return nil, fmt.Errorf("GGUF version %d: zhllama reads versions 2 and 3", f.Version)
	}
	nt, nkv := r.u64("the tensor count"), r.u64("the key-value count")
	if r.err != nil {
		return nil, r.err
	}
	// A key-value pair takes at least 13 bytes and a tensor info 24.
	if nkv > r.left()/13 || nt > r.left()/24 {
		return nil, fmt.Errorf("truncated: %d key-value pairs and %d tensors do not fit the %d-byte file", nkv, nt, len(b))
	}
	for i := uint64(0); i < nkv && r.err == nil; i++ {
		key := r.str(fmt.Sprintf("key %d", i))
		if r.err != nil {
			break
		}
		if key == "" {
			return nil, fmt.Errorf("key-value pair %d has an empty key", i)
		}
		if _, dup := f.keys[key]; dup {
			return nil, fmt.Errorf("key %s appears twice", key)
		}
		v := r.value(ValueType(r.u32("key "+key)), "key "+key, 0)
		f.keys[key] = len(f.KVs)
		f.KVs = append(f.KVs, KV{key, v})
	}
	if r.err != nil {
		return nil, r.err
	}
	if v, ok := f.Get("general.alignment"); ok {
		a, isU32 := v.V.(uint32)
		if v.Type != TypeUint32 || !isU32 || a == 0 || a&(a-1) != 0 || a > 1<<30 {
			return nil, fmt.Errorf("key general.alignment must be a u32 power of two, not %s %v", v.TypeName(), v.V)
		}
		f.Alignment = int(a)
	}
	var want uint64 // the next tensor's offset
	var sizes []uint64
	for i := uint64(0); i < nt && r.err == nil; i++ {
		t := Tensor{Name: r.str(fmt.Sprintf("tensor %d's name", i))}
		what := "tensor " + t.Name
		nd := r.u32(what)
		if r.err != nil {
			break
		}
		if len(t.Name) >= maxName {
			return nil, fmt.Errorf("tensor %q: name of %d bytes, llama.cpp takes fewer than %d", t.Name, len(t.Name), maxName)
		}
		if _, dup := f.names[t.Name]; dup {
			return nil, fmt.Errorf("tensor %s appears twice", t.Name)
		}
		if nd == 0 || nd > 4 {
			return nil, fmt.Errorf("%s has %d dimensions; GGUF allows 1 to 4", what, nd)
		}
		t.Ne = make([]uint64, nd)
		for d := range t.Ne {
			if t.Ne[d] = r.u64(what); t.Ne[d] > 1<<62 {
				return nil, fmt.Errorf("%s: dimension %d is %d", what, d, t.Ne[d])
			}
		}
		t.Type = Type(r.u32(what))
		t.Offset = r.u64(what)
		if r.err != nil {
			break
		}
		if _, ok := types[t.Type]; !ok {
			return nil, fmt.Errorf("%s has unknown type %d", what, uint32(t.Type))
		}
		n, err := nbytes(t.Type, t.Ne)
		if err != nil {
			return nil, fmt.Errorf("%s (%s, ne %v): %w", what, t.Type, t.Ne, err)
		}
		if t.Offset != want {
			return nil, fmt.Errorf("%s has offset %d, expected %d (tensor data must follow the tensor infos' order, each padded to %d)", what, t.Offset, want, f.Alignment)
		}
		want += pad(n, f.Alignment)
		if want > uint64(len(b)) {
			return nil, fmt.Errorf("truncated: %s ends past the end of the %d-byte file", what, len(b))
		}
		sizes = append(sizes, n)
		f.names[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}
	if r.err != nil {
		return nil, r.err
	}
	f.DataOffset = int64(pad(uint64(r.off), f.Alignment))
	for i := range f.Tensors {
		t := &f.Tensors[i]
		n := sizes[i]
		start := uint64(f.DataOffset) + t.Offset
		if start > uint64(len(b)) || n > uint64(len(b))-start {
			return nil, fmt.Errorf("truncated: tensor %s's data (%d bytes at %d) ends past the end of the %d-byte file", t.Name, n, start, len(b))
		}
		t.Data = b[start : start+n : start+n]
	}
	return f, nil
}

// pad rounds n up to a multiple of a.
func pad(n uint64, a int) uint64 { return (n + uint64(a) - 1) / uint64(a) * uint64(a) }

// Get returns the value of key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.keys[key]
	if !ok {
		return Value{}, false
	}
	return f.KVs[i].Value, true
}

// Tensor returns the tensor called name.
func (f *File) Tensor(name string) (*Tensor, bool) {
	i, ok := f.names[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// where prefixes errors with the file's path.
func (f *File) where() string {
	if f.Path == "" {
		return "GGUF"
	}
	return f.Path
}

// lookup returns key's value, checking its type: a missing key or another
// type is an error that names the key.
func lookup[T any](f *File, key string, t ValueType, elem ValueType) (T, error) {
	var zero T
	v, ok := f.Get(key)
	if !ok {
		return zero, fmt.Errorf("%s: key %s is missing", f.where(), key)
	}
	want := Value{Type: t, Elem: elem}
	x, ok := v.V.(T)
	if !ok || v.Type != t || (t == TypeArray && v.Elem != elem) {
		return zero, fmt.Errorf("%s: key %s is %s, llama.cpp expects %s", f.where(), key, v.TypeName(), want.TypeName())
	}
	return x, nil
}

// The typed getters: a missing key or a value of another type is an
// error naming the key.
func (f *File) U32(key string) (uint32, error) { return lookup[uint32](f, key, TypeUint32, 0) }
func (f *File) F32(key string) (float32, error) {
	return lookup[float32](f, key, TypeFloat32, 0)
}
func (f *File) Bool(key string) (bool, error)     { return lookup[bool](f, key, TypeBool, 0) }
func (f *File) String(key string) (string, error) { return lookup[string](f, key, TypeString, 0) }
func (f *File) Strings(key string) ([]string, error) {
	return lookup[[]string](f, key, TypeArray, TypeString)
}
func (f *File) F32s(key string) ([]float32, error) {
	return lookup[[]float32](f, key, TypeArray, TypeFloat32)
}
func (f *File) I32s(key string) ([]int32, error) {
	return lookup[[]int32](f, key, TypeArray, TypeInt32)
}

// Has reports whether key is present.
func (f *File) Has(key string) bool { _, ok := f.keys[key]; return ok }
