package main

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"zhllama/gguf"
	"zhllama/llama"
	"zhllama/spm"
	"zhllama/tensor"
)

// buildLlamaBench builds llama.cpp's llama-bench from the sources of the
// prebuilt llama.cpp that the npm package node-llama-cpp ships (the one
// the GGUF parity tests run), without cmake.
//
//go:embed build-llama-bench.sh
var buildLlamaBench string

// vsLlamaCpp are bench generate --vs llamacpp's settings.
type vsLlamaCpp struct {
	preset, model, outtype string
	threads                []int
	gen, prompt, depth     int
	runs                   int
	llamaBench             string
	bandwidth              bool
	halfCache              bool // zhllama's KV cache in float16, as llama.cpp's
}

// sideResult is what zhllama's side prints (--side zhllama), one thread
// count in one process.
type sideResult struct {
	Threads      int       `json:"threads"`
	DecodeTPS    float64   `json:"decode_tokens_per_s"`
	PromptTPS    float64   `json:"prompt_tokens_per_s"`
	DecodeSample []float64 `json:"decode_samples_ts"`
	PromptSample []float64 `json:"prompt_samples_ts"`
	PeakRSSMB    float64   `json:"peak_rss_mb"`
}

// parseThreads reads --threads' comma-separated list.
func parseThreads(s string) ([]int, error) {
	var ts []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, usagef("--threads %q: give thread counts of 1 or more, e.g. 1,2", s)
		}
		ts = append(ts, n)
	}
	return ts, nil
}

// benchBytesPerValue is the size of one weight in outtype (blocks of 32
// with a 2-byte scale for the quantized ones).
var benchBytesPerValue = map[string]float64{"f32": 4, "f16": 2, "bf16": 2, "q8_0": 34.0 / 32, "q4_0": 18.0 / 32}

// benchVocab is a placeholder vocabulary for a random model: <unk>, <s>,
// </s> and the 256 byte pieces; the GGUF writer pads it with unused
// pieces up to vocab_size. Neither side tokenizes text: both feed ids.
func benchVocab() (*spm.Processor, error) {
	pieces := []spm.Piece{spm.NewPiece("<unk>", 0, spm.Unknown), spm.NewPiece("<s>", 0, spm.Control), spm.NewPiece("</s>", 0, spm.Control)}
	for b := 0; b < 256; b++ {
		pieces = append(pieces, spm.NewPiece(spm.ByteToPiece(byte(b)), 0, spm.Byte))
	}
	tr, norm := &spm.Spec{}, &spm.Spec{}
	tr.SetInt(spm.TrModelType, spm.ModelBPE)
	tr.SetBool(spm.TrByteFallback, true)
	tr.SetInt(spm.TrUnkID, 0)
	tr.SetInt(spm.TrBosID, 1)
	tr.SetInt(spm.TrEosID, 2)
	tr.SetInt(spm.TrPadID, -1)
	norm.SetString(spm.NormName, "identity")
	return spm.NewProcessor(&spm.Model{Pieces: pieces, Trainer: tr, Normalizer: norm})
}

// writeRandomGGUF writes a model of config c with random weights (LLaMA's
// initialization, N(0, initializer_range); norms 1) straight to a GGUF
// file, row by row, so that a 7B model never sits in memory as float32.
// Each row has its own seeded stream, so the file is the same every time.
func writeRandomGGUF(path string, c llama.Config, outtype string) error {
	typ, err := gguf.ParseOutType(outtype)
	if err != nil {
		return usageError{err.Error()}
	}
	voc, err := benchVocab()
	if err != nil {
		return err
	}
	index := map[string]uint64{}
	for i, p := range c.Params() {
		index[p.Name] = uint64(i)
	}
	total := float64(c.NumParams()) * benchBytesPerValue[outtype]
	var shown int64
	progress := func(done, all int64) {
		// Only big models take long enough to need a sign of life.
		if total > 1e9 && done-shown >= all/10 {
			shown = done
			fmt.Fprintf(os.Stderr, "writing %s: %.0f%%\n", filepath.Base(path), 100*float64(done)/float64(all))
		}
	}
	row := func(r llama.Ref, i int, dst []float32) {
		if !r.Matrix {
			for k := range dst {
				dst[k] = 1
			}
			return
		}
		rng := rand.New(rand.NewPCG(index[r.Name], uint64(i)))
		for k := range dst {
			dst[k] = float32(rng.NormFloat64() * c.InitializerRange)
		}
	}
	return gguf.WriteModelRows(path, c, gguf.ModelOptions{Type: typ, Name: "zhllama-bench-random", Tokenizer: voc, AddBOS: true}, row, progress)
}

