package gguf

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"zhllama/internal/half"
	"zhllama/internal/mmap"
	"zhllama/llama"
	"zhllama/spm"
	"zhllama/tensor"
)

// OutTypes are the file types the exporter writes, by the names
// llama.cpp's converter gives them, with general.file_type's value.
var OutTypes = map[string]struct {
	Type     Type
	FileType uint32
}{
	"f32": {F32Type, 0}, "f16": {F16Type, 1}, "bf16": {BF16Type, 32}, "q8_0": {Q8_0Type, 7}, "q4_0": {Q4_0Type, 2},
}

// ParseOutType is the tensor type an --outtype names.
func ParseOutType(name string) (Type, error) {
	if o, ok := OutTypes[name]; ok {
		return o.Type, nil
	}
	var names []string
	for n := range OutTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return 0, fmt.Errorf("--outtype %q: use one of %s", name, strings.Join(names, ", "))
}

func fileType(t Type) uint32 {
	for _, o := range OutTypes {
		if o.Type == t {
			return o.FileType
		}
	}
	return 0
}

// matrixType is the type a matrix of rows of cols values is written in:
// the outtype, except that a block type falls back to F16 for rows that
// are not whole blocks, as llama.cpp's converter does.
func matrixType(t Type, cols int) Type {
	if (t == Q8_0Type || t == Q4_0Type) && cols%tensor.QBlock != 0 {
		return F16Type
	}
	return t
}

// The Q/K row permutation. Hugging Face's llama rotates dimension i of a
// head with i+hd/2 (rotate_half); llama.cpp's arch llama rotates 2i with
// 2i+1. Reordering each head's rows of q_proj and k_proj (k with the KV
// heads) makes the one compute exactly what the other does.

// hfRow is the Hugging Face row that GGUF row i of a head-major [heads·hd
// × n] projection holds.
func hfRow(i, hd int) int {
	h, j := i/hd, i%hd
	return h*hd + (j%2)*(hd/2) + j/2
}

// ggufRow is the GGUF row that holds Hugging Face row k (hfRow's inverse).
func ggufRow(k, hd int) int {
	h, r := k/hd, k%hd
	return h*hd + 2*(r%(hd/2)) + r/(hd/2)
}

// permuted reports whether a parameter's rows are permuted in GGUF.
func permuted(p llama.Param) bool { return p.Module == "q_proj" || p.Module == "k_proj" }

// ModelOptions are what a model's GGUF carries beside its weights.
type ModelOptions struct {
	Type         Type // of the weight matrices; norms are always F32
	Name         string
	Tokenizer    *spm.Processor
	AddBOS       bool // tokenizer_config.json's add_bos_token (true for LLaMA)
	AddEOS       bool
	ChatTemplate string // tokenizer_config.json's chat_template, if any
}

// WriteModel writes m as a GGUF file of arch llama: the metadata
// llama.cpp needs (hyperparameters as u32, epsilon and RoPE base as f32),
// the vocabulary, and the tensors under GGUF names with q_proj and k_proj
// permuted for llama.cpp's RoPE. The model's tensors are converted row by
// row as the file is written.
func WriteModel(path string, m *llama.Model, o ModelOptions, progress func(done, total int64)) error {
	kvs, err := modelKVs(m.Config, o)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return Write(path, kvs, modelSources(m, o.Type), progress)
}

