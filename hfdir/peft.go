package hfdir

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"zhllama/internal/atomicfile"
	"zhllama/llama"
	"zhllama/safetensors"
)

// AdapterConfig is PEFT's adapter_config.json for a LoRA adapter.
type AdapterConfig struct {
	PeftType          string   `json:"peft_type"`
	TaskType          string   `json:"task_type"`
	BaseModel         string   `json:"base_model_name_or_path"`
	R                 int      `json:"r"`
	LoraAlpha         float64  `json:"lora_alpha"`
	LoraDropout       float64  `json:"lora_dropout"`
	TargetModules     Modules  `json:"target_modules"`
	ModulesToSave     []string `json:"modules_to_save"`
	Bias              string   `json:"bias"`
	FanInFanOut       bool     `json:"fan_in_fan_out"`
	InferenceMode     bool     `json:"inference_mode"`
	UseRSLoRA         bool     `json:"use_rslora"`
	InitLoraWeights   bool     `json:"init_lora_weights"`
	LayersToTransform any      `json:"layers_to_transform"`
	RankPattern       any      `json:"rank_pattern"`
	AlphaPattern      any      `json:"alpha_pattern"`
	UseDoRA           bool     `json:"use_dora,omitempty"`
}

// Modules is PEFT's target_modules: a list of module names (matching the
// end of a module's full name), or one string, a regular expression the
// whole module name must match, or all-linear.
type Modules struct {
	List  []string
	Regex string
}

func (m *Modules) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &m.Regex)
	}
	return json.Unmarshal(b, &m.List)
}

func (m Modules) MarshalJSON() ([]byte, error) {
	if m.Regex != "" {
		return json.Marshal(m.Regex)
	}
	if m.List == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(m.List)
}

func (m Modules) String() string {
	if m.Regex != "" {
		return m.Regex
	}
	return strings.Join(m.List, ",")
}

// check refuses names no llama module has and a regular expression that
// does not compile.
func (m Modules) check() error {
	if m.Regex != "" && m.Regex != "all-linear" {
		if _, err := regexp.Compile(m.Regex); err != nil {
			return fmt.Errorf("target_modules %q is not a regular expression: %w", m.Regex, err)
		}
	}
	for _, n := range m.List {
		if !slices.Contains(llama.LoRAModules, n) && !slices.Contains(llama.LoRAModules, n[strings.LastIndexByte(n, '.')+1:]) {
			return fmt.Errorf("target_modules names %q, which a llama model does not have (its projections: %s)", n, strings.Join(llama.LoRAModules, ", "))
		}
	}
	return nil
}

// Match reports whether a projection (its checkpoint name, e.g.
// model.layers.0.self_attn.q_proj.weight) is targeted.
func (m Modules) Match(param string) bool {
	module := strings.TrimSuffix(param, ".weight")
	switch {
	case m.Regex == "all-linear":
		return true // every projection; PEFT leaves out only the output layer
	case m.Regex != "":
		ok, _ := regexp.MatchString("^(?:"+m.Regex+")$", module)
		return ok
	}
	for _, n := range m.List {
		if module == n || strings.HasSuffix(module, "."+n) {
			return true
		}
	}
	return false
}

// Scale is the adapter's scaling: alpha/r, or alpha/√r with rsLoRA.
func (c *AdapterConfig) Scale() float32 {
	if c.UseRSLoRA {
		return float32(c.LoraAlpha / math.Sqrt(float64(c.R)))
	}
	return float32(c.LoraAlpha / float64(c.R))
}

// AdapterFile is the tensor file of a PEFT adapter directory.
const AdapterFile = "adapter_model.safetensors"

// PEFT key names: base_model.model.<module>.lora_A.weight, and whole
// modules_to_save tensors as base_model.model.<name>.
const peftPrefix = "base_model.model."

// LoRAKeys are the PEFT names of an adapter's A and B.
func LoRAKeys(weightName string) (a, b string) {
	base := peftPrefix + strings.TrimSuffix(weightName, ".weight")
	return base + ".lora_A.weight", base + ".lora_B.weight"
}

// SavedModuleKey is the PEFT name of a tensor saved whole.
func SavedModuleKey(name string) string { return peftPrefix + name }

// SaveAdapter writes dir/adapter_config.json and dir/adapter_model.safetensors
// with m's LoRA modules of the adapter called name and the whole tensors
// named in saved (checkpoint names such as model.embed_tokens.weight).
func SaveAdapter(m *llama.Model, dir, name string, cfg AdapterConfig, saved []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var srcs []safetensors.Source
	for _, a := range m.Adapters(name) {
		ka, kb := LoRAKeys(a.Name)
		srcs = append(srcs, safetensors.FromFloat32(ka, safetensors.F32, []int{a.LoRA.R, a.In}, a.LoRA.A),
			safetensors.FromFloat32(kb, safetensors.F32, []int{a.Out, a.LoRA.R}, a.LoRA.B))
	}
	for _, tn := range saved {
		r, err := m.Tensor(tn)
		if err != nil {
			return fmt.Errorf("cannot save %s in the adapter: %w", tn, err)
		}
		if *r.Data == nil {
			return fmt.Errorf("cannot save %s in the adapter: it is not held in float32", tn)
		}
		srcs = append(srcs, safetensors.FromFloat32(SavedModuleKey(tn), safetensors.F32, r.Shape, *r.Data))
	}
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].Name < srcs[j].Name })
	if err := safetensors.Write(filepath.Join(dir, AdapterFile), map[string]string{"format": "pt"}, srcs); err != nil {
		return err
	}
	cfg.PeftType, cfg.TaskType, cfg.Bias, cfg.InferenceMode, cfg.InitLoraWeights = "LORA", "CAUSAL_LM", "none", true, true
	if cfg.RankPattern == nil {
		cfg.RankPattern, cfg.AlphaPattern = map[string]int{}, map[string]int{}
	}
	return atomicfile.WriteJSON(filepath.Join(dir, "adapter_config.json"), cfg)
}

