package train

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"zhllama/rlhf"
)

// Config is a training run, with LLaMA-Factory's key names and defaults, so
// that its YAML files run unchanged.
type Config struct {
	Stage                string   `yaml:"stage"` // pt, sft, rm, dpo, kto or ppo
	ModelNameOrPath      string   `yaml:"model_name_or_path"`
	TokenizerNameOrPath  string   `yaml:"tokenizer_name_or_path"`
	AdapterNameOrPath    string   `yaml:"adapter_name_or_path"`
	Dataset              []string `yaml:"dataset"`
	DatasetDir           string   `yaml:"dataset_dir"`
	Template             string   `yaml:"template"`
	CutoffLen            int      `yaml:"cutoff_len"`
	Packing              *bool    `yaml:"packing"` // default: on for pt, off for sft
	TrainOnPrompt        bool     `yaml:"train_on_prompt"`
	MaskHistory          bool     `yaml:"mask_history"`
	MaxSamples           int      `yaml:"max_samples"`
	ValSize              float64  `yaml:"val_size"`
	FinetuningType       string   `yaml:"finetuning_type"`
	LoraRank             int      `yaml:"lora_rank"`
	LoraAlpha            float64  `yaml:"lora_alpha"` // default 2·rank
	LoraDropout          float64  `yaml:"lora_dropout"`
	LoraTarget           []string `yaml:"lora_target"`
	AdditionalTarget     []string `yaml:"additional_target"`
	UseRSLoRA            bool     `yaml:"use_rslora"`
	FreezeTrainableLayer int      `yaml:"freeze_trainable_layers"`
	FreezeTrainableMods  []string `yaml:"freeze_trainable_modules"`
	QuantizationBit      int      `yaml:"quantization_bit"`
	NewEmbeddingInit     string   `yaml:"new_embedding_init"`
	Optim                string   `yaml:"optim"`
	LearningRate         float64  `yaml:"learning_rate"`
	LRSchedulerType      string   `yaml:"lr_scheduler_type"`
	WarmupRatio          float64  `yaml:"warmup_ratio"`
	WarmupSteps          int      `yaml:"warmup_steps"`
	NumTrainEpochs       float64  `yaml:"num_train_epochs"`
	MaxSteps             int      `yaml:"max_steps"`
	BatchSize            int      `yaml:"per_device_train_batch_size"`
	EvalBatchSize        int      `yaml:"per_device_eval_batch_size"`
	GradAccum            int      `yaml:"gradient_accumulation_steps"`
	MaxGradNorm          float64  `yaml:"max_grad_norm"`
	ZeroStage            int      `yaml:"zero_stage"` // on several ranks: 1 shards AdamW's moments (ZeRO-1)
	DeepSpeed            string   `yaml:"deepspeed"`  // a DeepSpeed JSON file: its ZeRO stage sets zero_stage
	WeightDecay          float64  `yaml:"weight_decay"`
	AdamBeta1            float64  `yaml:"adam_beta1"`
	AdamBeta2            float64  `yaml:"adam_beta2"`
	AdamEpsilon          float64  `yaml:"adam_epsilon"`
	Seed                 uint64   `yaml:"seed"`
	OutputDir            string   `yaml:"output_dir"`
	OverwriteOutputDir   bool     `yaml:"overwrite_output_dir"`
	LoggingSteps         int      `yaml:"logging_steps"`
	SaveSteps            int      `yaml:"save_steps"`
	SaveTotalLimit       int      `yaml:"save_total_limit"`
	EvalSteps            int      `yaml:"eval_steps"` // default: logging_steps
	ResumeFromCheckpoint string   `yaml:"resume_from_checkpoint"`
	GradientCheckpoint   bool     `yaml:"gradient_checkpointing"`
	PrefBeta             float64  `yaml:"pref_beta"`
	PrefLoss             string   `yaml:"pref_loss"`
	PrefFTX              float64  `yaml:"pref_ftx"`
	DPOLabelSmoothing    float64  `yaml:"dpo_label_smoothing"`
	SimPOGamma           float64  `yaml:"simpo_gamma"`
	RefModel             string   `yaml:"ref_model"`
	PrecomputeRefLogps   bool     `yaml:"precompute_ref_log_probs"`
	KTOChosenWeight      float64  `yaml:"kto_chosen_weight"`
	KTORejectedWeight    float64  `yaml:"kto_rejected_weight"`

	// PPO: LLaMA-Factory's keys, then TRL's PPOConfig fields that it does
	// not expose (with TRL's defaults).
	RewardModel         string   `yaml:"reward_model"`
	RewardModelType     string   `yaml:"reward_model_type"` // lora, full or api
	RewardModelAdapters []string `yaml:"reward_model_adapters"`
	PPOBufferSize       int      `yaml:"ppo_buffer_size"`
	PPOEpochs           int      `yaml:"ppo_epochs"`
	PPOScoreNorm        bool     `yaml:"ppo_score_norm"`
	PPOTarget           float64  `yaml:"ppo_target"`
	PPOWhitenRewards    bool     `yaml:"ppo_whiten_rewards"`
	InitKLCoef          float64  `yaml:"init_kl_coef"`
	AdapKLCtrl          bool     `yaml:"adap_kl_ctrl"`
	KLPenalty           string   `yaml:"kl_penalty"`
	Horizon             float64  `yaml:"horizon"`
	Gamma               float64  `yaml:"gamma"`
	Lam                 float64  `yaml:"lam"`
	ClipRange           float64  `yaml:"cliprange"`
	ClipRangeValue      float64  `yaml:"cliprange_value"`
	VFCoef              float64  `yaml:"vf_coef"`
	RatioThreshold      float64  `yaml:"ratio_threshold"`
	// Generation (LLaMA-Factory's generating keys), for PPO's rollouts.
	MaxNewTokens      int     `yaml:"max_new_tokens"`
	DoSample          bool    `yaml:"do_sample"`
	Temperature       float64 `yaml:"temperature"`
	TopP              float64 `yaml:"top_p"`
	TopK              int     `yaml:"top_k"`
	RepetitionPenalty float64 `yaml:"repetition_penalty"`
}