func modelKVs(c llama.Config, o ModelOptions) ([]KV, error) {
	if !Convertible(o.Type) {
		return nil, fmt.Errorf("tensor type %s cannot be written", o.Type)
	}
	if c.HeadDim*c.NumAttentionHeads != c.HiddenSize {
		return nil, fmt.Errorf("head_dim %d × %d heads is not hidden_size %d: llama.cpp's llama needs them equal", c.HeadDim, c.NumAttentionHeads, c.HiddenSize)
	}
	name := o.Name
	if name == "" {
		name = "llama"
	}
	kvs := []KV{
		{"general.architecture", String("llama")},
		{"general.type", String("model")},
		{"general.name", String(name)},
		{"llama.vocab_size", U32(uint32(c.VocabSize))},
		{"llama.context_length", U32(uint32(c.MaxPositionEmbeddings))},
		{"llama.embedding_length", U32(uint32(c.HiddenSize))},
		{"llama.block_count", U32(uint32(c.NumHiddenLayers))},
		{"llama.feed_forward_length", U32(uint32(c.IntermediateSize))},
		{"llama.rope.dimension_count", U32(uint32(c.HeadDim))},
		{"llama.attention.head_count", U32(uint32(c.NumAttentionHeads))},
		{"llama.attention.head_count_kv", U32(uint32(c.NumKeyValueHeads))},
		{"llama.attention.layer_norm_rms_epsilon", F32(float32(c.RMSNormEps))},
		{"llama.rope.freq_base", F32(float32(c.RopeTheta))},
	}
	if rs := c.RopeScaling; rs != nil {
		if rs.Type != "linear" {
			return nil, fmt.Errorf("rope_scaling %q has no GGUF equivalent for llama (llama.cpp takes linear and yarn)", rs.Type)
		}
		kvs = append(kvs, KV{"llama.rope.scaling.type", String("linear")}, KV{"llama.rope.scaling.factor", F32(float32(rs.Factor))})
	}
	kvs = append(kvs, KV{"general.file_type", U32(fileType(o.Type))}, KV{"general.quantization_version", U32(2)})
	if o.Tokenizer == nil {
		return nil, fmt.Errorf("no tokenizer: llama.cpp needs the vocabulary in the file")
	}
	voc, err := vocabKVs(o.Tokenizer, c)
	if err != nil {
		return nil, err
	}
	kvs = append(kvs, voc...)
	kvs = append(kvs, KV{"tokenizer.ggml.add_bos_token", Bool(o.AddBOS)}, KV{"tokenizer.ggml.add_eos_token", Bool(o.AddEOS)})
	if o.ChatTemplate != "" {
		kvs = append(kvs, KV{"tokenizer.chat_template", String(o.ChatTemplate)})
	}
	return kvs, nil
}

// vocabKVs are the vocabulary as llama.cpp's converter writes a
// SentencePiece one: pieces, scores and types, padded with unused
// entries up to vocab_size, and the special ids.
func vocabKVs(p *spm.Processor, c llama.Config) ([]KV, error) {
	n := p.Size()
	if n > c.VocabSize {
		return nil, fmt.Errorf("the tokenizer has %d pieces but the model's vocab_size is %d", n, c.VocabSize)
	}
	tokens := make([]string, c.VocabSize)
	scores := make([]float32, c.VocabSize)
	typ := make([]int32, c.VocabSize)
	for i := range tokens {
		if i >= n {
			tokens[i], scores[i], typ[i] = fmt.Sprintf("[PAD%d]", i), -1000, int32(spm.Unused)
			continue
		}
		pc := p.Model().Pieces[i]
		tokens[i], scores[i] = pc.Piece, pc.Score
		switch pc.Type {
		case spm.Unknown, spm.Control, spm.Unused, spm.Byte:
			typ[i] = int32(pc.Type)
		default: // user-defined pieces become normal ones, as the converter writes them
			typ[i] = int32(spm.Normal)
		}
	}
	kvs := []KV{
		{"tokenizer.ggml.model", String("llama")},
		{"tokenizer.ggml.pre", String("default")},
		{"tokenizer.ggml.tokens", Strings(tokens)},
		{"tokenizer.ggml.scores", F32s(scores)},
		{"tokenizer.ggml.token_type", I32s(typ)},
		{"tokenizer.ggml.bos_token_id", U32(uint32(c.BOSTokenID))},
		{"tokenizer.ggml.eos_token_id", U32(uint32(c.EOSTokenID))},
		{"tokenizer.ggml.unknown_token_id", U32(uint32(p.UnkID()))},
	}
	pad := p.SpecialID("pad")
	if c.PadTokenID != nil {
		pad = *c.PadTokenID
	}
	if pad >= 0 && pad < c.VocabSize {
		kvs = append(kvs, KV{"tokenizer.ggml.padding_token_id", U32(uint32(pad))})
	}
	if ns := p.Model().Normalizer; ns != nil && !ns.Bool(spm.NormAddDummyPrefix, true) {
		kvs = append(kvs, KV{"tokenizer.ggml.add_space_prefix", Bool(false)})
	}
	return kvs, nil
}

