package safetensors

import (
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"zhllama/internal/half"
)

func f32Bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func u16Bytes(conv func(float32) uint16, v ...float32) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], conv(x))
	}
	return b
}

func TestWriteThenRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.safetensors")
	vals := []float32{1, -2.5, 3.140625, 0, 65504, 1e-8}
	srcs := []Source{
		Bytes("a.weight", F32, []int{2, 3}, f32Bytes(vals...)),
		Bytes("b.f16", F16, []int{6}, u16Bytes(half.ToF16, vals...)),
		Bytes("c.bf16", BF16, []int{3, 2}, u16Bytes(half.ToBF16, vals...)),
		Bytes("empty", F32, []int{0, 4}, nil),
		Bytes("scalar", I64, nil, make([]byte, 8)),
	}
	if err := Write(path, map[string]string{"format": "pt"}, srcs); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if n := binary.LittleEndian.Uint64(raw); (8+n)%8 != 0 {
		t.Errorf("header of %d bytes is not padded to 8", n)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata["format"] != "pt" || len(f.Tensors) != 5 || f.Tensors[0].Name != "a.weight" {
		t.Fatalf("metadata %v, tensors %d", f.Metadata, len(f.Tensors))
	}
	for name, tol := range map[string]float32{"a.weight": 0, "b.f16": 1e-3, "c.bf16": 1e-2} {
		tn, ok := f.Tensor(name)
		if !ok {
			t.Fatalf("no %s", name)
		}
		got, err := tn.Float32(nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if d := float32(math.Abs(float64(got[i] - v))); d > tol*float32(math.Max(1, math.Abs(float64(v)))) {
				t.Errorf("%s[%d] = %g, want %g", name, i, got[i], v)
			}
		}
	}
	if tn, _ := f.Tensor("scalar"); len(tn.Shape) != 0 || tn.Elements() != 1 {
		t.Errorf("scalar shape %v", tn.Shape)
	}
	if tn, _ := f.Tensor("scalar"); func() error { _, err := tn.Float32(nil); return err }() == nil {
		t.Error("I64 converted to float32")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	bad := []Source{{Name: "x", DType: F32, Shape: []int{4}, Write: func(w io.Writer) error { _, err := w.Write(make([]byte, 12)); return err }}}
	if err := Write(filepath.Join(t.TempDir(), "bad.safetensors"), nil, bad); err == nil || !strings.Contains(err.Error(), "needs 16") {
		t.Errorf("short tensor: %v", err)
	}
}

// TestFloat32At converts pieces of each float dtype and checks them
// against the whole conversion; a range past the end and a non-float dtype
// are errors.
func TestFloat32At(t *testing.T) {
	vals := []float32{1, -2.5, 3.140625, 0, 65504, 1e-8, 7, -0.125}
	for _, tn := range []Tensor{
		{Name: "f32", DType: F32, Shape: []int{2, 4}, Data: f32Bytes(vals...)},
		{Name: "f16", DType: F16, Shape: []int{8}, Data: u16Bytes(half.ToF16, vals...)},
		{Name: "bf16", DType: BF16, Shape: []int{4, 2}, Data: u16Bytes(half.ToBF16, vals...)},
	} {
		whole, err := tn.Float32(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range [][2]int{{0, 8}, {3, 2}, {5, 3}, {8, 0}} {
			got := make([]float32, r[1])
			if err := tn.Float32At(got, r[0]); err != nil {
				t.Fatalf("%s at %d+%d: %v", tn.Name, r[0], r[1], err)
			}
			for i, v := range got {
				if math.Float32bits(v) != math.Float32bits(whole[r[0]+i]) {
					t.Errorf("%s[%d] = %g, want %g", tn.Name, r[0]+i, v, whole[r[0]+i])
				}
			}
		}
		if err := tn.Float32At(make([]float32, 3), 6); err == nil || !strings.Contains(err.Error(), "elements 6..9 asked of 8") {
			t.Errorf("%s: a range past the end: %v", tn.Name, err)
		}
	}
	i64 := Tensor{Name: "ids", DType: I64, Shape: []int{1}, Data: make([]byte, 8)}
	if err := i64.Float32At(make([]float32, 1), 0); err == nil || !strings.Contains(err.Error(), "not a float type") {
		t.Errorf("I64: %v", err)
	}
}

func header(h string, n int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	return append(append(b, h...), make([]byte, n)...)
}

func TestParseRejectsBadFiles(t *testing.T) {
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"short":    {[]byte{1, 2}, "too short"},
		"huge":     {binary.LittleEndian.AppendUint64(nil, 1<<40), "does not fit"},
		"not json": {header("{nope", 0), "not a JSON object"},
		"dtype":    {header(`{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}`, 1), "unknown dtype"},
		"size":     {header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), "needs 8 bytes"},
		"outside":  {header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 2), "outside"},
		"overlap":  {header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}`, 6), "overlap"},
		"gap":      {header(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 2), "cover 1 of the 2"},
		"negative": {header(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`, 0), "bad dimension"},
		"metadata": {header(`{"__metadata__":{"a":1}}`, 0), "__metadata__"},
	} {
		if _, err := Parse(c.data); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.safetensors")); err == nil {
		t.Error("opened a missing file")
	}
}

func TestShardedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	var srcs []Source
	for i := 0; i < 5; i++ {
		srcs = append(srcs, Bytes("layers."+string(rune('0'+i))+".weight", F32, []int{8, 8}, f32Bytes(make([]float32, 64)...)))
	}
	if err := WriteDir(dir, map[string]string{"format": "pt"}, srcs, 600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "model-00001-of-00003.safetensors")); err != nil {
		t.Fatal(err)
	}
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Names()) != 5 {
		t.Errorf("names %v", c.Names())
	}
	if _, err := c.Expect("layers.3.weight", 8, 8); err != nil {
		t.Error(err)
	}
	if _, err := c.Expect("layers.3.weight", 16, 8); err == nil || !strings.Contains(err.Error(), "has shape [8 8], expected [16 8]") {
		t.Errorf("shape mismatch: %v", err)
	}
	if _, err := c.Tensor("nope"); err == nil || !strings.Contains(err.Error(), "no tensor nope") {
		t.Errorf("missing tensor: %v", err)
	}
	// One file when it fits.
	dir2 := t.TempDir()
	if err := WriteDir(dir2, nil, srcs, 0); err != nil {
		t.Fatal(err)
	}
	if c2, err := OpenDir(dir2); err != nil || len(c2.Names()) != 5 {
		t.Errorf("single file: %v", err)
	}
	if _, err := OpenDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("empty dir: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4))
	f.Add(header(`{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2,1],"data_offsets":[0,4]}}`, 4))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		for i := range file.Tensors {
			tn := &file.Tensors[i]
			if len(tn.Data) != tn.Elements()*tn.DType.Size() {
				t.Fatalf("tensor %s: %d bytes for %v", tn.Name, len(tn.Data), tn.Shape)
			}
			if checkFloat(tn.DType) == nil {
				if _, err := tn.Float32(nil); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// Release drops a mapped tensor's pages (rereading brings them back) and
// leaves memory that is not a file mapping alone.
func TestRelease(t *testing.T) {
	vals := make([]float32, 5000)
	for i := range vals {
		vals[i] = float32(i)
	}
	path := filepath.Join(t.TempDir(), "r.safetensors")
	if err := Write(path, nil, []Source{FromFloat32("x", F32, []int{5000}, vals)}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, _ := f.Tensor("x")
	x.Release()
	got, _ := x.Float32(nil)
	for i, v := range got {
		if v != vals[i] {
			t.Fatalf("after Release: [%d] = %g", i, v)
		}
	}
	b, _ := os.ReadFile(path)
	g, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	y, _ := g.Tensor("x")
	y.Release()
	if got, _ := y.Float32(nil); got[4999] != 4999 {
		t.Errorf("Release changed memory of the process's own: %g", got[4999])
	}
}

// NonFinite's word-at-a-time scan finds what a value-by-value one finds:
// every dtype, non-finite values at each place in a word and in the tail,
// the largest finite values and signs beside them.
func TestNonFinite(t *testing.T) {
	for _, c := range []struct {
		dt       DType
		size     int
		exp, big uint32 // exponent bits; the largest finite value
	}{{F32, 4, 0x7f800000, 0x7f7fffff}, {F16, 2, 0x7c00, 0x7bff}, {BF16, 2, 0x7f80, 0x7f7f}} {
		for n := range 40 {
			data := make([]byte, n*c.size)
			put := func(i int, v uint32) {
				for b := range c.size {
					data[i*c.size+b] = byte(v >> (8 * b))
				}
			}
			wantCount, wantFirst := 0, -1
			for i := range n {
				switch v := uint32(i*7+n) % 5; {
				case v == 0 && i%3 != 0: // NaN or ±Inf, with or without a sign
					put(i, c.exp|uint32(i%2)<<(8*c.size-1)|uint32(i%4/2))
					if wantCount == 0 {
						wantFirst = i
					}
					wantCount++
				case v == 1:
					put(i, c.big|1<<(8*c.size-1))
				default:
					put(i, c.big)
				}
			}
			got, first := (&Tensor{DType: c.dt, Data: data}).NonFinite()
			if got != wantCount || first != wantFirst {
				t.Fatalf("%v, %d values: %d non-finite, the first %d; want %d, %d", c.dt, n, got, first, wantCount, wantFirst)
			}
		}
	}
}