// Defaults are LLaMA-Factory's (and transformers' TrainingArguments').
func Defaults() Config {
	return Config{
		Stage: "sft", DatasetDir: "data", CutoffLen: 2048, FinetuningType: "lora", LoraRank: 8,
		LoraTarget: []string{"all"}, FreezeTrainableLayer: 2, FreezeTrainableMods: []string{"all"},
		PrefBeta: 0.1, PrefLoss: "sigmoid", SimPOGamma: 0.5, KTOChosenWeight: 1, KTORejectedWeight: 1,
		RewardModelType: "lora", PPOBufferSize: 1, PPOEpochs: 4, PPOTarget: 6, InitKLCoef: 0.2, AdapKLCtrl: true,
		KLPenalty: "kl", Horizon: 10000, Gamma: 1, Lam: 0.95, ClipRange: 0.2, ClipRangeValue: 0.2, VFCoef: 0.1,
		RatioThreshold: 10, MaxNewTokens: 1024, DoSample: true, Temperature: 0.95, TopP: 0.7, TopK: 50, RepetitionPenalty: 1,
		NewEmbeddingInit: "noisy_mean", Optim: "adamw_torch", LearningRate: 5e-5, LRSchedulerType: "linear",
		NumTrainEpochs: 3, BatchSize: 8, EvalBatchSize: 8, GradAccum: 1, MaxGradNorm: 1, AdamBeta1: 0.9,
		AdamBeta2: 0.999, AdamEpsilon: 1e-8, Seed: 42, LoggingSteps: 500, SaveSteps: 500, Template: "default",
	}
}

