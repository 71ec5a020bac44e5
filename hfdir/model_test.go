package hfdir

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"zhllama/internal/testenv"
	"zhllama/llama"
	"zhllama/safetensors"
	"zhllama/spm"
	"zhllama/tensor"
)

func TestInitAndInspect(t *testing.T) {
	tok, err := spm.Load(testenv.Path(t, "tokenizers/chinese-llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := llama.Preset("tiny")
	dir := t.TempDir()
	if err := Init(c, tok, dir, InitOptions{Seed: 7, DType: "bfloat16", MaxShard: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	s, err := Inspect(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if s.Config.VocabSize != 55296 || s.DTypes["BF16"] != s.Params || !strings.Contains(s.String(), "vocab 55296") {
		t.Errorf("summary %+v\n%s", s, s)
	}
	for _, f := range []string{"config.json", "generation_config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", safetensors.IndexName} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	// The weights are N(0, 0.02) and the norms 1.
	ck, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	emb, _ := ck.Tensor("model.embed_tokens.weight")
	v, _ := emb.Float32(nil)
	var sum, sq float64
	for _, x := range v {
		sum += float64(x)
		sq += float64(x) * float64(x)
	}
	mean, std := sum/float64(len(v)), (sq / float64(len(v)))
	if mean > 1e-3 || mean < -1e-3 || std < 0.0003 || std > 0.0005 { // std² ≈ 0.0004
		t.Errorf("embedding mean %g, var %g", mean, std)
	}
	norm, _ := ck.Tensor("model.norm.weight")
	if nv, _ := norm.Float32(nil); nv[0] != 1 {
		t.Errorf("norm weight %g", nv[0])
	}
	ck.Close()

	// vocab_size that disagrees with the embeddings: the message says what to do.
	var raw map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	json.Unmarshal(b, &raw)
	raw["vocab_size"] = 32000
	b, _ = json.Marshal(raw)
	os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
	if _, err := Inspect(dir, true); err == nil || !strings.Contains(err.Error(), "55296 rows but config.json says vocab_size 32000") {
		t.Errorf("vocab mismatch: %v", err)
	}
}

func TestInspectIgnoresLegacyTensors(t *testing.T) {
	c, _ := llama.Preset("tiny")
	c.NumHiddenLayers = 1
	dir := initDir(t, c, InitOptions{Seed: 1})
	f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var srcs []safetensors.Source
	for _, tn := range f.Tensors {
		srcs = append(srcs, safetensors.Bytes(tn.Name, tn.DType, tn.Shape, append([]byte(nil), tn.Data...)))
	}
	f.Close()
	srcs = append(srcs, safetensors.Bytes("model.layers.0.self_attn.rotary_emb.inv_freq", safetensors.F32, []int{8}, make([]byte, 32)))
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), nil, srcs); err != nil {
		t.Fatal(err)
	}
	s, err := Inspect(dir, true)
	if err != nil || len(s.Ignored) != 1 {
		t.Errorf("legacy tensor: %v %+v", err, s)
	}
	srcs = append(srcs, safetensors.Bytes("model.extra.weight", safetensors.F32, []int{1}, make([]byte, 4)))
	safetensors.Write(filepath.Join(dir, "model.safetensors"), nil, srcs)
	if _, err := Inspect(dir, true); err == nil || !strings.Contains(err.Error(), "model.extra.weight") {
		t.Errorf("unexpected tensor: %v", err)
	}
}

// Randomize in memory gives the weights Init writes for the same seed.
func TestRandomizeMatchesInit(t *testing.T) {
	c, _ := llama.Preset("tiny")
	dir := initDir(t, c, InitOptions{Seed: 7})
	loaded, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := llama.NewModel(loaded.Config)
	m.Randomize(7)
	want := loaded.Named()
	for i, p := range m.Named() {
		for k := range p.Data {
			if p.Data[k] != want[i].Data[k] {
				t.Fatalf("%s[%d] = %g, Init wrote %g", p.Name, k, p.Data[k], want[i].Data[k])
			}
		}
	}
}

// A bfloat16 checkpoint kept in bfloat16 gives the logits of the same
// checkpoint widened to float32, in half the memory.
func TestKeepBF16(t *testing.T) {
	c, _ := llama.Preset("tiny")
	c.TieWordEmbeddings = false
	dir := initDir(t, c, InitOptions{Seed: 3, DType: "bfloat16"})
	wide, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	low, err := LoadWith(dir, llama.LoadOptions{KeepBF16: true})
	if err != nil {
		t.Fatal(err)
	}
	defer low.Close()
	if low.Layers[0].Q.Compact == nil || low.LMHead.Compact == nil || low.Bytes() > wide.Bytes()/2+int64(8*c.HiddenSize*c.NumHiddenLayers) {
		t.Fatalf("bf16 model holds %d bytes, float32 %d", low.Bytes(), wide.Bytes())
	}
	prompt := []int32{1, 450, 4996, 17354, 1701, 29916}
	for _, batch := range [][]int32{prompt, prompt[:1]} { // GEMM and GEMV paths
		cw, cl := wide.NewCache(1, 8, false), low.NewCache(1, 8, false)
		lw := append([]float32(nil), wide.Step(cw, [][]int32{batch})...)
		ll := low.Step(cl, [][]int32{batch})
		for i := range lw {
			if d := math.Abs(float64(lw[i] - ll[i])); d > 1e-4*math.Max(1, math.Abs(float64(lw[i]))) {
				t.Fatalf("logit %d: bf16 %g, float32 %g", i, ll[i], lw[i])
			}
		}
	}
}

// A float16 checkpoint kept in float16 (the GGUF exporter's load) holds
// every projection and the head in float16, at half the memory, and each
// row widens to the float32 load's values exactly.
func TestKeepF16(t *testing.T) {
	c, _ := llama.Preset("tiny")
	c.TieWordEmbeddings = false
	dir := initDir(t, c, InitOptions{Seed: 4, DType: "float16"})
	wide, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	low, err := LoadWith(dir, llama.LoadOptions{KeepF16: true})
	if err != nil {
		t.Fatal(err)
	}
	defer low.Close()
	if low.Bytes() > wide.Bytes()/2+int64(8*c.HiddenSize*c.NumHiddenLayers) {
		t.Fatalf("f16 model holds %d bytes, float32 %d", low.Bytes(), wide.Bytes())
	}
	refs, lrefs := wide.Refs(), low.Refs()
	for i, r := range refs {
		if r.Weight == nil {
			continue
		}
		m, ok := lrefs[i].Weight.Compact.(*tensor.F16)
		if !ok {
			t.Fatalf("%s held as %T, want float16", r.Name, lrefs[i].Weight.Compact)
		}
		row := make([]float32, r.Shape[1])
		for k := range r.Shape[0] {
			m.Widen(row, k, 0)
			for j, v := range row {
				if v != r.Weight.W[k*r.Shape[1]+j] {
					t.Fatalf("%s[%d][%d]: %g from float16, %g loaded as float32", r.Name, k, j, v, r.Weight.W[k*r.Shape[1]+j])
				}
			}
		}
	}
}

func TestLoadProgress(t *testing.T) {
	c, _ := llama.Preset("tiny")
	dir := initDir(t, c, InitOptions{Seed: 1})
	var last, total int64
	calls := 0
	if _, err := LoadWith(dir, llama.LoadOptions{Progress: func(done, tot int64) {
		if done < last || done > tot {
			t.Errorf("progress %d of %d after %d", done, tot, last)
		}
		last, total = done, tot
		calls++
	}}); err != nil {
		t.Fatal(err)
	}
	if last != total || calls < len(c.Params()) {
		t.Errorf("%d calls, ended at %d of %d", calls, last, total)
	}
}

// TestLoadQuantized loads a bfloat16 checkpoint with its projections
// quantized (NF4 and int8), each converted by all the workers into one
// reused buffer, and checks every projection against quantizing the float32
// load's values directly.
func TestLoadQuantized(t *testing.T) {
	c, _ := llama.Preset("tiny")
	dir := initDir(t, c, InitOptions{Seed: 5, DType: "bfloat16"})
	wide, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, bits := range []int{4, 8} {
		q, err := LoadWith(dir, llama.LoadOptions{QuantizeBits: bits})
		if err != nil {
			t.Fatal(err)
		}
		refs, qrefs := wide.Refs(), q.Refs()
		n := 0
		for i, r := range refs {
			if r.Weight == nil || r.Layer < 0 {
				continue
			}
			want, err := tensor.Quantize(r.Weight.W, r.Shape[0], r.Shape[1], bits)
			if err != nil {
				t.Fatal(err)
			}
			if got := qrefs[i].Weight.Compact; !reflect.DeepEqual(got, want) {
				t.Fatalf("%d bits, %s: the loaded quantization differs from quantizing the float32 load", bits, r.Name)
			}
			n++
		}
		if n != 7*c.NumHiddenLayers {
			t.Errorf("%d bits: %d projections compared, want %d", bits, n, 7*c.NumHiddenLayers)
		}
	}
}

// initDir writes a model of shape c with the LLaMA-2 tokenizer into a
// temporary directory.
func initDir(t *testing.T, c llama.Config, o InitOptions) string {
	t.Helper()
	tok, err := spm.Load(testenv.Path(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Init(c, tok, dir, o); err != nil {
		t.Fatal(err)
	}
	return dir
}
