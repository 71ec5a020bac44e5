package gguf

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zhllama/hfdir"
	"zhllama/internal/testenv"
	"zhllama/llama"
	"zhllama/spm"
	"zhllama/tensor"
)

// job and result are testdata/llamacpp.mjs's input and output.
type job struct {
	Model  string   `json:"model"`
	LoRA   string   `json:"lora,omitempty"`
	Meta   bool     `json:"meta,omitempty"`
	Texts  []string `json:"texts,omitempty"`
	Prompt []int32  `json:"prompt,omitempty"`
	Top    int      `json:"top,omitempty"`
	Greedy int      `json:"greedy,omitempty"`
	NoLoad bool     `json:"noLoad,omitempty"` // parse only (an adapter is not a model)
}

type result struct {
	Types   map[string]string `json:"types"`
	Tensors []struct {
		Name  string   `json:"name"`
		DType int      `json:"dtype"`
		Shape []uint64 `json:"shape"`
	} `json:"tensors"`
	Tokens   [][]int      `json:"tokens"`
	LogProbs [][2]float64 `json:"logprobs"` // [token, log-probability], most likely first
	Greedy   []int        `json:"greedy"`
}

// runLlamaCpp runs all jobs in one node process (its start-up costs a
// second).
func runLlamaCpp(t *testing.T, jobs []job) []result {
	t.Helper()
	script, err := os.ReadFile(filepath.Join("testdata", "llamacpp.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	var res []result
	testenv.RunNode(t, string(script), jobs, &res)
	return res
}

// testConfig is a small GQA llama (4 heads, 2 KV heads) with rows that are
// whole Q8_0/Q4_0 blocks.
func testConfig(vocab int) llama.Config {
	c, _ := llama.Preset("tiny")
	c.VocabSize, c.IntermediateSize, c.MaxPositionEmbeddings = vocab, 160, 128
	return c
}

// randomModel makes the test model with weights of unit-scale outputs
// (a freshly initialized model's logits are nearly flat, which would make
// any export look right) and a peaked head.
func randomModel(c llama.Config, seed uint64) *llama.Model {
	m := llama.NewModel(c)
	m.Randomize(seed)
	for _, r := range m.Refs() {
		if !r.Matrix {
			continue
		}
		// Unit-scale embeddings and layer outputs, and a head that spreads
		// the logits over a few units.
		s := float32(1 / (0.02 * math.Sqrt(float64(r.Shape[1]))))
		switch r.Module {
		case "embed_tokens":
			s = 1 / 0.02
		case "lm_head":
			s *= 4
		}
		for i := range *r.Data {
			(*r.Data)[i] *= s
		}
	}
	return m
}

// logProbs is zhllama's next-token log-probabilities after prompt.
func logProbs(m *llama.Model, prompt []int32) []float64 {
	ca := m.NewCache(1, 64, false)
	logits := m.Step(ca, [][]int32{prompt})
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	out := make([]float64, len(logits))
	for i, v := range logits {
		out[i] = float64(v) - mx - math.Log(sum)
	}
	return out
}

func greedy(t *testing.T, m *llama.Model, prompt []int32, n int) []int {
	ids, err := m.Generate(prompt, llama.Sampling{MaxNewTokens: n, TopP: 1, RepetitionPenalty: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// compare is the largest difference between llama.cpp's log-probabilities
// of its top tokens and ours for the same tokens, and whether the most
// likely token is the same.
func compare(ref result, ours []float64) (maxDiff float64, sameTop bool) {
	for _, tp := range ref.LogProbs {
		maxDiff = math.Max(maxDiff, math.Abs(tp[1]-ours[int(tp[0])]))
	}
	top := 0
	for i, v := range ours {
		if v > ours[top] {
			top = i
		}
	}
	return maxDiff, len(ref.LogProbs) > 0 && int(ref.LogProbs[0][0]) == top
}

// heldOut is text the tokenizers are compared on, Chinese and English.
var heldOut = []string{
	"白日依山尽，黄河入海流。欲穷千里目，更上一层楼。The quick brown fox 2024年",
	"中文LLaMA-2模型的词表扩充到了55296个词元，支持更长的上下文。",
	"Hello, world! 你好，世界！ (3.14159) e-mail: test@example.com",
	"机器学习 machine learning、深度学习和自然语言处理。",
}

// TestLlamaCpp exports a random GQA model in every type and checks it in
// llama.cpp: the vocabulary tokenizes as zhllama does, the next-token
// log-probabilities and the greedy continuation match zhllama's forward on
// the Hugging Face weights, a file without the Q/K permutation does not,
// a LoRA adapter applied by llama.cpp equals the merged export, and
// zhllama reading the files gives llama.cpp's numbers.
func TestLlamaCpp(t *testing.T) {
	tokPath := testenv.Path(t, "tokenizers/chinese-llama2/tokenizer.model")
	tiny := testenv.Path(t, "gguf/llama-2-tiny-random.gguf")
	testenv.NodePeers(t)
	tok, err := spm.LoadProcessor(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := testConfig(tok.Size())
	m := randomModel(c, 11)
	// The model as a Hugging Face directory, loaded back as export loads it.
	hf := filepath.Join(dir, "hf")
	if err := hfdir.Save(m, hf, "float32", 0); err != nil {
		t.Fatal(err)
	}
	if err := hfdir.SaveTokenizer(hf, tok, ""); err != nil {
		t.Fatal(err)
	}
	if m, err = hfdir.Load(hf); err != nil {
		t.Fatal(err)
	}
	prompt := tok.ModelInput("中文大模型 llama.cpp")
	want, wantGreedy := logProbs(m, prompt), greedy(t, m, prompt, 8)

	outtypes := []string{"f32", "f16", "bf16", "q8_0", "q4_0"}
	var jobs []job
	files := map[string]string{}
	for _, ot := range outtypes {
		typ, _ := ParseOutType(ot)
		path := filepath.Join(dir, "m-"+ot+".gguf")
		o := ModelOptions{Type: typ, Name: "test", Tokenizer: tok, AddBOS: true, ChatTemplate: "{{ messages }}"}
		if err := WriteModel(path, m, o, nil); err != nil {
			t.Fatal(err)
		}
		files[ot] = path
		jobs = append(jobs, job{Model: path, Meta: true, Texts: heldOut, Prompt: prompt, Greedy: 8})
	}
	// The f32 file again without the permutation: the test must see it.
	noperm := filepath.Join(dir, "m-noperm.gguf")
	writeUnpermuted(t, files["f32"], noperm, c.HeadDim)
	jobs = append(jobs, job{Model: noperm, Prompt: prompt, Greedy: 8})

	// A LoRA adapter on every projection, written alone and merged.
	rng := rand.New(rand.NewPCG(3, 4))
	for _, r := range m.Refs() {
		if r.LoRA {
			l := llama.NewLoRA(r.Shape[0], r.Shape[1], 8, 2, 0, rng)
			for i := range l.B {
				l.B[i] = float32(rng.NormFloat64() * 0.2)
			}
			if err := m.Attach(r.Name, l); err != nil {
				t.Fatal(err)
			}
		}
	}
	adapterPath, mergedPath := filepath.Join(dir, "lora.gguf"), filepath.Join(dir, "merged.gguf")
	if err := WriteAdapter(adapterPath, m, llama.DefaultAdapter, F32Type, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.MergeLoRA(); err != nil {
		t.Fatal(err)
	}
	if err := WriteModel(mergedPath, m, ModelOptions{Type: F32Type, Tokenizer: tok, AddBOS: true}, nil); err != nil {
		t.Fatal(err)
	}
	wantMerged := logProbs(m, prompt)
	jobs = append(jobs, job{Model: files["f32"], LoRA: adapterPath, Prompt: prompt, Greedy: 8},
		job{Model: mergedPath, Prompt: prompt, Greedy: 8}, job{Model: adapterPath, Meta: true, NoLoad: true})
	tinyPrompt := []int32{1, 15043, 3186, 29871, 30919, 31076} // "Hello world 你好" after BOS
	jobs = append(jobs, job{Model: tiny, Prompt: tinyPrompt, Greedy: 8})

	res := runLlamaCpp(t, jobs)

	// Tokenizer: llama.cpp on the exported vocabulary, zhllama's encoder on
	// tokenizer.model, and zhllama's encoder on the GGUF vocabulary agree.
	f32File, err := Open(files["f32"])
	if err != nil {
		t.Fatal(err)
	}
	defer f32File.Close()
	fromGGUF, err := Tokenizer(f32File)
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range heldOut {
		ours, back := tok.Encode(text), fromGGUF.Encode(text)
		if !slices.Equal(res[0].Tokens[i], ours) || !slices.Equal(back, ours) {
			t.Errorf("%q:\nllama.cpp         %v\ntokenizer.model   %v\nGGUF vocabulary   %v", text, res[0].Tokens[i], ours, back)
		}
	}

	// Exports against zhllama on the Hugging Face weights. Tolerances: f32
	// differs by summation order only (measured 3e-6); the others by their
	// rounding of the weights and, for F16 and the block types, llama.cpp's
	// of the activations (to F16, Q8_0) in its matrix products: measured
	// 0.0075 (f16), 0.08 (bf16), 0.16 (q8_0), 1.45 (q4_0) on this model,
	// whose log-probabilities spread over several units; about twice that.
	tol := map[string]float64{"f32": 1e-4, "f16": 0.02, "bf16": 0.2, "q8_0": 0.3, "q4_0": 3}
	for i, ot := range outtypes {
		d, top := compare(res[i], want)
		t.Logf("%-5s max |Δ log p| over llama.cpp's top 20 = %.2g, top-1 same %v, greedy %v", ot, d, top, res[i].Greedy)
		if d > tol[ot] || !top {
			t.Errorf("%s: llama.cpp's log-probabilities differ from zhllama's by %.3g (tolerance %g), top-1 same: %v", ot, d, tol[ot], top)
		}
		if ot == "f32" && !slices.Equal(res[i].Greedy, wantGreedy) {
			t.Errorf("f32: llama.cpp continues %v, zhllama %v", res[i].Greedy, wantGreedy)
		}
		checkMetadata(t, ot, res[i])
	}
	np := res[len(outtypes)]
	d, top := compare(np, want)
	t.Logf("no permutation: max |Δ log p| = %.2g, top-1 same %v, greedy %v", d, top, np.Greedy)
	if d < 1e-2 && top && slices.Equal(np.Greedy, wantGreedy) {
		t.Errorf("the file without the Q/K permutation matches too (Δ %.3g): the comparison cannot fail", d)
	}

	// The adapter applied by llama.cpp is the merged model.
	lr, mr := res[len(outtypes)+1], res[len(outtypes)+2]
	dl, topL := compare(lr, wantMerged)
	dm, _ := compare(mr, wantMerged)
	t.Logf("LoRA adapter in llama.cpp vs zhllama merged: %.2g; merged export: %.2g", dl, dm)
	if dl > 1e-4 || dm > 1e-4 || !topL || !slices.Equal(lr.Greedy, mr.Greedy) || !slices.Equal(mr.Greedy, greedy(t, m, prompt, 8)) {
		t.Errorf("adapter %.3g, merged %.3g (tolerance 1e-4); greedy %v vs %v", dl, dm, lr.Greedy, mr.Greedy)
	}

	ad := res[len(outtypes)+3]
	for k, v := range map[string]string{"general.type": "STRING", "adapter.type": "STRING", "adapter.lora.alpha": "FLOAT32"} {
		if ad.Types[k] != v {
			t.Errorf("adapter: %s is %q, want %s", k, ad.Types[k], v)
		}
	}
	if len(ad.Tensors) != 2*7*c.NumHiddenLayers || ad.Tensors[1].Name != "blk.0.attn_q.weight.lora_b" || !slices.Equal(ad.Tensors[1].Shape, []uint64{8, 64}) {
		t.Errorf("adapter tensors: %d, %+v", len(ad.Tensors), ad.Tensors[:2])
	}

	// Import: zhllama reading a GGUF gives llama.cpp's numbers on it.
	for _, ic := range []struct {
		path string
		ref  result
		tol  float64
	}{
		// What is left is llama.cpp's rounding of the activations in F16
		// and block matrix products (measured 2.8e-5 on the flat tiny model,
		// 0.003, 0.078 and 0.17 here; Q8_0 and Q4_0 1.8e-6 and 0.14 where
		// zhllama rounds them too, for prompts as well), half or less of
		// the export's differences above: zhllama computes with the very
		// weights llama.cpp reads.
		{tiny, res[len(res)-1], 1e-4}, {files["f32"], res[0], 1e-4}, {files["f16"], res[1], 0.01},
		{files["q8_0"], res[3], 0.15}, {files["q4_0"], res[4], 0.35},
	} {
		im, _, err := LoadModel(ic.path, true)
		if err != nil {
			t.Fatal(err)
		}
		if b, ok := im.Layers[0].Q.Compact.(*tensor.Blocks); ok && b.Interleaved() && !b.Q4 {
			// The sixteen-row kernels round the activations to Q8_0 for
			// every matrix product, prompts included, as llama.cpp does:
			// what is left is summation order (measured 1.8e-6).
			ic.tol = 1e-4
		}
		p := prompt
		if ic.path == tiny {
			p = tinyPrompt
		}
		d, top := compare(ic.ref, logProbs(im, p))
		g := greedy(t, im, p, 8)
		t.Logf("import %s: max |Δ log p| vs llama.cpp = %.2g, top-1 same %v, greedy same %v", filepath.Base(ic.path), d, top, slices.Equal(g, ic.ref.Greedy))
		if d > ic.tol || !top {
			t.Errorf("import %s: log-probabilities differ from llama.cpp's by %.3g (tolerance %g), top-1 same %v", ic.path, d, ic.tol, top)
		}
		im.Close()
	}
}

// checkMetadata checks the value types llama.cpp insists on, as Hugging
// Face's GGUF parser reads them, and the tensors' types.
func checkMetadata(t *testing.T, ot string, r result) {
	want := map[string]string{
		"llama.context_length": "UINT32", "llama.embedding_length": "UINT32", "llama.block_count": "UINT32",
		"llama.feed_forward_length": "UINT32", "llama.attention.head_count": "UINT32", "llama.attention.head_count_kv": "UINT32",
		"llama.rope.dimension_count": "UINT32", "llama.attention.layer_norm_rms_epsilon": "FLOAT32", "llama.rope.freq_base": "FLOAT32",
		"general.file_type": "UINT32", "tokenizer.ggml.add_bos_token": "BOOL", "tokenizer.ggml.add_eos_token": "BOOL",
		"tokenizer.ggml.bos_token_id": "UINT32", "tokenizer.ggml.tokens": "ARRAY<STRING>", "tokenizer.ggml.scores": "ARRAY<FLOAT32>",
		"tokenizer.ggml.token_type": "ARRAY<INT32>", "tokenizer.chat_template": "STRING",
	}
	for k, v := range want {
		if r.Types[k] != v {
			t.Errorf("%s: %s is %q, want %s", ot, k, r.Types[k], v)
		}
	}
	typ, _ := ParseOutType(ot)
	for _, tn := range r.Tensors {
		wt := typ
		if strings.HasSuffix(tn.Name, "_norm.weight") {
			wt = F32Type
		}
		if Type(tn.DType) != wt {
			t.Errorf("%s: tensor %s is %s, want %s", ot, tn.Name, Type(tn.DType), wt)
		}
	}
}

// writeUnpermuted copies a model file with attn_q and attn_k back in
// Hugging Face row order: the file an exporter that forgot the
// permutation writes.
func writeUnpermuted(t *testing.T, src, dst string, hd int) {
	f, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var srcs []Source
	for _, tn := range f.Tensors {
		data := tn.Data
		if strings.HasSuffix(tn.Name, "attn_q.weight") || strings.HasSuffix(tn.Name, "attn_k.weight") {
			data = unpermute(data, int(tn.Ne[1]), hd)
		}
		srcs = append(srcs, Raw(tn.Name, tn.Type, tn.Ne, data))
	}
	if err := Write(dst, f.KVs, srcs, nil); err != nil {
		t.Fatal(err)
	}
}
