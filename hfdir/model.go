package hfdir

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"zhllama/internal/atomicfile"
	"zhllama/internal/half"
	"zhllama/llama"
	"zhllama/safetensors"
	"zhllama/spm"
)

// dtypes maps torch_dtype names to safetensors element types.
var dtypes = map[string]safetensors.DType{"float32": safetensors.F32, "float16": safetensors.F16, "bfloat16": safetensors.BF16}

func dtypeOf(name string) (safetensors.DType, error) {
	dt, ok := dtypes[name]
	if !ok {
		return "", fmt.Errorf("dtype %q: use float32, float16 or bfloat16", name)
	}
	return dt, nil
}

// LoadConfig reads a config.json.
func LoadConfig(path string) (llama.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return llama.Config{}, err
	}
	c, err := llama.ParseConfig(b)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// InitOptions control Init.
type InitOptions struct {
	Seed     uint64
	DType    string // float32, float16 or bfloat16; default the config's torch_dtype
	MaxShard int64  // bytes per safetensors shard; 0 means 5 GB
}

// Init writes a randomly initialized model directory as transformers
// initializes LlamaForCausalLM (llama.InitValues), streaming each tensor
// so that memory does not grow with the model. The vocabulary size and the
// special ids come from tok, whose files are written beside.
func Init(c llama.Config, tok *spm.Model, dir string, o InitOptions) error {
	p, err := spm.NewProcessor(tok)
	if err != nil {
		return err
	}
	c.VocabSize = p.Size()
	if id := p.SpecialID("bos"); id >= 0 {
		c.BOSTokenID = id
	}
	if id := p.SpecialID("eos"); id >= 0 {
		c.EOSTokenID = id
	}
	if o.DType != "" {
		c.TorchDType = o.DType
	}
	dt, err := dtypeOf(c.TorchDType)
	if err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if o.MaxShard == 0 {
		o.MaxShard = 5e9
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var srcs []safetensors.Source
	for i, prm := range c.Params() {
		srcs = append(srcs, safetensors.Source{Name: prm.Name, DType: dt, Shape: prm.Shape, Write: func(w io.Writer) error {
			next := llama.InitValues(&c, o.Seed, i, prm.Name)
			buf := make([]byte, 0, 1<<16)
			for range prm.Size() {
				buf = appendValue(buf, dt, next())
				if len(buf) >= 1<<16-8 {
					if _, err := w.Write(buf); err != nil {
						return err
					}
					buf = buf[:0]
				}
			}
			_, err := w.Write(buf)
			return err
		}})
	}
	if err := safetensors.WriteDir(dir, map[string]string{"format": "pt"}, srcs, o.MaxShard); err != nil {
		return err
	}
	if err := writeConfigs(dir, c); err != nil {
		return err
	}
	return SaveTokenizer(dir, p, "")
}

// padPiece is the tokenizer's pad piece, or "".
func padPiece(p *spm.Processor) string {
	if id := p.SpecialID("pad"); id >= 0 {
		return p.IDToPiece(id)
	}
	return ""
}

func appendValue(b []byte, dt safetensors.DType, v float32) []byte {
	switch dt {
	case safetensors.F16:
		return binary.LittleEndian.AppendUint16(b, half.ToF16(v))
	case safetensors.BF16:
		return binary.LittleEndian.AppendUint16(b, half.ToBF16(v))
	}
	return binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
}

// Summary describes a model directory.
type Summary struct {
	Config  llama.Config
	Params  int64
	DTypes  map[string]int64 // elements per dtype
	Bytes   int64            // of the weight files
	Ignored []string         // tensors checkpoints carry but the model does not use
	Notes   []string         // what looks wrong but does not stop the model from running
}

// legacy reports tensors old checkpoints carry that the model recomputes.
func legacy(name string) bool { return strings.HasSuffix(name, "rotary_emb.inv_freq") }

// Inspect reads a model directory's config and checks every tensor the
// config implies against the checkpoint, and the tokenizer beside it
// against vocab_size, with errors that say what to do. With values it
// also reads every weight for NaN and infinite values.
func Inspect(dir string, values bool) (*Summary, error) {
	s, ck, err := openChecked(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	if values {
		if err := llama.CheckFinite(ck, llama.NewModelRefs(s.Config)); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	}
	tokPath := filepath.Join(dir, "tokenizer.model")
	if _, err := os.Stat(tokPath); err == nil {
		p, err := spm.LoadProcessor(tokPath)
		if err != nil {
			return nil, err
		}
		note, err := CheckTokenizer(tokPath, p.Size(), s.Config.VocabSize)
		if err != nil {
			return nil, err
		}
		if note != "" {
			s.Notes = append(s.Notes, note)
		}
	}
	return s, nil
}

// CheckTokenizer compares a tokenizer's pieces with the model's
// vocab_size: more pieces than embedding rows is an error (ids past the
// table); fewer is a note (ids the model can sample but not decode).
func CheckTokenizer(tokPath string, pieces, vocab int) (note string, err error) {
	switch {
	case pieces > vocab:
		return "", fmt.Errorf("%s has %d pieces but the model's vocab_size is %d: its embeddings have no rows for the new pieces; resize them (zhllama train with tokenizer_name_or_path does) or use the model's own tokenizer", tokPath, pieces, vocab)
	case pieces < vocab:
		return fmt.Sprintf("%s has %d pieces, fewer than vocab_size %d: ids %d to %d decode to nothing", tokPath, pieces, vocab, pieces, vocab-1), nil
	}
	return "", nil
}

// openChecked is Inspect that leaves the checkpoint open for reading.
func openChecked(dir string) (*Summary, *safetensors.Checkpoint, error) {
	c, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, nil, err
	}
	ck, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, nil, err
	}
	s, err := check(dir, c, ck)
	if err != nil {
		ck.Close()
		return nil, nil, err
	}
	return s, ck, nil
}

