// Package safetensors reads and writes the safetensors format of Hugging
// Face checkpoints: an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, then the raw data.
// Files are read through mmap and written as a stream; sharded checkpoints
// are tied together by model.safetensors.index.json.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"syscall"
	"unsafe"

	"zhllama/internal/atomicfile"
	"zhllama/internal/half"
	"zhllama/internal/mmap"
)

// Tensor is one tensor of a file; Data aliases the file's memory.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte

	mapped bool // Data lies in a read-only file mapping
}

// Elements is the number of elements.
func (t *Tensor) Elements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Float32 converts an F32, F16 or BF16 tensor to float32, into dst when it
// has room.
func (t *Tensor) Float32(dst []float32) ([]float32, error) {
	n := t.Elements()
	if cap(dst) < n {
		if err := checkFloat(t.DType); err != nil {
			return nil, fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		dst = make([]float32, n)
	}
	dst = dst[:n]
	if err := t.Float32At(dst, 0); err != nil {
		return nil, err
	}
	return dst, nil
}

// Float32At converts elements off..off+len(dst) of an F32, F16 or BF16
// tensor into dst, so that pieces of one tensor can be converted side by
// side.
func (t *Tensor) Float32At(dst []float32, off int) error {
	if err := checkFloat(t.DType); err != nil {
		return fmt.Errorf("tensor %s: %w", t.Name, err)
	}
	if n := t.Elements(); off < 0 || off+len(dst) > n {
		return fmt.Errorf("tensor %s: elements %d..%d asked of %d", t.Name, off, off+len(dst), n)
	}
	switch t.DType {
	case F32:
		b := t.Data[4*off:]
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case F16:
		half.WidenF16(dst, t.Data[2*off:])
	case BF16:
		half.WidenBF16(dst, t.Data[2*off:])
	}
	return nil
}

// File is an open safetensors file.
type File struct {
	Path     string
	Metadata map[string]string
	Tensors  []Tensor // in file order
	byName   map[string]int
	mapped   []byte
}

// maxHeader bounds the JSON header, as the reference implementation does.
const maxHeader = 100 << 20

// Parse reads a safetensors file held in memory; tensors alias b. It checks
// what the reference implementation checks: a well-formed header, known
// dtypes, byte ranges that match the shapes, lie in the file, do not overlap
// and leave no gaps.
func Parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%d bytes: too short for a safetensors header", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > maxHeader || n > uint64(len(b)-8) {
		return nil, fmt.Errorf("header length %d does not fit the %d-byte file (truncated, or not safetensors)", n, len(b))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &raw); err != nil {
		return nil, fmt.Errorf("header is not a JSON object: %v", err)
	}
	data := b[8+n:]
	f := &File{byName: map[string]int{}}
	type span struct {
		begin, end uint64
		t          Tensor
	}
	var spans []span
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		var h struct {
			DType   DType    `json:"dtype"`
			Shape   []int64  `json:"shape"`
			Offsets []uint64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &h); err != nil {
			return nil, fmt.Errorf("tensor %q: %v", name, err)
		}
		if h.DType.Size() == 0 {
			return nil, fmt.Errorf("tensor %q: unknown dtype %q", name, h.DType)
		}
		if len(h.Offsets) != 2 || h.Offsets[0] > h.Offsets[1] || h.Offsets[1] > uint64(len(data)) {
			return nil, fmt.Errorf("tensor %q: data_offsets %v outside the %d data bytes", name, h.Offsets, len(data))
		}
		elems := uint64(1)
		shape := make([]int, len(h.Shape))
		for i, d := range h.Shape {
			if d < 0 || d > 1<<40 {
				return nil, fmt.Errorf("tensor %q: bad dimension %d", name, d)
			}
			shape[i] = int(d)
			elems *= uint64(d)
			if elems > 1<<46 {
				return nil, fmt.Errorf("tensor %q: shape %v too large", name, h.Shape)
			}
		}
		if want := elems * uint64(h.DType.Size()); want != h.Offsets[1]-h.Offsets[0] {
			return nil, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, data_offsets give %d", name, h.Shape, h.DType, want, h.Offsets[1]-h.Offsets[0])
		}
		t := Tensor{Name: name, DType: h.DType, Shape: shape, Data: data[h.Offsets[0]:h.Offsets[1]:h.Offsets[1]]}
		spans = append(spans, span{h.Offsets[0], h.Offsets[1], t})
	}
	sort.Slice(spans, func(i, j int) bool {
		return spans[i].begin < spans[j].begin || spans[i].begin == spans[j].begin && spans[i].t.Name < spans[j].t.Name
	})
	end := uint64(0)
	for _, s := range spans {
		if s.begin != end {
			return nil, fmt.Errorf("tensor %q starts at byte %d of the data, expected %d: tensors overlap or leave a gap", s.t.Name, s.begin, end)
		}
		end = s.end
		f.byName[s.t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, s.t)
	}
	if end != uint64(len(data)) {
		return nil, fmt.Errorf("tensors cover %d of the %d data bytes", end, len(data))
	}
	return f, nil
}

// Open maps a safetensors file into memory and parses it.
func Open(path string) (*File, error) {
	f, b, err := mmap.Open(path, Parse)
	if err != nil {
		return nil, err
	}
	f.Path, f.mapped = path, b
	for i := range f.Tensors {
		f.Tensors[i].mapped = true
	}
	return f, nil
}