// ignoredKeys are LLaMA-Factory keys that mean nothing here (the engine
// always computes in float32 on the CPU); they are accepted so that its
// files run, and listed in a note.
var ignoredKeys = map[string]bool{
	"do_train": true, "do_eval": true, "do_predict": true, "trust_remote_code": true, "overwrite_cache": true,
	"preprocessing_num_workers": true, "dataloader_num_workers": true, "plot_loss": true, "report_to": true,
	"bf16": true, "fp16": true, "pure_bf16": true, "ddp_timeout": true, "save_only_model": true, "logging_dir": true,
	"eval_strategy": true, "evaluation_strategy": true, "save_strategy": true, "flash_attn": true,
	"run_name": true, "include_num_input_tokens_seen": true, "disable_tqdm": true,
	"low_cpu_mem_usage": true, "ddp_find_unused_parameters": true, "optim_target_modules": true,
	"tokenized_path": true, "streaming": true, "buffer_size": true, "enable_liger_kernel": true, "use_unsloth": true,
}

// fields maps each key to its field index.
func fields() map[string]int {
	t := reflect.TypeOf(Config{})
	out := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		out[t.Field(i).Tag.Get("yaml")] = i
	}
	return out
}

// Keys lists the keys Config understands, sorted.
func Keys() []string {
	var ks []string
	for k := range fields() {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Parse reads a YAML file (path may be empty) and then args, --key value
// or --key=value pairs that override it (a bool key alone means true). It
// returns the config and the accepted keys that have no effect here.
func Parse(path string, args []string) (Config, []string, error) {
	c := Defaults()
	var ignored []string
	set := func(src, key string, v any) error {
		if ignoredKeys[key] {
			ignored = append(ignored, key)
			return nil
		}
		i, ok := fields()[key]
		if !ok {
			return fmt.Errorf("%s: unknown key %q%s", src, key, closest(key))
		}
		if err := assign(reflect.ValueOf(&c).Elem().Field(i), v); err != nil {
			return fmt.Errorf("%s: key %s: %v", src, key, err)
		}
		return nil
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, nil, err
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return c, nil, fmt.Errorf("%s: %v", path, err)
		}
		if len(doc.Content) > 0 {
			m := doc.Content[0]
			if m.Kind != yaml.MappingNode {
				return c, nil, fmt.Errorf("%s: line %d: expected a mapping of keys to values", path, m.Line)
			}
			seen := map[string]int{}
			for i := 0; i+1 < len(m.Content); i += 2 {
				k, vn := m.Content[i], m.Content[i+1]
				if first, dup := seen[k.Value]; dup {
					return c, nil, fmt.Errorf("%s: line %d: key %s is given again (first on line %d): keep one", path, k.Line, k.Value, first)
				}
				seen[k.Value] = k.Line
				var v any
				if err := vn.Decode(&v); err != nil {
					return c, nil, fmt.Errorf("%s: line %d: %v", path, vn.Line, err)
				}
				if err := set(fmt.Sprintf("%s: line %d", path, k.Line), k.Value, v); err != nil {
					return c, nil, err
				}
			}
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			return c, nil, fmt.Errorf("argument %q: expected --key value", a)
		}
		key, val, has := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !has {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				val = args[i+1]
				i++
			} else {
				val = "true"
			}
		}
		var v any
		if err := yaml.Unmarshal([]byte(val), &v); err != nil || v == nil {
			v = val
		}
		if err := set("flag --"+key, key, v); err != nil {
			return c, nil, err
		}
	}
	if err := c.deepSpeed(); err != nil {
		return c, nil, err
	}
	return c, ignored, c.check()
}

