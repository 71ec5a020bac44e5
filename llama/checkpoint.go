package llama

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"zhllama/internal/half"

	"zhllama/internal/atomicfile"
	"zhllama/safetensors"
)

// dtypes maps torch_dtype names to safetensors element types.
var dtypes = map[string]safetensors.DType{"float32": safetensors.F32, "float16": safetensors.F16, "bfloat16": safetensors.BF16}

// InitOptions control Init.
type InitOptions struct {
	Seed     uint64
	DType    string // float32, float16 or bfloat16; default the config's torch_dtype
	MaxShard int64  // bytes per safetensors shard; 0 means 5 GB
}

// Init writes a randomly initialized model directory as transformers
// initializes LlamaForCausalLM: linear and embedding weights from
// N(0, initializer_range), norm weights 1, with config.json and
// generation_config.json. The caller takes the vocabulary size and the
// special ids from its tokenizer and writes the tokenizer's files.
func Init(c Config, dir string, o InitOptions) error {
	if o.DType != "" {
		c.TorchDType = o.DType
	}
	dt, ok := dtypes[c.TorchDType]
	if !ok {
		return fmt.Errorf("dtype %q: use float32, float16 or bfloat16", c.TorchDType)
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
			next := initValues(&c, o.Seed, i, prm.Name)
			n := 1
			for _, d := range prm.Shape {
				n *= d
			}
			buf := make([]byte, 0, 1<<16)
			for k := 0; k < n; k++ {
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
	return writeConfigs(dir, c)
}

// initValues generates parameter i's initial values as transformers
// initializes LlamaForCausalLM: norm weights 1, biases 0, the rest
// N(0, initializer_range), from a stream seeded by seed and i.
func initValues(c *Config, seed uint64, i int, name string) func() float32 {
	switch {
	case strings.HasSuffix(name, "norm.weight"):
		return func() float32 { return 1 }
	case strings.HasSuffix(name, ".bias"):
		return func() float32 { return 0 }
	}
	rng := rand.New(rand.NewPCG(seed*1_000_003+uint64(i), 0x11a3a))
	return func() float32 { return float32(rng.NormFloat64() * c.InitializerRange) }
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
	Config  Config
	Params  int64
	DTypes  map[string]int64 // elements per dtype
	Bytes   int64            // of the weight files
	Ignored []string         // tensors checkpoints carry but the model does not use
}

// legacy reports tensors old checkpoints carry that the model recomputes.
func legacy(name string) bool { return strings.HasSuffix(name, "rotary_emb.inv_freq") }

// Inspect reads a model directory's config and checks every tensor the
// config implies against the checkpoint, with errors that say what to do.
func Inspect(dir string) (*Summary, error) {
	s, ck, err := openChecked(dir)
	if err != nil {
		return nil, err
	}
	ck.Close()
	return s, nil
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

func check(dir string, c Config, ck *safetensors.Checkpoint) (*Summary, error) {
	s := &Summary{Config: c, Params: c.NumParams(), DTypes: map[string]int64{}}
	want := map[string]bool{}
	for _, p := range c.Params() {
		want[p.Name] = true
		t, err := ck.Expect(p.Name, p.Shape...)
		if err != nil {
			if p.Name == "model.embed_tokens.weight" || p.Name == "lm_head.weight" {
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
	pm, am := c.MemoryEstimate(8, min(512, c.MaxPositionEmbeddings))
	fmt.Fprintf(&b, "training memory estimate, batch 8 × %d: %.2f GB weights+gradients+AdamW, %.2f GB activations\n",
		min(512, c.MaxPositionEmbeddings), float64(pm)/1e9, float64(am)/1e9)
	return b.String()
}

// Save writes the model as a Hugging Face directory: config.json,
// generation_config.json and safetensors in dtype (float32, float16 or
// bfloat16), sharded past maxShard bytes (0: 5 GB). Weights held compactly
// are an error: save the model they were loaded from.
func (m *Model) Save(dir, dtype string, maxShard int64) error {
	dt, ok := dtypes[dtype]
	if !ok {
		return fmt.Errorf("dtype %q: use float32, float16 or bfloat16", dtype)
	}
	if maxShard == 0 {
		maxShard = 5e9
	}
	c := m.Config
	c.TorchDType = dtype
	var srcs []safetensors.Source
	for _, r := range m.Refs() {
		if r.Weight != nil && r.Weight.Compact != nil {
			return fmt.Errorf("tensor %s is held compactly and cannot be saved", r.Name)
		}
		srcs = append(srcs, safetensors.FromFloat32(r.Name, dt, r.Shape, *r.Data))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := safetensors.WriteDir(dir, map[string]string{"format": "pt"}, srcs, maxShard); err != nil {
		return err
	}
	return writeConfigs(dir, c)
}

// writeConfigs writes config.json and generation_config.json.
func writeConfigs(dir string, c Config) error {
	if err := atomicfile.WriteJSON(filepath.Join(dir, "config.json"), c); err != nil {
		return err
	}
	gen := map[string]any{"bos_token_id": c.BOSTokenID, "eos_token_id": c.EOSTokenID}
	if c.PadTokenID != nil {
		gen["pad_token_id"] = *c.PadTokenID
	}
	return atomicfile.WriteJSON(filepath.Join(dir, "generation_config.json"), gen)
}
