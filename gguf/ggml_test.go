package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/tensor"
)

// ggmlLibrary is llama.cpp's libggml-base.so as node-llama-cpp ships it.
func ggmlLibrary(t *testing.T) string {
	peers := testenv.NodePeers(t)
	libs, _ := filepath.Glob(filepath.Join(peers, "node_modules", "@node-llama-cpp", "linux-x64", "bins", "*", "libggml-base.so"))
	if len(libs) == 0 {
		testenv.Need(t, "libggml-base.so of @node-llama-cpp/linux-x64", "run npm ci in "+peers)
	}
	return libs[0]
}

// F16, BF16, Q8_0 and Q4_0 as zhllama writes them are byte for byte what
// ggml's reference conversions (quantize_row_q8_0_ref, ...) write, called
// through ctypes; and zhllama widens the blocks to ggml's exact floats.
func TestConversionsMatchGGML(t *testing.T) {
	lib := ggmlLibrary(t)
	python := testenv.Tool(t, "/usr/bin/python3", "python3")
	rng := rand.New(rand.NewPCG(9, 9))
	var x []float32
	for _, scale := range []float64{1e-6, 0.02, 1, 300, 7e4} { // 7e4 overflows half
		for range 32 * 8 {
			x = append(x, float32(rng.NormFloat64()*scale))
		}
	}
	// Blocks on the quantizers' rounding edges: with a maximum of 127
	// (Q8_0's d = 1) halves round away from zero; with −8 (Q4_0's d = 1)
	// codes truncate x+8.5 and clip at 15; an all-zero block; subnormals.
	edge := [][]float32{
		{127, 2.5, -2.5, 0.5, -0.5, 126.5, -126.5, 1.4999999},
		{-8, 0.5, -0.5, 6.5, 7.4, 7.6, 7.5, -7.5, 3.25},
		{},
		{1e-40, -1e-40, 3e-39, 6e-8, -6e-8, 65519, 65520, -65520},
	}
	for _, e := range edge {
		blk := make([]float32, 32)
		copy(blk, e)
		x = append(x, blk...)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "x.f32")
	testenv.WriteFile(t, in, AppendRow(nil, F32Type, x))
	if out, err := exec.Command(python, filepath.Join("testdata", "ggml_quant.py"), lib, in, filepath.Join(dir, "ggml")).CombinedOutput(); err != nil {
		t.Fatalf("ggml through ctypes: %v\n%s", err, out)
	}
	for _, typ := range []Type{F16Type, BF16Type, Q8_0Type, Q4_0Type} {
		want, err := os.ReadFile(filepath.Join(dir, "ggml."+map[Type]string{F16Type: "f16", BF16Type: "bf16", Q8_0Type: "q8_0", Q4_0Type: "q4_0"}[typ]))
		if err != nil {
			t.Fatal(err)
		}
		got := AppendRow(nil, typ, x)
		if !bytes.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Errorf("%s: %d bytes, ggml %d; first difference at byte %d", typ, len(got), len(want), i)
		}
		if typ != Q8_0Type && typ != Q4_0Type {
			continue
		}
		wide, _ := os.ReadFile(filepath.Join(dir, "ggml."+map[Type]string{Q8_0Type: "q8_0", Q4_0Type: "q4_0"}[typ]+".f32"))
		dec := make([]float32, len(x))
		if typ == Q8_0Type {
			tensor.DecodeQ8_0(dec, want)
		} else {
			tensor.DecodeQ4_0(dec, want)
		}
		for i, v := range dec {
			if w := math.Float32frombits(binary.LittleEndian.Uint32(wide[4*i:])); math.Float32bits(v) != math.Float32bits(w) {
				t.Fatalf("%s: value %d widens to %g, ggml %g", typ, i, v, w)
			}
		}
	}
}