// rowReader returns a function that widens row r of a parameter into
// dst, from float32 values or a compact matrix.
func rowReader(r llama.Ref) func(i int, dst []float32) {
	if w := r.Weight; w != nil && w.Compact != nil {
		return func(i int, dst []float32) { w.Compact.Widen(dst, i, 0) }
	}
	data := *r.Data
	return func(i int, dst []float32) { copy(dst, data[i*len(dst):(i+1)*len(dst)]) }
}

// modelSources are m's tensors in checkpoint order under their GGUF names.
func modelSources(m *llama.Model, typ Type) []Source {
	return rowSources(m.Refs(), m.Config.HeadDim, typ, func(r llama.Ref) func(i int, dst []float32) {
		if !r.Matrix {
			return func(_ int, dst []float32) { copy(dst, *r.Data) }
		}
		return rowReader(r)
	})
}

// rowSources are the tensors of refs under their GGUF names, row i of a
// matrix read (in Hugging Face order) by reader(r)(i, dst), a vector as
// its row 0; q_proj and k_proj rows are written permuted.
func rowSources(refs []llama.Ref, hd int, typ Type, reader func(r llama.Ref) func(i int, dst []float32)) []Source {
	var srcs []Source
	for _, r := range refs {
		read := reader(r)
		if !r.Matrix {
			v := make([]float32, r.Size())
			read(0, v)
			srcs = append(srcs, Vector(r.GGUF, v))
			continue
		}
		out, in := r.Shape[0], r.Shape[1]
		if permuted(r.Param) {
			srcs = append(srcs, Rows(r.GGUF, matrixType(typ, in), in, out, func(i int, dst []float32) { read(hfRow(i, hd), dst) }))
			continue
		}
		srcs = append(srcs, Rows(r.GGUF, matrixType(typ, in), in, out, read))
	}
	return srcs
}

// WriteModelRows writes a model of config c as WriteModel does, but with
// no model in memory: row(r, i, dst) fills row i of parameter r (a vector
// is its row 0) as the file is written. It is for weights made on the fly,
// such as a benchmark's random 7B model, which would not fit as float32.
func WriteModelRows(path string, c llama.Config, o ModelOptions, row func(r llama.Ref, i int, dst []float32), progress func(done, total int64)) error {
	kvs, err := modelKVs(c, o)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	refs := (&llama.Model{Config: c}).Refs()
	return Write(path, kvs, rowSources(refs, c.HeadDim, o.Type, func(r llama.Ref) func(i int, dst []float32) {
		return func(i int, dst []float32) { row(r, i, dst) }
	}), progress)
}

