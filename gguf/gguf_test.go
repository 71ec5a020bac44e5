package gguf

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zhllama/internal/testenv"
)

// TestMain lists the tests skipped for want of shared data or a reference tool.
func TestMain(m *testing.M) { testenv.Main(m) }

// sources are a file's tensors as they are, for writing them again.
func sources(f *File) []Source {
	var out []Source
	for _, t := range f.Tensors {
		out = append(out, Raw(t.Name, t.Type, t.Ne, t.Data))
	}
	return out
}

// The reference file (written by llama.cpp's Python tools) read and written
// again is the same bytes: KV order and types, tensor infos, alignment and
// padding all as llama.cpp lays them out.
func TestGoldenRoundTrip(t *testing.T) {
	path := testenv.Path(t, "gguf/llama-2-tiny-random.gguf")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.DataOffset != 724416 || len(f.Tensors) != 12 || len(f.KVs) != 18 {
		t.Errorf("data offset %d, %d tensors, %d KVs; want 724416, 12, 18", f.DataOffset, len(f.Tensors), len(f.KVs))
	}
	if n, err := f.U32("llama.block_count"); err != nil || n != 1 {
		t.Errorf("llama.block_count: %d, %v", n, err)
	}
	if _, err := f.F32("llama.block_count"); err == nil || !strings.Contains(err.Error(), "llama.block_count is u32") {
		t.Errorf("a wrongly typed read: %v", err)
	}
	out := filepath.Join(t.TempDir(), "copy.gguf")
	if err := Write(out, f.KVs, sources(f), nil); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(path)
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("written %d bytes, reference %d; first difference at byte %d", len(got), len(want), i)
	}
}