// deepSpeed reads the ZeRO stage from the DeepSpeed config that
// LLaMA-Factory's files name and sets zero_stage from it: stages 1 to 3
// all run as ZeRO-1 here (AdamW's moments sharded; gradients and weights
// whole on every rank, nothing offloaded). An explicit zero_stage, or
// optim sgd, which has no moments, keeps its own.
func (c *Config) deepSpeed() error {
	if c.DeepSpeed == "" {
		return nil
	}
	stage, err := DeepSpeedStage(c.DeepSpeed)
	if err != nil {
		return err
	}
	if stage > 0 && c.ZeroStage == 0 && c.Optim != "sgd" {
		c.ZeroStage = 1
	}
	return nil
}

// DeepSpeedStage is zero_optimization.stage of a DeepSpeed JSON config (0
// without one).
func DeepSpeedStage(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("key deepspeed: %w", err)
	}
	var ds struct {
		Zero *struct {
			Stage any `json:"stage"`
		} `json:"zero_optimization"`
	}
	if err := json.Unmarshal(b, &ds); err != nil {
		return 0, fmt.Errorf("key deepspeed: %s: %v", path, err)
	}
	if ds.Zero == nil || ds.Zero.Stage == nil {
		return 0, nil
	}
	st, ok := ds.Zero.Stage.(float64)
	if !ok || st != math.Trunc(st) || st < 0 || st > 3 {
		return 0, fmt.Errorf("key deepspeed: %s: zero_optimization.stage is %v; want 0, 1, 2 or 3", path, ds.Zero.Stage)
	}
	return int(st), nil
}

// assign sets a field from a decoded YAML value, converting as needed.
func assign(f reflect.Value, v any) error {
	if v == nil {
		return nil // "key:" or null keeps the default
	}
	s := fmt.Sprint(v)
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		f.SetBool(b)
	case reflect.Pointer: // *bool
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		f.Set(reflect.ValueOf(&b))
	case reflect.Int, reflect.Uint64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || x != math.Trunc(x) || (f.Kind() == reflect.Uint64 && x < 0) {
			return fmt.Errorf("%q is not a whole number", s)
		}
		if f.Kind() == reflect.Int {
			f.SetInt(int64(x))
		} else {
			f.SetUint(uint64(x))
		}
	case reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		f.SetFloat(x)
	case reflect.Slice:
		var items []string
		if list, ok := v.([]any); ok {
			for _, x := range list {
				items = append(items, strings.TrimSpace(fmt.Sprint(x)))
			}
		} else {
			for _, x := range strings.Split(s, ",") {
				if x = strings.TrimSpace(x); x != "" {
					items = append(items, x)
				}
			}
		}
		f.Set(reflect.ValueOf(items))
	}
	return nil
}

