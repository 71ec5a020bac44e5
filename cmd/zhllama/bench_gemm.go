package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"zhllama/tensor"
)

// torchGemmScript times torch.mm (x · wᵀ) for the sizes in argv and prints
// {size: GFLOP/s} as JSON: the median of the runs, after a warm-up.
const torchGemmScript = `
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
runs = int(sys.argv[2])
out = {}
for n in map(int, sys.argv[3:]):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b.T
    ts = []
    for _ in range(runs):
        t = time.perf_counter(); a @ b.T; ts.append(time.perf_counter() - t)
    ts.sort()
    out[n] = 2 * n ** 3 / ts[len(ts) // 2] / 1e9
print(json.dumps(out))
`

func benchGemm(args []string) error {
	fs := flagSet("bench gemm")
	sizes := fs.String("sizes", "256,512,1024", "square sizes n (n×n times n×n)")
	runs := fs.Int("runs", 7, "timed runs per size; the median is reported")
	if err := parseFlags(fs, args, "[--sizes 256,512,1024] [--runs 7]"); err != nil {
		return err
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return usagef("--sizes: %q is not a size", s)
		}
		ns = append(ns, n)
	}
	threads := runtime.GOMAXPROCS(0)
	torch := map[string]float64{}
	args2 := append([]string{"-c", torchGemmScript, strconv.Itoa(threads), strconv.Itoa(*runs)}, strings.Split(*sizes, ",")...)
	if out, err := exec.Command("/usr/bin/python3", args2...).Output(); err == nil {
		json.Unmarshal(out, &torch)
	} else {
		fmt.Println("(PyTorch not measured: /usr/bin/python3 with python3-torch is needed)")
	}
	type row struct {
		N       int     `json:"n"`
		Ours    float64 `json:"zhllama_gflops"`
		Torch   float64 `json:"torch_gflops,omitempty"`
		Speedup float64 `json:"ratio,omitempty"`
	}
	var rows []row
	fmt.Printf("GEMM x·wᵀ, %d threads, kernel %s, median of %d\n  %6s %14s %14s %8s\n", threads, tensor.KernelName, *runs, "n", "zhllama GF/s", "PyTorch GF/s", "ratio")
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range ns {
		x, w, y := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
		for i := range x {
			x[i], w[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		tensor.Gemm(false, true, n, n, n, 1, x, n, w, n, 0, y, n)
		ts := make([]time.Duration, *runs)
		for i := range ts {
			start := time.Now()
			tensor.Gemm(false, true, n, n, n, 1, x, n, w, n, 0, y, n)
			ts[i] = time.Since(start)
		}
		r := row{N: n, Ours: 2 * float64(n) * float64(n) * float64(n) / median(ts).Seconds() / 1e9, Torch: torch[strconv.Itoa(n)]}
		ratio := "-"
		if r.Torch > 0 {
			r.Speedup = r.Ours / r.Torch
			ratio = fmt.Sprintf("%.2fx", r.Speedup)
		}
		fmt.Printf("  %6d %14.1f %14.1f %8s\n", n, r.Ours, r.Torch, ratio)
		rows = append(rows, r)
	}
	b, _ := json.Marshal(map[string]any{"bench": "gemm", "kernel": tensor.KernelName, "threads": threads, "results": rows})
	fmt.Println(string(b))
	return nil
}