// Names lists the file's tensors in file order.
func (f *File) Names() []string {
	out := make([]string, len(f.Tensors))
	for i := range f.Tensors {
		out[i] = f.Tensors[i].Name
	}
	return out
}

// Tensor returns the named tensor.
func (f *File) Tensor(name string) (*Tensor, bool) {
	i, ok := f.byName[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// NonFinite counts the NaN and infinite values of a float tensor, read
// from the bytes (no conversion), and gives the index of the first (-1
// when there is none). Other types have none.
func (t *Tensor) NonFinite() (count, first int) {
	first = -1
	var size int
	var exp uint64 // the exponent bits of one value
	switch t.DType {
	case F32:
		size, exp = 4, 0x7f800000
	case F16:
		size, exp = 2, 0x7c00
	case BF16:
		size, exp = 2, 0x7f80
	default:
		return 0, -1
	}
	// A value is not finite when its exponent bits are all set. Words of
	// eight bytes are tested at once (a lane whose exponent bits are all
	// set becomes zero after the XOR; the zero-lane test can only err
	// towards a recheck), the values of a flagged word one by one.
	var mask, low, high uint64
	for s := 0; s < 8; s += size {
		mask |= exp << (8 * s)
		low |= 1 << (8 * s)
		high |= 1 << (8*(s+size) - 1)
	}
	bad := func(i int) {
		v := uint64(t.Data[i]) | uint64(t.Data[i+1])<<8
		if size == 4 {
			v |= uint64(t.Data[i+2])<<16 | uint64(t.Data[i+3])<<24
		}
		if v&exp == exp {
			if count == 0 {
				first = i / size
			}
			count++
		}
	}
	i := 0
	for ; i+8 <= len(t.Data); i += 8 {
		y := binary.LittleEndian.Uint64(t.Data[i:])&mask ^ mask
		if (y-low)&^y&high != 0 {
			for j := i; j < i+8; j += size {
				bad(j)
			}
		}
	}
	for ; i+size <= len(t.Data); i += size {
		bad(i)
	}
	return count, first
}

// Release tells the kernel a tensor's pages will not be read again: after
// converting a tensor, so that loading a big checkpoint does not keep the
// whole file resident. Its data must not be used afterwards.
func (t *Tensor) Release() {
	if len(t.Data) == 0 || !t.mapped {
		return // memory of the process's own: nothing to give back
	}
	// madvise wants page-aligned addresses: release the whole pages inside.
	page := os.Getpagesize()
	skip := (page - int(uintptr(unsafe.Pointer(&t.Data[0]))%uintptr(page))) % page
	if n := (len(t.Data) - skip) &^ (page - 1); skip < len(t.Data) && n > 0 {
		syscall.Madvise(t.Data[skip:skip+n], syscall.MADV_DONTNEED)
	}
}

// Close unmaps the file; its tensors' data must not be used afterwards.
func (f *File) Close() error {
	err := mmap.Unmap(f.mapped)
	f.mapped = nil
	return err
}

// Source is a tensor to write: its bytes come from Write, called once.
type Source struct {
	Name  string
	DType DType
	Shape []int
	Write func(w io.Writer) error
}

// Bytes returns a Source of ready bytes.
func Bytes(name string, dtype DType, shape []int, data []byte) Source {
	return Source{Name: name, DType: dtype, Shape: shape, Write: func(w io.Writer) error { _, err := w.Write(data); return err }}
}

// Write streams tensors to path in the given order, through a temporary
// file renamed at the end. The header is padded to 8 bytes, as the
// reference writer does.
func Write(path string, metadata map[string]string, tensors []Source) error {
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	sizes := make([]int64, len(tensors))
	var off int64
	seen := map[string]bool{}
	for i, t := range tensors {
		if t.DType.Size() == 0 {
			return fmt.Errorf("tensor %s: unknown dtype %q", t.Name, t.DType)
		}
		if seen[t.Name] || t.Name == "__metadata__" {
			return fmt.Errorf("tensor name %q used twice", t.Name)
		}
		seen[t.Name] = true
		n := int64(t.DType.Size())
		for _, d := range t.Shape {
			n *= int64(d)
		}
		sizes[i] = n
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = map[string]any{"dtype": t.DType, "shape": shape, "data_offsets": []int64{off, off + n}}
		off += n
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	out, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	binary.Write(out, binary.LittleEndian, uint64(len(hb)))
	out.Write(hb)
	for i, t := range tensors {
		if err := out.WriteExactly(fmt.Sprintf("tensor %s (%s %v)", t.Name, t.DType, t.Shape), sizes[i], t.Write); err != nil {
			out.Abort()
			return err
		}
	}
	return out.Commit()
}

// FromFloat32 is a Source that writes float32 data as dtype (F32, F16 or
// BF16), converting as it streams.
func FromFloat32(name string, dtype DType, shape []int, data []float32) Source {
	return Source{Name: name, DType: dtype, Shape: shape, Write: func(w io.Writer) error {
		buf := make([]byte, 0, 1<<16)
		for i, v := range data {
			switch dtype {
			case F16:
				buf = binary.LittleEndian.AppendUint16(buf, half.ToF16(v))
			case BF16:
				buf = binary.LittleEndian.AppendUint16(buf, half.ToBF16(v))
			default:
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			}
			if len(buf) >= 1<<16-8 || i == len(data)-1 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		return nil
	}}
}