// weightBytesPerToken is what one decoded token reads of a GGUF model's
// weights: every tensor, except that a token embedding with a separate
// output matrix is read one row at a time.
func weightBytesPerToken(path string) (int64, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	_, untied := f.Tensor("output.weight")
	var n int64
	for _, t := range f.Tensors {
		if t.Name == "token_embd.weight" && untied {
			n += int64(len(t.Data)) / int64(t.Ne[1])
			continue
		}
		n += int64(len(t.Data))
	}
	return n, nil
}

// readBandwidth measures memory read bandwidth in bytes/s as decoding
// reads weights: a 1 GiB float32 matrix (far beyond any L3), in memory
// allocated as the weights' copies are (2 MB pages where Linux gives
// them), run through the float32 GEMV kernel with threads workers; the
// median of five passes after one warm-up. The matrix is written first:
// untouched pages all map the kernel's one zero page and would be read
// from cache.
func readBandwidth(threads int) float64 {
	const in = 1024
	owner := new(int)
	b := tensor.WeightBytes(1<<30, owner)
	w := unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
	for i := range w {
		w[i] = float32(i % 251)
	}
	x, y := make([]float32, in), make([]float32, len(w)/in)
	if runtime.GOMAXPROCS(0) != threads {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
	}
	var times []time.Duration
	for pass := 0; pass <= 5; pass++ {
		start := time.Now()
		tensor.Linear(y, x, w, 1, in, len(y))
		if pass > 0 {
			times = append(times, time.Since(start))
		}
	}
	runtime.KeepAlive(owner)
	return float64(len(b)) / median(times).Seconds()
}

