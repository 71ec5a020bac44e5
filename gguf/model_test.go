package gguf

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/llama"
	"zhllama/spm"
	"zhllama/tensor"
)

func TestPermutationIsInverse(t *testing.T) {
	for _, hd := range []int{2, 16, 128} {
		seen := map[int]bool{}
		for i := 0; i < 3*hd; i++ {
			k := hfRow(i, hd)
			if ggufRow(k, hd) != i || seen[k] || k/hd != i/hd {
				t.Fatalf("hd %d: row %d ↔ %d", hd, i, k)
			}
			seen[k] = true
		}
	}
	// Head 0 of hd 4: GGUF rows interleave the halves (0, 2, 1, 3).
	if got := []int{hfRow(0, 4), hfRow(1, 4), hfRow(2, 4), hfRow(3, 4)}; !slices.Equal(got, []int{0, 2, 1, 3}) {
		t.Errorf("hd 4: %v", got)
	}
}

// tokenizer is LLaMA-2's, for the tests that need a vocabulary.
func tokenizer(t *testing.T) *spm.Processor {
	p, err := spm.LoadProcessor(testenv.Path(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A model written as F32 and read back is the same model, tied or not;
// Q4_0 rows that are not whole blocks (ffn_down of the tiny preset, 172
// values) are written as F16 and read back compact.
func TestModelRoundTrip(t *testing.T) {
	tok := tokenizer(t)
	dir := t.TempDir()
	for _, tied := range []bool{false, true} {
		c, _ := llama.Preset("tiny")
		c.VocabSize, c.TieWordEmbeddings = tok.Size(), tied
		m := llama.NewModel(c)
		m.Randomize(5)
		path := filepath.Join(dir, "m.gguf")
		if err := WriteModel(path, m, ModelOptions{Type: F32Type, Tokenizer: tok, AddBOS: true}, nil); err != nil {
			t.Fatal(err)
		}
		back, p, err := LoadModel(path, true)
		if err != nil {
			t.Fatal(err)
		}
		if back.Config.TieWordEmbeddings != tied || back.Config.NumKeyValueHeads != 2 || p.Size() != tok.Size() {
			t.Errorf("config %+v", back.Config)
		}
		want, got := m.Named(), back.Named()
		for i := range want {
			if want[i].Name != got[i].Name || !slices.Equal(want[i].Data, got[i].Data) {
				t.Fatalf("tied %v: %s differs after the round trip", tied, want[i].Name)
			}
		}
		back.Close()
	}
	c, _ := llama.Preset("tiny")
	c.VocabSize = tok.Size()
	m := llama.NewModel(c)
	m.Randomize(5)
	path := filepath.Join(dir, "q4.gguf")
	if err := WriteModel(path, m, ModelOptions{Type: Q4_0Type, Tokenizer: tok}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, want := range map[string]Type{"blk.0.ffn_down.weight": F16Type, "blk.0.ffn_up.weight": Q4_0Type, "blk.0.attn_norm.weight": F32Type} {
		if tn, _ := f.Tensor(name); tn.Type != want {
			t.Errorf("%s is %s, want %s", name, tn.Type, want)
		}
	}
	if ft, _ := f.U32("general.file_type"); ft != 2 {
		t.Errorf("general.file_type %d, want 2 (MOSTLY_Q4_0)", ft)
	}
	back, _, err := LoadModel(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if _, ok := back.Layers[0].Down.Compact.(*tensor.F16); !ok {
		t.Errorf("ffn_down held as %T", back.Layers[0].Down.Compact)
	}
	if _, ok := back.Layers[0].Q.Compact.(*tensor.Blocks); !ok {
		t.Errorf("attn_q held as %T", back.Layers[0].Q.Compact)
	}
}

// rewrite copies a file with its metadata and tensors changed by edit.
func rewrite(t *testing.T, src, dst string, edit func(kvs []KV, srcs []Source) ([]KV, []Source)) {
	f, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kvs, srcs := edit(slices.Clone(f.KVs), sources(f))
	if err := Write(dst, kvs, srcs, nil); err != nil {
		t.Fatal(err)
	}
}

// Files that are GGUF but not a model zhllama can run are errors that
// name the key or the tensor, and say what to do.
func TestLoadModelRejects(t *testing.T) {
	tok := tokenizer(t)
	dir := t.TempDir()
	c, _ := llama.Preset("tiny")
	c.VocabSize = tok.Size()
	m := llama.NewModel(c)
	m.Randomize(1)
	good := filepath.Join(dir, "good.gguf")
	if err := WriteModel(good, m, ModelOptions{Type: F16Type, Tokenizer: tok}, nil); err != nil {
		t.Fatal(err)
	}
	setKV := func(key string, v Value) func([]KV, []Source) ([]KV, []Source) {
		return func(kvs []KV, s []Source) ([]KV, []Source) {
			for i := range kvs {
				if kvs[i].Key == key {
					kvs[i].Value = v
				}
			}
			return kvs, s
		}
	}
	for _, c := range []struct {
		name string
		edit func([]KV, []Source) ([]KV, []Source)
		want string
	}{
		{"missing key", func(kvs []KV, s []Source) ([]KV, []Source) {
			return slices.DeleteFunc(kvs, func(kv KV) bool { return kv.Key == "llama.block_count" }), s
		}, "key llama.block_count is missing"},
		{"wrong type", setKV("llama.attention.layer_norm_rms_epsilon", Value{Type: TypeFloat64, V: 1e-5}),
			"key llama.attention.layer_norm_rms_epsilon is f64, llama.cpp expects f32"},
		{"shape", setKV("llama.feed_forward_length", U32(128)), "tensor blk.0.ffn_gate.weight has ne [64 172], the metadata"},
		{"arch", setKV("general.architecture", String("qwen2")), `general.architecture is "qwen2"`},
		{"adapter", setKV("general.type", String("adapter")), "a LoRA adapter GGUF"},
		{"tensor type", func(kvs []KV, s []Source) ([]KV, []Source) {
			for i := range s {
				if s[i].Name == "blk.1.ffn_up.weight" { // 172 rows of two Q4_1 blocks
					s[i] = Raw(s[i].Name, 3, []uint64{64, 172}, make([]byte, 172*2*20))
				}
			}
			return kvs, s
		}, "tensor blk.1.ffn_up.weight is Q4_1; zhllama reads F32, F16, BF16, Q8_0 and Q4_0"},
		{"extra tensor", func(kvs []KV, s []Source) ([]KV, []Source) {
			return kvs, append(s, Vector("rope_freqs.weight", []float32{1}))
		}, "tensor rope_freqs.weight is not part of a llama model"},
		{"tokenizer", setKV("tokenizer.ggml.model", String("gpt2")), `tokenizer.ggml.model is "gpt2"`},
	} {
		bad := filepath.Join(dir, "bad.gguf")
		rewrite(t, good, bad, c.edit)
		_, _, err := LoadModel(bad, true)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: %v, want an error naming %s and saying %q", c.name, err, bad, c.want)
		}
	}
}

// --outtype names are checked; the adapter's alpha carries rsLoRA's scale.
func TestOutTypeAndAdapterAlpha(t *testing.T) {
	if _, err := ParseOutType("q4_k_m"); err == nil || !strings.Contains(err.Error(), "bf16, f16, f32, q4_0, q8_0") {
		t.Errorf("unknown outtype: %v", err)
	}
	c, _ := llama.Preset("tiny")
	c.VocabSize = 100
	m := llama.NewModel(c)
	rng := rand.New(rand.NewPCG(1, 1))
	r := 4
	rs := float32(16 / math.Sqrt(float64(r))) // rsLoRA: alpha/√r with alpha 16
	for _, name := range []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"} {
		p, _ := c.LookupParam(name)
		if err := m.Attach(name, llama.NewLoRA(p.Shape[0], p.Shape[1], r, rs, 0, rng)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "a.gguf")
	if err := WriteAdapter(path, m, llama.DefaultAdapter, Q8_0Type, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// llama.cpp scales by alpha/r: alpha is 16·√4 = 32.
	if a, err := f.F32("adapter.lora.alpha"); err != nil || math.Abs(float64(a)-32) > 1e-5 {
		t.Errorf("adapter.lora.alpha %g, %v; want 32", a, err)
	}
	for name, want := range map[string][]uint64{"blk.0.attn_q.weight.lora_a": {64, 4}, "blk.0.attn_q.weight.lora_b": {4, 64}, "blk.1.ffn_down.weight.lora_a": {172, 4}} {
		tn, ok := f.Tensor(name)
		if !ok || !slices.Equal(tn.Ne, want) {
			t.Errorf("%s: %v", name, tn)
		}
	}
	// lora_a of q_proj has rows of 64 (Q8_0); lora_b rows of r = 4 fall back to F16.
	if a, _ := f.Tensor("blk.0.attn_q.weight.lora_a"); a.Type != Q8_0Type {
		t.Errorf("lora_a is %s", a.Type)
	}
	if b, _ := f.Tensor("blk.0.attn_q.weight.lora_b"); b.Type != F16Type {
		t.Errorf("lora_b is %s", b.Type)
	}
}

// WriteModelRows, fed a model's rows, writes the very file WriteModel does.
func TestWriteModelRowsMatchesWriteModel(t *testing.T) {
	tok := tokenizer(t)
	dir := t.TempDir()
	c, _ := llama.Preset("tiny")
	c.VocabSize = tok.Size()
	m := llama.NewModel(c)
	m.Randomize(7)
	o := ModelOptions{Type: Q8_0Type, Tokenizer: tok, AddBOS: true}
	a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	if err := WriteModel(a, m, o, nil); err != nil {
		t.Fatal(err)
	}
	byName := map[string][]float32{}
	for _, p := range m.Named() {
		byName[p.Name] = p.Data
	}
	row := func(r llama.Ref, i int, dst []float32) { copy(dst, byName[r.Name][i*len(dst):]) }
	if err := WriteModelRows(b, c, o, row, nil); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(a)
	got, _ := os.ReadFile(b)
	if len(want) == 0 || !bytes.Equal(got, want) {
		t.Errorf("WriteModelRows wrote %d bytes unlike WriteModel's %d", len(got), len(want))
	}
}