// A file of every value type and tensor type written, read back, and
// written again is the same, with alignment 64.
func TestWriteReadEveryType(t *testing.T) {
	kvs := []KV{
		{"general.alignment", U32(64)},
		{"a.u8", Value{Type: TypeUint8, V: uint8(7)}}, {"a.i8", Value{Type: TypeInt8, V: int8(-7)}},
		{"a.u16", Value{Type: TypeUint16, V: uint16(700)}}, {"a.i16", Value{Type: TypeInt16, V: int16(-700)}},
		{"a.u32", U32(70000)}, {"a.i32", I32(-70000)}, {"a.f32", F32(1.5)}, {"a.bool", Bool(true)},
		{"a.str", String("你好")}, {"a.u64", Value{Type: TypeUint64, V: uint64(1 << 40)}},
		{"a.i64", Value{Type: TypeInt64, V: int64(-1 << 40)}}, {"a.f64", Value{Type: TypeFloat64, V: 2.25}},
		{"a.strs", Strings([]string{"x", "", "▁y"})}, {"a.f32s", F32s([]float32{1, -2})}, {"a.i32s", I32s([]int32{3})},
		{"a.nested", Value{Type: TypeArray, Elem: TypeArray, V: []Value{{Type: TypeArray, Elem: TypeUint8, V: []uint8{1, 2}}}}},
	}
	vals := make([]float32, 64*3)
	for i := range vals {
		vals[i] = float32(i%17) - 8.25
	}
	var srcs []Source
	for _, typ := range []Type{F32Type, F16Type, BF16Type, Q8_0Type, Q4_0Type} {
		srcs = append(srcs, Rows("t."+typ.String(), typ, 64, 3, func(r int, dst []float32) { copy(dst, vals[r*64:]) }))
	}
	srcs = append(srcs, Vector("v", []float32{1, 2, 3}))
	dir := t.TempDir()
	p1, p2 := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	if err := Write(p1, kvs, srcs, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Alignment != 64 || f.DataOffset%64 != 0 {
		t.Errorf("alignment %d, data offset %d", f.Alignment, f.DataOffset)
	}
	for i, kv := range kvs {
		if got := f.KVs[i]; got.Key != kv.Key || got.Value.Type != kv.Value.Type {
			t.Errorf("KV %d: %s %s, want %s %s", i, got.Key, got.Value.TypeName(), kv.Key, kv.Value.TypeName())
		}
	}
	if s, err := f.Strings("a.strs"); err != nil || len(s) != 3 || s[2] != "▁y" {
		t.Errorf("a.strs: %q %v", s, err)
	}
	for _, tn := range f.Tensors {
		got, err := tn.Float32(nil)
		if err != nil {
			t.Fatal(err)
		}
		if tn.Name == "v" {
			continue
		}
		// F16 and BF16 of these values are exact; the blocks are within
		// half a step of their scale (8.25/127), Q4_0 within a step (8.25/8:
		// its codes reach 7 steps above zero but 8 below).
		tol := map[Type]float64{Q8_0Type: 8.25 / 127 / 2 * 1.01, Q4_0Type: 8.25 / 8 * 1.01}[tn.Type]
		testenv.AssertClose(t, tn.Name, got, vals, tol/100, 100) // absolute: floor 100 > every value
	}
	if err := Write(p2, f.KVs, sources(f), nil); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(p1)
	b2, _ := os.ReadFile(p2)
	if !bytes.Equal(b1, b2) {
		t.Error("a file read and written again differs")
	}
}

// tinyFile is a small valid file for the bad-input tests.
func tinyFile(t testing.TB) []byte {
	p := filepath.Join(t.TempDir(), "t.gguf")
	err := Write(p, []KV{{"general.architecture", String("llama")}, {"x.n", U32(3)}},
		[]Source{Vector("a.weight", []float32{1, 2, 3}), Rows("b.weight", Q8_0Type, 32, 2, func(int, []float32) {})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	return b
}

// Damaged and hostile files are errors that say what is wrong, never a
// panic or a huge allocation.
func TestParseRejectsBadFiles(t *testing.T) {
	good := tinyFile(t)
	if _, err := Parse(good); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	// Offsets in good: header 24; key 1 at 24 ("general.architecture", 20
	// bytes); its value type at 52.
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"wrong magic", mod(func(b []byte) []byte { copy(b, "GGML"); return b }), "not a GGUF file"},
		{"version", mod(func(b []byte) []byte { b[4] = 9; return b }), "version 9"},
		{"truncated header", good[:60], "truncated"},
		{"truncated data", good[:len(good)-40], "truncated"},
		{"huge kv count", mod(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[16:], 1<<60); return b }), "do not fit"},
		{"unknown value type", mod(func(b []byte) []byte { b[52] = 99; return b }), "unknown value type"},
		{"unknown tensor type", mod(func(b []byte) []byte {
			i := bytes.Index(b, []byte("b.weight")) + 8 + 4 + 16
			binary.LittleEndian.PutUint32(b[i:], 77)
			return b
		}), "tensor b.weight has unknown type 77"},
		{"not contiguous", mod(func(b []byte) []byte {
			i := bytes.Index(b, []byte("b.weight")) + 8 + 4 + 16 + 4
			b[i] = 64
			return b
		}), "tensor b.weight has offset 64, expected 32"},
		{"partial block", mod(func(b []byte) []byte {
			i := bytes.Index(b, []byte("b.weight")) + 8 + 4
			b[i] = 31
			return b
		}), "not a whole number of Q8_0 blocks"},
	} {
		f, err := Parse(c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
		if f != nil {
			t.Errorf("%s: a file with the error", c.name)
		}
	}
	p := filepath.Join(t.TempDir(), "cut.gguf")
	os.WriteFile(p, good[:len(good)-40], 0o644)
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("Open names the file: %v", err)
	}
	f, _ := Parse(good)
	if _, err := f.U32("llama.block_count"); err == nil || !strings.Contains(err.Error(), "key llama.block_count is missing") {
		t.Errorf("missing key: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(tinyFile(f))
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	if b, err := os.ReadFile(filepath.Join("..", "..", "shared", "data", "gguf", "llama-2-tiny-random.gguf")); err == nil {
		f.Add(b[:4096]) // the header's start: the metadata, cut short
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		for i := range file.Tensors {
			tn := &file.Tensors[i]
			if n, _ := nbytes(tn.Type, tn.Ne); uint64(len(tn.Data)) != n {
				t.Fatalf("tensor %s: %d bytes for %v", tn.Name, len(tn.Data), tn.Ne)
			}
			if Convertible(tn.Type) && tn.Elements() < 1<<20 {
				if _, err := tn.Float32(nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Metadata and tensors that are not a model are errors too.
		if m, _, err := loadModel(file, true); err == nil {
			m.Close()
		}
		// What parses writes back.
		var srcs []Source
		for _, tn := range file.Tensors {
			srcs = append(srcs, Raw(tn.Name, tn.Type, tn.Ne, tn.Data))
		}
		p := filepath.Join(t.TempDir(), "f.gguf")
		if err := Write(p, file.KVs, srcs, nil); err != nil {
			t.Fatal(err)
		}
	})
}