// benchVsLlamaCpp runs bench generate --vs llamacpp.
func benchVsLlamaCpp(o vsLlamaCpp) error {
	var c llama.Config
	path, name := o.model, o.model
	if path != "" {
		f, err := gguf.Open(path)
		if err != nil {
			return err
		}
		c, err = gguf.ReadConfig(f)
		f.Close()
		if err != nil {
			return err
		}
		name = filepath.Base(path)
	} else {
		var err error
		if c, err = llama.Preset(o.preset); err != nil {
			return usageError{err.Error()}
		}
		name = o.preset
		bpv, ok := benchBytesPerValue[o.outtype]
		if !ok {
			_, err := gguf.ParseOutType(o.outtype)
			return usageError{err.Error()}
		}
		// zhllama widens F32 files into its heap, so f32 stops at 4 GB (a 7B
		// is 27 GB); the other types it reads from the mapped file, whose
		// pages llama-bench shares, so they need to fit in memory once.
		size, mem := float64(c.NumParams())*bpv, float64(meminfo("MemTotal"))
		if (o.outtype == "f32" && size > 4e9) || (mem > 0 && size > 0.8*mem) {
			return usagef("--preset %s --outtype %s: %.1f GB of weights is too much for this bench (f32 up to 4 GB; the rest up to 80%% of this machine's %.0f GB); use --outtype q4_0 (%.1f GB), q8_0 (%.1f GB), or f16/bf16 (%.1f GB) where that fits",
				o.preset, o.outtype, size/1e9, mem/1e9, float64(c.NumParams())*benchBytesPerValue["q4_0"]/1e9,
				float64(c.NumParams())*benchBytesPerValue["q8_0"]/1e9, float64(c.NumParams())*2/1e9)
		}
		dir, err := os.MkdirTemp("", "zhllama-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, o.preset+"-"+o.outtype+".gguf")
		start := time.Now()
		if err := writeRandomGGUF(path, c, o.outtype); err != nil {
			return err
		}
		fmt.Printf("%s: %.1fM parameters, random weights written as %s GGUF in %.1fs (both sides load this file)\n",
			o.preset, float64(c.NumParams())/1e6, o.outtype, time.Since(start).Seconds())
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	perToken, err := weightBytesPerToken(path)
	if err != nil {
		return err
	}
	fmt.Printf("model %s: %.0f MB file, %.0f MB of weights read per decoded token\n", name, float64(st.Size())/1e6, float64(perToken)/1e6)
	cacheType := map[bool]string{false: "float32", true: "float16"}[o.halfCache]
	fmt.Printf("KV cache: zhllama %s, llama.cpp float16 (llama-bench's only floating-point cache type)\n", cacheType)
	bandwidth := map[int]float64{}
	if o.bandwidth || perToken > 1e9 {
		for _, t := range o.threads {
			bandwidth[t] = readBandwidth(t)
			fmt.Printf("memory read bandwidth, %d thread%s: %.1f GB/s (decoding bound %.2f tokens/s)\n", t, plural(t), bandwidth[t]/1e9, bandwidth[t]/float64(perToken))
		}
		debug.FreeOSMemory()
	}
	lb, why := findLlamaBench(o.llamaBench)
	if lb == "" {
		fmt.Printf("llama.cpp side skipped: %s\n", why)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	decodeTest := fmt.Sprintf("tg%d@d%d", o.gen, o.depth)
	promptTest := fmt.Sprintf("pp%d", o.prompt)
	type row struct {
		test         string
		threads      int
		ours, theirs float64
	}
	var rows []row
	var results []map[string]any
	for _, t := range o.threads {
		// zhllama's side runs in a child process started with GOMAXPROCS=t,
		// so the Go runtime sizes everything for t threads from the start,
		// as llama-bench's -t does for its thread pool.
		cmd := exec.Command(self, "bench", "generate", "--vs", "llamacpp", "--side", "zhllama", "--model", path,
			"--max_new_tokens", strconv.Itoa(o.gen), "--prompt", strconv.Itoa(o.prompt), "--depth", strconv.Itoa(o.depth), "--runs", strconv.Itoa(o.runs),
			"--kv_cache_dtype", cacheType)
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(t))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("zhllama's side (%d threads): %v\n%s", t, err, stderr.String())
		}
		var z sideResult
		if err := json.Unmarshal(lastLine(out), &z); err != nil {
			return fmt.Errorf("zhllama's side printed %q: %w", out, err)
		}
		// A test of size 0 (--max_new_tokens 0 or --prompt 0) is skipped on
		// both sides.
		var ld, lp float64
		if lb != "" && o.gen > 0 {
			if ld, err = runLlamaBench(lb, path, t, o.runs, "-p", "0", "-n", strconv.Itoa(o.gen), "-d", strconv.Itoa(o.depth)); err != nil {
				return err
			}
		}
		if lb != "" && o.prompt > 0 {
			if lp, err = runLlamaBench(lb, path, t, o.runs, "-p", strconv.Itoa(o.prompt), "-n", "0"); err != nil {
				return err
			}
		}
		if o.gen > 0 {
			rows = append(rows, row{decodeTest, t, z.DecodeTPS, ld})
		}
		if o.prompt > 0 {
			rows = append(rows, row{promptTest, t, z.PromptTPS, lp})
		}
		r := map[string]any{"threads": t, "decode_tokens_per_s": z.DecodeTPS, "prompt_tokens_per_s": z.PromptTPS, "peak_rss_mb": z.PeakRSSMB}
		if lb != "" && o.gen > 0 {
			r["llamacpp_decode_tokens_per_s"], r["decode_ratio"] = ld, z.DecodeTPS/ld
		}
		if lb != "" && o.prompt > 0 {
			r["llamacpp_prompt_tokens_per_s"], r["prompt_ratio"] = lp, z.PromptTPS/lp
		}
		if bw, ok := bandwidth[t]; ok {
			r["bandwidth_gb_s"], r["decode_bandwidth_share"] = bw/1e9, z.DecodeTPS*float64(perToken)/bw
			if lb != "" {
				r["llamacpp_decode_bandwidth_share"] = ld * float64(perToken) / bw
			}
		}
		results = append(results, r)
	}
	weights := o.outtype
	if o.model != "" {
		weights = fileWeights(path)
	}
	w := max(14, len(name))
	fmt.Printf("\n%-*s %-8s %-12s %7s %14s %16s %7s\n", w, "model", "weights", "test", "threads", "zhllama tok/s", "llama.cpp tok/s", "ratio")
	for _, r := range rows {
		theirs, ratio := "-", "-"
		if lb != "" {
			theirs, ratio = fmt.Sprintf("%.1f", r.theirs), fmt.Sprintf("%.2f", r.ours/r.theirs)
		}
		fmt.Printf("%-*s %-8s %-12s %7d %14.1f %16s %7s\n", w, name, weights, r.test, r.threads, r.ours, theirs, ratio)
	}
	for _, t := range o.threads {
		if bw, ok := bandwidth[t]; ok {
			var ours, theirs float64
			for _, r := range rows {
				if r.threads == t && r.test == decodeTest {
					ours, theirs = r.ours, r.theirs
				}
			}
			fmt.Printf("decoding at %d thread%s reads %.0f%% of the %.1f GB/s bound (zhllama)", t, plural(t), 100*ours*float64(perToken)/bw, bw/1e9)
			if lb != "" {
				fmt.Printf(", %.0f%% (llama.cpp)", 100*theirs*float64(perToken)/bw)
			}
			fmt.Println()
		}
	}
	res := map[string]any{"bench": "generate", "vs": "llamacpp", "model": name, "weights": weights, "kv_cache_dtype": cacheType, "max_new_tokens": o.gen, "depth": o.depth,
		"prompt": o.prompt, "runs": o.runs, "weight_bytes_per_token": perToken, "results": results}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}

// fileWeights names the type of a GGUF model's projections (that of its
// first layer's ffn_up), lower-case as --outtype spells it.
func fileWeights(path string) string {
	f, err := gguf.Open(path)
	if err != nil {
		return "?"
	}
	defer f.Close()
	if t, ok := f.Tensor("blk.0.ffn_up.weight"); ok {
		return strings.ToLower(t.Type.String())
	}
	return "?"
}

func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

// findLlamaBench returns the llama-bench to run: the given one, or the
// one built in the user cache folder (building it the first time), or ""
// and why not, naming what to install.
func findLlamaBench(given string) (string, string) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Sprintf("--llama_bench %s: %v", given, err)
		}
		return given, ""
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Sprintf("no cache folder to build llama-bench in (%v): set XDG_CACHE_HOME or give --llama_bench PATH", err)
	}
	dir := filepath.Join(cache, "zhllama", "llama-bench")
	bin := filepath.Join(dir, "bin", "llama-bench")
	if _, err := os.Stat(bin); err == nil {
		return bin, ""
	}
	var missing []string
	for _, tool := range []string{"node", "npm", "git", "g++", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Sprintf("building llama-bench needs %s: install Node.js 20 or later (node, npm), git and g++ (apt-get install nodejs npm git g++), or give --llama_bench PATH", strings.Join(missing, ", "))
	}
	fmt.Fprintf(os.Stderr, "building llama.cpp's llama-bench in %s (node-llama-cpp 3.21.1's llama.cpp; once)\n", dir)
	cmd := exec.Command("bash", "-c", buildLlamaBench, "build-llama-bench.sh", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Sprintf("building llama-bench in %s failed (%v); remove that folder to retry, or give --llama_bench PATH:\n%s", dir, err, tail(out.String(), 2000))
	}
	return bin, ""
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// runLlamaBench runs one llama-bench test on t threads and returns the
// median tokens/s of its repetitions (samples_ts of its JSON lines).
func runLlamaBench(bin, model string, t, runs int, test ...string) (float64, error) {
	args := append([]string{"-m", model, "-t", strconv.Itoa(t), "-r", strconv.Itoa(runs), "-o", "jsonl"}, test...)
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, tail(stderr.String(), 2000))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			SamplesTS []float64 `json:"samples_ts"`
			AvgTS     float64   `json:"avg_ts"`
		}
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue
		}
		if len(r.SamplesTS) > 0 {
			return medianFloat(r.SamplesTS), nil
		}
		if r.AvgTS > 0 {
			return r.AvgTS, nil
		}
	}
	return 0, fmt.Errorf("%s %s printed no result line with samples_ts:\n%s", bin, strings.Join(args, " "), tail(string(out), 2000))
}