// ReadConfig builds the model's config from a GGUF file's metadata;
// errors name the key that is missing or wrongly typed.
func ReadConfig(f *File) (llama.Config, error) {
	c := llama.DefaultConfig()
	arch, err := f.String("general.architecture")
	if err != nil {
		return c, err
	}
	if arch != "llama" {
		return c, fmt.Errorf("%s: general.architecture is %q; zhllama runs llama models", f.where(), arch)
	}
	if t, err := f.String("general.type"); err == nil && t != "model" {
		return c, fmt.Errorf("%s: general.type is %q, not a model: a LoRA adapter GGUF is applied by llama.cpp (--lora); give zhllama the model, or the PEFT adapter with --adapter", f.where(), t)
	}
	u := func(key string, dst *int) {
		if err == nil {
			var v uint32
			v, err = f.U32(key)
			*dst = int(v)
		}
	}
	u("llama.context_length", &c.MaxPositionEmbeddings)
	u("llama.embedding_length", &c.HiddenSize)
	u("llama.block_count", &c.NumHiddenLayers)
	u("llama.feed_forward_length", &c.IntermediateSize)
	u("llama.attention.head_count", &c.NumAttentionHeads)
	if err != nil {
		return c, err
	}
	// Every layer has nine tensors: a count past the file's is damage,
	// not layers to allocate.
	if c.NumHiddenLayers > len(f.Tensors)/9 {
		return c, fmt.Errorf("%s: llama.block_count is %d but the file has %d tensors, too few for that many layers", f.where(), c.NumHiddenLayers, len(f.Tensors))
	}
	c.NumKeyValueHeads = c.NumAttentionHeads
	if f.Has("llama.attention.head_count_kv") {
		u("llama.attention.head_count_kv", &c.NumKeyValueHeads)
	}
	if c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if f.Has("llama.rope.dimension_count") {
		var rot int
		if u("llama.rope.dimension_count", &rot); err == nil && rot != c.HeadDim {
			return c, fmt.Errorf("%s: llama.rope.dimension_count %d is not embedding_length/head_count %d: partial rotary embeddings are not supported", f.where(), rot, c.HeadDim)
		}
	}
	if err != nil {
		return c, err
	}
	eps, err := f.F32("llama.attention.layer_norm_rms_epsilon")
	if err != nil {
		return c, err
	}
	c.RMSNormEps = float64(eps)
	if f.Has("llama.rope.freq_base") {
		base, err := f.F32("llama.rope.freq_base")
		if err != nil {
			return c, err
		}
		c.RopeTheta = float64(base)
	}
	if f.Has("llama.rope.scaling.type") {
		st, err := f.String("llama.rope.scaling.type")
		if err != nil {
			return c, err
		}
		if st != "none" {
			factor, err := f.F32("llama.rope.scaling.factor")
			if err != nil {
				return c, err
			}
			if st != "linear" {
				return c, fmt.Errorf("%s: llama.rope.scaling.type %q: zhllama implements linear", f.where(), st)
			}
			c.RopeScaling = &llama.RopeScaling{Type: "linear", Factor: float64(factor)}
		}
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || len(emb.Ne) != 2 {
		return c, fmt.Errorf("%s: tensor token_embd.weight is missing or not 2-D", f.where())
	}
	c.VocabSize = int(emb.Ne[1])
	_, hasHead := f.Tensor("output.weight")
	c.TieWordEmbeddings = !hasHead
	for key, dst := range map[string]*int{"tokenizer.ggml.bos_token_id": &c.BOSTokenID, "tokenizer.ggml.eos_token_id": &c.EOSTokenID} {
		if f.Has(key) {
			if u(key, dst); err != nil {
				return c, err
			}
		}
	}
	if f.Has("tokenizer.ggml.padding_token_id") {
		var pad int
		if u("tokenizer.ggml.padding_token_id", &pad); err != nil {
			return c, err
		}
		c.PadTokenID = &pad
	}
	c.TorchDType = "float32"
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%s: %w", f.where(), err)
	}
	return c, nil
}

// LoadModel reads a GGUF model: the config from its metadata, the weights
// (q_proj and k_proj rows put back in Hugging Face order) and its
// vocabulary as a SentencePiece tokenizer. With compact, F16, BF16, Q8_0
// and Q4_0 matrices stay in their type, read from the mapped file, and the
// model owns the file (Model.Close); otherwise everything is widened to
// float32 and the file closed.
func LoadModel(path string, compact bool) (*llama.Model, *spm.Processor, error) {
	f, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	m, p, err := loadModel(f, compact)
	if err != nil || !compact {
		f.Close()
	}
	if err != nil {
		return nil, nil, err
	}
	if compact {
		m.Keep(f)
	}
	return m, p, nil
}

