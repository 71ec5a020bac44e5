package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"zhllama/llama/torchref"
	"zhllama/tensor"
)

// gemmShape is one GEMM of the bench: x·wᵀ with x M×K and w N×K.
type gemmShape struct{ m, n, k int }

func (s gemmShape) String() string { return fmt.Sprintf("%dx%dx%d", s.m, s.n, s.k) }

// parseGemmShapes reads "512" (square) or "2048x768x288" (M×N×K) items.
func parseGemmShapes(list string) ([]gemmShape, error) {
	var out []gemmShape
	for _, item := range strings.Split(list, ",") {
		var d []int
		for _, f := range strings.Split(strings.TrimSpace(item), "x") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				return nil, usagef("--sizes: %q is not n or MxNxK", item)
			}
			d = append(d, n)
		}
		switch len(d) {
		case 1:
			out = append(out, gemmShape{d[0], d[0], d[0]})
		case 3:
			out = append(out, gemmShape{d[0], d[1], d[2]})
		default:
			return nil, usagef("--sizes: %q is not n or MxNxK", item)
		}
	}
	return out, nil
}

// gemmSamples times f as both sides of bench gemm sample it: first run
// for at least 0.1 s (a multiply of a few milliseconds, timed alone, can
// catch the core before its clock settles and read at half speed), then
// runs samples of enough calls to last about 50 ms each; it returns each
// sample's time per call.
func gemmSamples(runs int, f func()) []time.Duration {
	calls, start := 0, time.Now()
	for calls == 0 || time.Since(start) < 100*time.Millisecond {
		f()
		calls++
	}
	reps := max(1, int(50*time.Millisecond*time.Duration(calls)/time.Since(start)))
	ts := make([]time.Duration, runs)
	for i := range ts {
		t := time.Now()
		for range reps {
			f()
		}
		ts[i] = time.Since(t) / time.Duration(reps)
	}
	return ts
}

func benchGemm(args []string) error {
	fs := flagSet("bench gemm")
	sizes := fs.String("sizes", "512,1024,2048x768x288,2048x32000x288,256x256x48",
		"n (n×n times n×n) or MxNxK shapes of x·wᵀ; the defaults are square sizes and stories15M's projection, LM head and an attention tile")
	runs := fs.Int("runs", 7, "timed samples per size and round, each of enough multiplies to last about 50 ms (after 0.1 s of warm-up)")
	rounds := fs.Int("rounds", 2, "rounds, each timing PyTorch's side and then zhllama's; the median of each side's samples over all rounds is reported")
	withTorch := fs.Bool("torch", true, "also time torch.mm on the same shapes and threads (OpenBLAS; OPENBLAS_CORETYPE/L2_SIZE unset for it)")
	if err := parseFlags(fs, args, "[--sizes 512,1024,2048x768x288] [--runs 7] [--rounds 2]"); err != nil {
		return err
	}
	if *runs < 1 || *rounds < 1 {
		return usagef("--runs %d, --rounds %d: use 1 or more", *runs, *rounds)
	}
	shapes, err := parseGemmShapes(*sizes)
	if err != nil {
		return err
	}
	threads := runtime.GOMAXPROCS(0)
	torchOn := *withTorch && torchref.Available()
	if *withTorch && !torchOn {
		fmt.Println("(PyTorch not measured: /usr/bin/python3 with python3-torch is needed)")
	}
	dir, err := os.MkdirTemp("", "zhllama-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The sides take turns, round after round, so that a change in the
	// machine's speed between them moves both.
	ours, theirs := make([][]float64, len(shapes)), make([][]float64, len(shapes))
	var blas string
	var steal stealReport
	for range *rounds {
		if torchOn {
			targs := []string{"bench-gemm", strconv.Itoa(threads), strconv.Itoa(*runs)}
			for _, s := range shapes {
				targs = append(targs, s.String())
			}
			m := readSteal()
			out, err := torchref.RunFair(dir, targs...)
			if err != nil {
				return err
			}
			steal.add("torch", m)
			var torch struct {
				Seconds map[string][]float64 `json:"seconds"`
				BLAS    string               `json:"blas"`
			}
			if err := json.Unmarshal(out, &torch); err != nil {
				return fmt.Errorf("PyTorch benchmark output %q: %w", out, err)
			}
			if err := torchref.CheckBLAS(torch.BLAS); err != nil {
				return err
			}
			blas = torch.BLAS
			for i, s := range shapes {
				theirs[i] = append(theirs[i], torch.Seconds[s.String()]...)
			}
		}
		m := readSteal()
		for i, s := range shapes {
			// A shape's operands at a time (the LM head's are 300 MB).
			rng := rand.New(rand.NewPCG(1, uint64(i)))
			x, w, y := make([]float32, s.m*s.k), make([]float32, s.n*s.k), make([]float32, s.m*s.n)
			for j := range x {
				x[j] = float32(rng.NormFloat64())
			}
			for j := range w {
				w[j] = float32(rng.NormFloat64())
			}
			for _, t := range gemmSamples(*runs, func() { tensor.Gemm(false, true, s.m, s.n, s.k, 1, x, s.k, w, s.k, 0, y, s.n) }) {
				ours[i] = append(ours[i], t.Seconds())
			}
		}
		steal.add("zhllama", m)
	}
	type row struct {
		Shape   string  `json:"shape"`
		Ours    float64 `json:"zhllama_gflops"`
		Torch   float64 `json:"torch_gflops,omitempty"`
		Speedup float64 `json:"ratio,omitempty"`
	}
	var rows []row
	fmt.Printf("GEMM x·wᵀ (x M×K, w N×K), %d threads, kernel %s, median of %d samples a side (%d rounds)", threads, tensor.KernelName, *runs**rounds, *rounds)
	if blas != "" {
		fmt.Printf("; PyTorch through %s", blas)
	}
	fmt.Printf("\n  %16s %14s %14s %8s\n", "MxNxK", "zhllama GF/s", "PyTorch GF/s", "ratio")
	for i, s := range shapes {
		flop := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		r := row{Shape: s.String(), Ours: flop / medianFloat(ours[i]) / 1e9}
		ratio := "-"
		if len(theirs[i]) > 0 {
			r.Torch = flop / medianFloat(theirs[i]) / 1e9
			r.Speedup = r.Ours / r.Torch
			ratio = fmt.Sprintf("%.2fx", r.Speedup)
		}
		fmt.Printf("  %16s %14.1f %14.1f %8s\n", r.Shape, r.Ours, r.Torch, ratio)
		rows = append(rows, r)
	}
	res := map[string]any{"bench": "gemm", "kernel": tensor.KernelName, "threads": threads, "torch_blas": blas, "rounds": *rounds, "results": rows}
	if note := steal.note(res); note != "" {
		fmt.Println(note)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}
