package llama

import (
	"math/rand/v2"
	"strings"
)

// InitValues generates parameter i's initial values (i in Params' order)
// as transformers initializes LlamaForCausalLM: norm weights 1, biases 0,
// the rest N(0, initializer_range), from a stream seeded by seed and i.
func InitValues(c *Config, seed uint64, i int, name string) func() float32 {
	switch {
	case strings.HasSuffix(name, "norm.weight"):
		return func() float32 { return 1 }
	case strings.HasSuffix(name, ".bias"):
		return func() float32 { return 0 }
	}
	rng := rand.New(rand.NewPCG(seed*1_000_003+uint64(i), 0x11a3a))
	return func() float32 { return float32(rng.NormFloat64() * c.InitializerRange) }
}
