package main

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"zhllama/llama"
	"zhllama/serve"
	"zhllama/spm"
)

// benchServe measures the serving engine's aggregate decode rate with N
// requests generating at once against one alone: what continuous batching
// buys.
func benchServe(args []string) error {
	fs := flagSet("bench serve")
	mf := addModelFlags(fs)
	tokPath := fs.String("tokenizer", "", "tokenizer.model for a random model (--preset); a --model directory brings its own")
	preset := fs.String("preset", "stories15M", "shape of the random model when no --model is given")
	streamsFlag := fs.String("streams", "1,8", "concurrent requests to measure, comma-separated")
	maxTokens := fs.Int("max_tokens", 128, "tokens each request generates (greedy; fewer if it meets EOS)")
	promptLen := fs.Int("prompt_len", 16, "prompt tokens per request")
	runs := fs.Int("runs", 3, "runs of each measurement; the median is reported")
	if err := parseFlags(fs, args, "--tokenizer T.model [--preset stories15M] | --model D; [--streams 1,8] [--max_tokens 128]"); err != nil {
		return err
	}
	var streams []int
	for _, s := range strings.Split(*streamsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return usagef("--streams %q: use positive whole numbers, comma-separated", *streamsFlag)
		}
		streams = append(streams, n)
	}
	if *maxTokens < 2 || *promptLen < 1 || *runs < 1 {
		return usagef("--max_tokens must be at least 2, --prompt_len and --runs at least 1")
	}
	var m *llama.Model
	var p *spm.Processor
	var err error
	if *mf.dir != "" {
		if m, p, err = mf.load(); err != nil {
			return err
		}
	} else {
		if *tokPath == "" {
			return usagef("give --model D, or --tokenizer T.model for a random --preset model")
		}
		if p, err = loadProcessor(*tokPath); err != nil {
			return err
		}
		c, err := llama.Preset(*preset)
		if err != nil {
			return usageError{err.Error()}
		}
		c.VocabSize = p.Size()
		m = llama.NewModel(c)
		m.Randomize(1)
		*mf.dir = "random " + *preset
	}
	fmt.Printf("%s: %.1fM parameters; %d prompt tokens, up to %d generated per request, greedy; median of %d runs\n",
		*mf.dir, float64(m.Config.NumParams())/1e6, *promptLen, *maxTokens, *runs)
	fmt.Printf("%8s %10s %9s %14s %16s %8s\n", "streams", "tokens", "seconds", "tokens/s", "per stream", "speedup")
	// Runs interleave the stream counts, so that a busy machine weighs on
	// each alike.
	type run struct {
		tps    float64
		tokens int
		secs   float64
	}
	rs := make([][]run, len(streams))
	for range *runs {
		for k, n := range streams {
			tps, tokens, secs, err := serveRate(m, p, n, *promptLen, *maxTokens)
			if err != nil {
				return err
			}
			rs[k] = append(rs[k], run{tps, tokens, secs})
		}
	}
	var base float64
	for k, n := range streams {
		slices.SortFunc(rs[k], func(a, b run) int { return cmp.Compare(a.tps, b.tps) })
		med := rs[k][len(rs[k])/2]
		if base == 0 {
			base = med.tps
		}
		fmt.Printf("%8d %10d %9.2f %14.1f %16.1f %7.2fx\n", n, med.tokens, med.secs, med.tps, med.tps/float64(n), med.tps/base)
	}
	return nil
}

// serveRate runs n requests at once through an engine of n slots and
// returns the generated tokens per second of wall time.
func serveRate(m *llama.Model, p *spm.Processor, n, promptLen, maxTokens int) (tps float64, tokens int, secs float64, err error) {
	e := serve.NewEngine(m, p, serve.EngineOptions{Parallel: n, Ctx: min(m.Config.MaxPositionEmbeddings, promptLen+maxTokens+1)})
	defer e.Close()
	rng := rand.New(rand.NewPCG(7, 7))
	prompts := make([][]int32, n)
	for i := range prompts {
		prompts[i] = []int32{int32(max(0, p.SpecialID("bos")))}
		for len(prompts[i]) < promptLen {
			prompts[i] = append(prompts[i], int32(3+rng.IntN(m.Config.VocabSize-3)))
		}
	}
	var wg sync.WaitGroup
	counts := make([]int, n)
	errs := make([]error, n)
	start := time.Now()
	for i := range n {
		t, err := e.Submit(context.Background(), prompts[i], serve.Params{MaxTokens: maxTokens})
		if err != nil {
			return 0, 0, 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				evs, _ := t.Next(context.Background())
				last := evs[len(evs)-1]
				if last.Err != nil || last.Finish != "" {
					counts[i], errs[i] = last.Usage.CompletionTokens, last.Err
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	for i := range n {
		if errs[i] != nil {
			return 0, 0, 0, errs[i]
		}
		tokens += counts[i]
	}
	return float64(tokens) / el, tokens, el, nil
}