func check(dir string, c llama.Config, ck *safetensors.Checkpoint) (*Summary, error) {
	s := &Summary{Config: c, Params: c.NumParams(), DTypes: map[string]int64{}}
	want := map[string]bool{}
	for _, p := range c.Params() {
		want[p.Name] = true
		t, err := ck.Expect(p.Name, p.Shape...)
		if err != nil {
			if p.Module == "embed_tokens" || p.Module == "lm_head" {
				if t2, e2 := ck.Tensor(p.Name); e2 == nil && len(t2.Shape) == 2 && t2.Shape[1] == c.HiddenSize && t2.Shape[0] != c.VocabSize {
					return nil, fmt.Errorf("%s: tensor %s has %d rows but config.json says vocab_size %d: after expanding the vocabulary the embeddings must be resized to the new tokenizer (or vocab_size corrected)", dir, p.Name, t2.Shape[0], c.VocabSize)
				}
			}
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		s.DTypes[string(t.DType)] += int64(t.Elements())
		s.Bytes += int64(len(t.Data))
	}
	for _, n := range ck.Names() {
		if !want[n] {
			if legacy(n) {
				s.Ignored = append(s.Ignored, n)
				continue
			}
			return nil, fmt.Errorf("%s: tensor %s is not part of a llama model with this config.json", dir, n)
		}
	}
	return s, nil
}

// String prints the summary.
func (s *Summary) String() string {
	c := s.Config
	var b strings.Builder
	fmt.Fprintf(&b, "llama: %d layers, hidden %d, intermediate %d, heads %d (kv %d, head_dim %d), vocab %d, context %d\n",
		c.NumHiddenLayers, c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.VocabSize, c.MaxPositionEmbeddings)
	fmt.Fprintf(&b, "rope_theta %g, rms_norm_eps %g, tied embeddings %v, torch_dtype %s\n", c.RopeTheta, c.RMSNormEps, c.TieWordEmbeddings, c.TorchDType)
	fmt.Fprintf(&b, "parameters: %d (%.2fM), weights %.1f MB", s.Params, float64(s.Params)/1e6, float64(s.Bytes)/1e6)
	for dt, n := range s.DTypes {
		fmt.Fprintf(&b, ", %s %d", dt, n)
	}
	b.WriteByte('\n')
	if len(s.Ignored) > 0 {
		fmt.Fprintf(&b, "ignored %d legacy tensors (%s, ...)\n", len(s.Ignored), s.Ignored[0])
	}
	for _, n := range s.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	pm, am := c.MemoryEstimate(8, min(512, c.MaxPositionEmbeddings))
	fmt.Fprintf(&b, "training memory estimate, batch 8 × %d: %.2f GB weights+gradients+AdamW, %.2f GB activations\n",
		min(512, c.MaxPositionEmbeddings), float64(pm)/1e9, float64(am)/1e9)
	return b.String()
}

// Load reads a model directory (config.json and safetensors) into float32,
// after checking every tensor's shape against the config.
func Load(dir string) (*llama.Model, error) { return LoadWith(dir, llama.LoadOptions{}) }

// LoadWith is Load with options (bfloat16 kept mapped, quantization,
// progress).
func LoadWith(dir string, o llama.LoadOptions) (*llama.Model, error) {
	s, ck, err := openChecked(dir)
	if err != nil {
		return nil, err
	}
	m, err := llama.LoadWeights(s.Config, ck, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return m, nil
}

// Save writes m as a Hugging Face directory: config.json,
// generation_config.json and safetensors in dtype (float32, float16 or
// bfloat16), sharded past maxShard bytes (0: 5 GB).
func Save(m *llama.Model, dir, dtype string, maxShard int64) error {
	dt, err := dtypeOf(dtype)
	if err != nil {
		return err
	}
	if maxShard == 0 {
		maxShard = 5e9
	}
	srcs, err := m.Sources(dt)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := safetensors.WriteDir(dir, map[string]string{"format": "pt"}, srcs, maxShard); err != nil {
		return err
	}
	c := m.Config
	c.TorchDType = dtype
	return writeConfigs(dir, c)
}

// writeConfigs writes config.json and generation_config.json.
func writeConfigs(dir string, c llama.Config) error {
	if err := atomicfile.WriteJSON(filepath.Join(dir, "config.json"), c); err != nil {
		return err
	}
	gen := map[string]any{"bos_token_id": c.BOSTokenID, "eos_token_id": c.EOSTokenID}
	if c.PadTokenID != nil {
		gen["pad_token_id"] = *c.PadTokenID
	}
	return atomicfile.WriteJSON(filepath.Join(dir, "generation_config.json"), gen)
}