func loadModel(f *File, compact bool) (*llama.Model, *spm.Processor, error) {
	c, err := ReadConfig(f)
	if err != nil {
		return nil, nil, err
	}
	m := &llama.Model{Config: c}
	used := map[string]bool{}
	for _, r := range m.Refs() {
		t, ok := f.Tensor(r.GGUF)
		if !ok {
			return nil, nil, fmt.Errorf("%s: tensor %s is missing (a llama model with this metadata has it)", f.where(), r.GGUF)
		}
		used[r.GGUF] = true
		want := make([]uint64, len(r.Shape))
		for i, d := range r.Shape {
			want[len(want)-1-i] = uint64(d)
		}
		if !slices.Equal(t.Ne, want) {
			return nil, nil, fmt.Errorf("%s: tensor %s has ne %v, the metadata (%d layers, hidden %d, heads %d/%d, ffn %d, vocab %d) implies %v", f.where(), r.GGUF, t.Ne, c.NumHiddenLayers, c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.IntermediateSize, c.VocabSize, want)
		}
		if !Convertible(t.Type) {
			return nil, nil, fmt.Errorf("%s: tensor %s is %s; zhllama reads F32, F16, BF16, Q8_0 and Q4_0 (requantize with llama-quantize, or export from the Hugging Face model)", f.where(), r.GGUF, t.Type)
		}
		data := t.Data
		if r.Matrix && permuted(r.Param) {
			data = unpermute(data, r.Shape[0], c.HeadDim)
		}
		tt := *t
		tt.Data = data
		kept, err := setWeight(r, &tt, compact)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %s: %w", f.where(), r.GGUF, err)
		}
		if f.mapped != nil && len(t.Data) > 0 && (!kept || &data[0] != &t.Data[0]) {
			// The model holds a copy: the file's pages need not stay
			// resident (a later read faults them back in).
			mmap.Release(t.Data)
		}
	}
	for _, t := range f.Tensors {
		if !used[t.Name] {
			return nil, nil, fmt.Errorf("%s: tensor %s is not part of a llama model zhllama runs", f.where(), t.Name)
		}
	}
	m.Tie()
	p, err := Tokenizer(f)
	if err != nil {
		return nil, nil, err
	}
	if p.Size() > c.VocabSize {
		return nil, nil, fmt.Errorf("%s: %d tokens but token_embd.weight has %d rows", f.where(), p.Size(), c.VocabSize)
	}
	return m, p, nil
}

// unpermute puts a GGUF q or k projection's rows (each of the same byte
// length) back in Hugging Face order, in a copy.
func unpermute(data []byte, rows, hd int) []byte {
	rb := len(data) / rows
	out := make([]byte, len(data))
	for k := 0; k < rows; k++ {
		g := ggufRow(k, hd)
		copy(out[k*rb:(k+1)*rb], data[g*rb:(g+1)*rb])
	}
	return out
}

// setWeight puts a tensor's values where the model holds the parameter;
// kept says whether the model holds t.Data itself rather than a copy.
func setWeight(r llama.Ref, t *Tensor, compact bool) (kept bool, err error) {
	if r.Matrix && compact && t.Type != F32Type {
		rows, cols := r.Shape[0], r.Shape[1]
		w := r.Weight
		switch t.Type {
		case F16Type:
			w.Compact = &tensor.F16{Rows: rows, Cols: cols, Data: half.View(t.Data)}
		case BF16Type:
			w.Compact = &tensor.BF16{Rows: rows, Cols: cols, Data: half.View(t.Data)}
		default:
			// The decoding kernels may want their own layout, a copy.
			var copied bool
			w.Compact, copied = tensor.BlocksFor(t.Data, rows, cols, t.Type == Q4_0Type)
			return !copied, nil
		}
		return true, nil
	}
	v, err := t.Float32(nil)
	if err != nil {
		return false, err
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false, fmt.Errorf("value %d is %g: the file is damaged or comes from a run that diverged", i, x)
		}
	}
	*r.Data = v
	return false, nil
}