func medianFloat(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchSideZhllama is zhllama's side of --vs llamacpp on one GGUF file,
// timed as llama-bench times its tests: after a warm-up (the prompt test
// once, one decoded token), each repetition of the decoding test feeds
// depth tokens untimed and then decodes gen tokens one at a time; each
// repetition of the prompt test feeds prompt tokens in one pass to an
// empty cache. Tokens are <s> then random ids, logits come from the last
// position only, and nothing is sampled — as in llama-bench.
func benchSideZhllama(path string, gen, prompt, depth, runs int, half bool) error {
	m, _, err := gguf.LoadModel(path, true)
	if err != nil {
		return err
	}
	defer m.Close()
	c := m.Config
	rng := rand.New(rand.NewPCG(1, 2))
	tokens := func(n int, bos bool) []int32 {
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32(rng.IntN(c.VocabSize))
		}
		if bos && n > 0 {
			ids[0] = int32(c.BOSTokenID)
		}
		return ids
	}
	// One cache per test, emptied before each repetition, as llama-bench
	// keeps one context and clears its memory: a server reuses its cache,
	// and fresh pages on every repetition would time the kernel's faults.
	pc := m.NewCache(1, prompt, half)
	promptOnce := func() time.Duration {
		ca := pc
		ca.KV.Reset(0)
		ids := tokens(prompt, true)
		start := time.Now()
		m.Step(ca, [][]int32{ids})
		return time.Since(start)
	}
	if prompt > 0 {
		promptOnce()
	}
	if gen > 0 {
		m.Step(m.NewCache(1, 1, half), [][]int32{{int32(c.BOSTokenID)}})
	}
	var res sideResult
	res.Threads = runtime.GOMAXPROCS(0)
	ca := m.NewCache(1, depth+gen, half)
	for r := 0; r < runs && gen > 0; r++ {
		ca.KV.Reset(0)
		if depth > 0 {
			m.Step(ca, [][]int32{tokens(depth, true)})
		}
		next := tokens(gen, depth == 0)
		start := time.Now()
		for _, id := range next {
			m.Step(ca, [][]int32{{id}})
		}
		res.DecodeSample = append(res.DecodeSample, float64(gen)/time.Since(start).Seconds())
	}
	for r := 0; r < runs && prompt > 0; r++ {
		res.PromptSample = append(res.PromptSample, float64(prompt)/promptOnce().Seconds())
	}
	if len(res.DecodeSample) > 0 {
		res.DecodeTPS = medianFloat(res.DecodeSample)
	}
	if len(res.PromptSample) > 0 {
		res.PromptTPS = medianFloat(res.PromptSample)
	}
	res.PeakRSSMB = peakRSS()
	if math.IsInf(res.DecodeTPS, 0) || math.IsInf(res.PromptTPS, 0) {
		return errors.New("a timed test took no measurable time: raise --max_new_tokens or --prompt")
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}

// benchGenerateVsLlamaCpp checks bench generate's flags for --vs llamacpp
// and runs it, or zhllama's side alone (--side zhllama).
func benchGenerateVsLlamaCpp(fs *flag.FlagSet, preset, dtype, outtype, threads, model, llamaBench, side, kvCache string, batch, gen, prompt, depth, runs int, bandwidth bool) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if batch != 1 {
		return usagef("--batch %d: --vs llamacpp decodes one sequence, as llama-bench does", batch)
	}
	if gen < 0 || prompt < 0 || depth < 0 || gen+prompt == 0 {
		return usagef("--max_new_tokens %d, --prompt %d, --depth %d: use counts of 0 or more, one of the first two above 0", gen, prompt, depth)
	}
	if runs < 1 {
		return usagef("--runs %d: use 1 or more", runs)
	}
	half, err := halfCache(kvCache)
	if err != nil {
		return err
	}
	if side != "" {
		if side != "zhllama" || model == "" {
			return usagef("--side %q: the one side is zhllama, and it needs --model F.gguf", side)
		}
		return benchSideZhllama(model, gen, prompt, depth, runs, half)
	}
	if model != "" && (set["preset"] || set["outtype"] || set["dtype"]) {
		return usagef("--model %s brings its own shape and weights: leave out --preset, --outtype and --dtype", model)
	}
	if model != "" && !isGGUF(model) {
		return usagef("--model %s: --vs llamacpp measures a .gguf file", model)
	}
	if outtype == "" {
		switch dtype {
		case "float32":
			outtype = "f32"
		case "bfloat16":
			outtype = "bf16"
		default:
			outtype = dtype
		}
	}
	ts, err := parseThreads(threads)
	if err != nil {
		return err
	}
	return benchVsLlamaCpp(vsLlamaCpp{preset: preset, model: model, outtype: outtype, threads: ts, gen: gen, prompt: prompt, depth: depth,
		runs: runs, llamaBench: llamaBench, bandwidth: bandwidth, halfCache: half})
}