// closest suggests the known key nearest to key by edit distance.
func closest(key string) string {
	best, bestD := "", 1<<30
	for _, k := range Keys() {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if bestD > max(3, len(key)/2) {
		return "; run zhllama train --help for the list"
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// check validates values and fills the defaults that depend on others.
func (c *Config) check() error {
	oneOf := func(key, v string, allowed ...string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("key %s: %q is not one of %s", key, v, strings.Join(allowed, ", "))
	}
	for _, e := range []error{
		oneOf("stage", c.Stage, "pt", "sft", "rm", "dpo", "kto", "ppo"),
		oneOf("reward_model_type", c.RewardModelType, "lora", "full", "api"),
		oneOf("finetuning_type", c.FinetuningType, "full", "freeze", "lora"),
		oneOf("optim", c.Optim, "adamw_torch", "adamw_hf", "sgd"),
		oneOf("lr_scheduler_type", c.LRSchedulerType, "linear", "cosine", "constant", "constant_with_warmup"),
		oneOf("new_embedding_init", c.NewEmbeddingInit, "mean", "noisy_mean", "normal"),
	} {
		if e != nil {
			return e
		}
	}
	switch {
	case c.ModelNameOrPath == "":
		return fmt.Errorf("key model_name_or_path is required: a model directory (config.json + safetensors)")
	case len(c.Dataset) == 0:
		return fmt.Errorf("key dataset is required: files, or names from dataset_dir's dataset_info.json")
	case c.OutputDir == "":
		return fmt.Errorf("key output_dir is required")
	case c.CutoffLen < 2:
		return fmt.Errorf("key cutoff_len: %d is too small", c.CutoffLen)
	case c.BatchSize < 1 || c.GradAccum < 1:
		return fmt.Errorf("keys per_device_train_batch_size and gradient_accumulation_steps must be at least 1")
	case c.LearningRate < 0 || c.WeightDecay < 0 || c.MaxGradNorm < 0:
		return fmt.Errorf("learning_rate, weight_decay and max_grad_norm cannot be negative")
	case c.ValSize < 0:
		return fmt.Errorf("key val_size: %g cannot be negative", c.ValSize)
	case c.QuantizationBit != 0 && c.QuantizationBit != 4 && c.QuantizationBit != 8:
		return fmt.Errorf("key quantization_bit: %d; use 4 (NF4) or 8", c.QuantizationBit)
	case c.QuantizationBit != 0 && c.FinetuningType != "lora":
		return fmt.Errorf("key quantization_bit needs finetuning_type: lora (quantized weights stay frozen)")
	case c.LoraRank < 1:
		return fmt.Errorf("key lora_rank: %d must be at least 1", c.LoraRank)
	case c.ZeroStage != 0 && c.ZeroStage != 1:
		return fmt.Errorf("key zero_stage: %d; use 0 (every rank keeps all of AdamW's state) or 1 (each keeps its shard)", c.ZeroStage)
	case c.ZeroStage == 1 && c.Optim == "sgd":
		return fmt.Errorf("key zero_stage: 1 shards AdamW's moments, and optim sgd has none: use zero_stage: 0")
	}
	if c.Stage == "ppo" {
		if err := c.checkPPO(); err != nil {
			return err
		}
	}
	if c.LoraAlpha == 0 {
		c.LoraAlpha = 2 * float64(c.LoraRank)
	}
	if c.EvalSteps == 0 {
		c.EvalSteps = c.LoggingSteps
	}
	if c.Packing == nil {
		p := c.Stage == "pt"
		c.Packing = &p
	}
	return nil
}

// checkPPO validates the PPO keys, as LLaMA-Factory's parser does and
// beyond it.
func (c *Config) checkPPO() error {
	switch {
	case c.RewardModel == "":
		return fmt.Errorf("stage ppo needs key reward_model: a reward model directory (stage rm's output_dir) or an http(s) URL with reward_model_type: api")
	case c.RewardModelType == "lora" && c.FinetuningType != "lora":
		return fmt.Errorf("reward_model_type lora puts the reward adapter on the policy's own base and needs finetuning_type: lora; use reward_model_type: full for a %s policy", c.FinetuningType)
	case c.RewardModelType == "api" && !strings.HasPrefix(c.RewardModel, "http://") && !strings.HasPrefix(c.RewardModel, "https://"):
		return fmt.Errorf("reward_model_type api: reward_model %q is not an http(s) URL", c.RewardModel)
	case c.PPOBufferSize < 1 || c.PPOEpochs < 1:
		return fmt.Errorf("keys ppo_buffer_size and ppo_epochs must be at least 1")
	case c.MaxNewTokens < 1:
		return fmt.Errorf("key max_new_tokens: %d; PPO needs at least 1 token of response", c.MaxNewTokens)
	case c.Gamma < 0 || c.Gamma > 1 || c.Lam < 0 || c.Lam > 1:
		return fmt.Errorf("keys gamma and lam must lie in [0, 1]")
	case c.ClipRange <= 0 || c.ClipRangeValue <= 0 || c.VFCoef < 0 || c.RatioThreshold <= 0 || c.Horizon <= 0 || c.InitKLCoef < 0:
		return fmt.Errorf("keys cliprange, cliprange_value, ratio_threshold and horizon must be positive, vf_coef and init_kl_coef not negative")
	}
	return rlhf.ValidKLPenalty(c.KLPenalty)
}