// Tokenizer builds a SentencePiece tokenizer from a GGUF vocabulary of
// tokenizer.ggml.model llama: pieces, scores and types as stored, a BPE
// model (llama.cpp's SPM tokenizer merges by score, as SentencePiece's
// BPE does), byte fallback when the 256 byte pieces are there, and the
// normalizer LLaMA's tokenizer.model has (no normalization, a space
// prefix unless add_space_prefix is false, spaces as ▁).
func Tokenizer(f *File) (*spm.Processor, error) {
	model, err := f.String("tokenizer.ggml.model")
	if err != nil {
		return nil, err
	}
	if model != "llama" {
		return nil, fmt.Errorf("%s: tokenizer.ggml.model is %q; zhllama reads SentencePiece vocabularies (llama)", f.where(), model)
	}
	tokens, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil {
		return nil, err
	}
	scores := make([]float32, len(tokens))
	if f.Has("tokenizer.ggml.scores") {
		if scores, err = f.F32s("tokenizer.ggml.scores"); err != nil {
			return nil, err
		}
	}
	types := make([]int32, len(tokens))
	for i := range types {
		types[i] = int32(spm.Normal)
	}
	if f.Has("tokenizer.ggml.token_type") {
		if types, err = f.I32s("tokenizer.ggml.token_type"); err != nil {
			return nil, err
		}
	}
	if len(scores) != len(tokens) || len(types) != len(tokens) {
		return nil, fmt.Errorf("%s: %d tokens, %d scores and %d token types: the vocabulary arrays differ in length", f.where(), len(tokens), len(scores), len(types))
	}
	ids := map[string]int{"unk": 0, "bos": 1, "eos": 2, "pad": -1}
	for which, key := range map[string]string{"unk": "unknown", "bos": "bos", "eos": "eos", "pad": "padding"} {
		key = "tokenizer.ggml." + key + "_token_id"
		if f.Has(key) {
			v, err := f.U32(key)
			if err != nil {
				return nil, err
			}
			if int(v) >= len(tokens) {
				return nil, fmt.Errorf("%s: %s is %d, past the %d tokens", f.where(), key, v, len(tokens))
			}
			ids[which] = int(v)
		}
	}
	pieces := make([]spm.Piece, len(tokens))
	bytePieces := 0
	hasUnk := false
	for i, tok := range tokens {
		t := spm.PieceType(types[i])
		if t < spm.Normal || t > spm.Byte {
			return nil, fmt.Errorf("%s: token %d %q has token type %d (GGUF types are 1 to 6)", f.where(), i, tok, t)
		}
		bytePieces += b2i(t == spm.Byte)
		hasUnk = hasUnk || t == spm.Unknown
		pieces[i] = spm.NewPiece(tok, scores[i], t)
	}
	if !hasUnk && ids["unk"] < len(pieces) {
		pieces[ids["unk"]].Type = spm.Unknown
	}
	tr, norm := &spm.Spec{}, &spm.Spec{}
	tr.SetInt(spm.TrModelType, spm.ModelBPE)
	tr.SetBool(spm.TrByteFallback, bytePieces == 256)
	tr.SetInt(spm.TrUnkID, int64(ids["unk"]))
	tr.SetInt(spm.TrBosID, int64(ids["bos"]))
	tr.SetInt(spm.TrEosID, int64(ids["eos"]))
	tr.SetInt(spm.TrPadID, int64(ids["pad"]))
	for which, num := range map[string]int{"bos": spm.TrBosPiece, "eos": spm.TrEosPiece, "pad": spm.TrPadPiece} {
		if id := ids[which]; id >= 0 && id < len(tokens) {
			tr.SetString(num, tokens[id])
		}
	}
	addPrefix := true
	if f.Has("tokenizer.ggml.add_space_prefix") {
		if addPrefix, err = f.Bool("tokenizer.ggml.add_space_prefix"); err != nil {
			return nil, err
		}
	}
	norm.SetString(spm.NormName, "identity")
	norm.SetBool(spm.NormAddDummyPrefix, addPrefix)
	norm.SetBool(spm.NormRemoveExtraWhitespaces, false)
	norm.SetBool(spm.NormEscapeWhitespaces, true)
	p, err := spm.NewProcessor(&spm.Model{Pieces: pieces, Trainer: tr, Normalizer: norm})
	if err != nil {
		return nil, fmt.Errorf("%s: the vocabulary does not make a SentencePiece model: %w", f.where(), err)
	}
	return p, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ChatTemplate is the file's tokenizer.chat_template, or "" without one.
func ChatTemplate(path string) (string, error) {
	f, err := Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if !f.Has("tokenizer.chat_template") {
		return "", nil
	}
	return f.String("tokenizer.chat_template")
}