// ReadAdapterConfig reads dir/adapter_config.json, checking it is LoRA.
func ReadAdapterConfig(dir string) (*AdapterConfig, error) {
	path := filepath.Join(dir, "adapter_config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c AdapterConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.PeftType != "LORA" {
		return nil, fmt.Errorf("%s: peft_type %q; zhllama reads LORA adapters", path, c.PeftType)
	}
	if c.R < 1 {
		return nil, fmt.Errorf("%s: r is %d", path, c.R)
	}
	if c.FanInFanOut {
		return nil, fmt.Errorf("%s: fan_in_fan_out adapters (GPT-2 style Conv1D) do not apply to llama", path)
	}
	if c.UseDoRA {
		return nil, fmt.Errorf("%s: use_dora: DoRA adapters (a magnitude vector beside A and B) are not supported; merge it with PEFT first, or train a LoRA adapter", path)
	}
	if err := c.TargetModules.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// LoadAdapter attaches a PEFT LoRA adapter directory to m as the adapter
// called name: LoRA modules on the targeted projections and whole tensors
// (modules_to_save, resized embeddings included) in place of the model's.
// It returns the config and the names of the tensors it replaced.
func LoadAdapter(m *llama.Model, dir, name string) (*AdapterConfig, []string, error) {
	cfg, err := ReadAdapterConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, AdapterFile)
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	used := map[string]bool{}
	// Whole tensors (modules_to_save) first: a resized vocabulary changes
	// the shapes the adapters are checked against.
	var replaced []string
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if strings.Contains(t.Name, ".lora_A.") || strings.Contains(t.Name, ".lora_B.") {
			continue
		}
		tn, ok := strings.CutPrefix(t.Name, peftPrefix)
		r, err := m.Tensor(tn)
		if !ok || err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %s does not belong to a llama model of this shape", path, t.Name)
		}
		want := r.Shape
		vocab := tn == llama.SavedModules["embed_tokens"] || tn == llama.SavedModules["lm_head"]
		if vocab && len(t.Shape) == 2 && t.Shape[1] == m.Config.HiddenSize {
			want = t.Shape // a resized vocabulary
		}
		if !slices.Equal(t.Shape, want) {
			return nil, nil, fmt.Errorf("%s: tensor %s has shape %v, the model needs %v", path, t.Name, t.Shape, want)
		}
		v, err := t.Float32(nil)
		if err != nil {
			return nil, nil, err
		}
		*r.Data = v
		if r.Weight != nil {
			r.Weight.Compact = nil
		}
		if tn == llama.SavedModules["embed_tokens"] {
			m.Config.VocabSize = t.Shape[0]
			m.Tie()
		}
		used[t.Name] = true
		replaced = append(replaced, tn)
	}
	if m.LMHead.W != nil && len(m.LMHead.W) != m.Config.VocabSize*m.Config.HiddenSize {
		return nil, nil, fmt.Errorf("%s: embed_tokens has %d rows but lm_head %d: the adapter must save both when the vocabulary was resized", path, m.Config.VocabSize, len(m.LMHead.W)/m.Config.HiddenSize)
	}
	scale := cfg.Scale()
	for _, r := range m.Refs() {
		if !r.LoRA {
			continue
		}
		out, in := r.Shape[0], r.Shape[1]
		ka, kb := LoRAKeys(r.Name)
		ta, okA := f.Tensor(ka)
		tb, okB := f.Tensor(kb)
		if !okA && !okB {
			continue
		}
		if !okA || !okB {
			return nil, nil, fmt.Errorf("%s: has one of %s and %s but not the other", path, ka, kb)
		}
		if !cfg.TargetModules.Match(r.Name) {
			return nil, nil, fmt.Errorf("%s: has weights for %s, which target_modules %q in adapter_config.json does not name: the config and the weights disagree", path, strings.TrimSuffix(r.Name, ".weight"), cfg.TargetModules)
		}
		rank := cfg.R
		if len(ta.Shape) != 2 || ta.Shape[1] != in || len(tb.Shape) != 2 || tb.Shape[0] != out || ta.Shape[0] != tb.Shape[1] {
			return nil, nil, fmt.Errorf("%s: %s is %v and %s is %v; for this model they must be [r, %d] and [%d, r]", path, ka, ta.Shape, kb, tb.Shape, in, out)
		}
		if ta.Shape[0] != rank {
			return nil, nil, fmt.Errorf("%s: %s has rank %d, adapter_config.json says r %d (rank_pattern is not supported)", path, ka, ta.Shape[0], rank)
		}
		lo := &llama.LoRA{Name: name, R: rank, Scale: scale, Dropout: cfg.LoraDropout}
		if lo.A, err = ta.Float32(nil); err != nil {
			return nil, nil, err
		}
		if lo.B, err = tb.Float32(nil); err != nil {
			return nil, nil, err
		}
		if err := m.Attach(r.Name, lo); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		used[ka], used[kb] = true, true
	}
	for _, t := range f.Tensors {
		if !used[t.Name] {
			return nil, nil, fmt.Errorf("%s: tensor %s does not belong to a llama model of this shape", path, t.Name)
		}
	}
	return cfg, replaced, nil
}
