// Package torchref carries the PyTorch reference implementation of LLaMA
// that parity tests and benchmarks run with /usr/bin/python3 and Debian's
// python3-torch. It is linked into the zhllama binary (bench model), so it
// must not import testing: tests call testenv.RequireTorch.
package torchref

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

//go:embed torch_reference.py
var script string

// Python is the interpreter that has Debian's python3-torch.
const Python = "/usr/bin/python3"

// Available reports whether python3-torch can be imported.
func Available() bool {
	return exec.Command(Python, "-c", "import torch").Run() == nil
}

// Run runs the reference script with args in dir (where it is written)
// and returns its standard output.
func Run(dir string, args ...string) ([]byte, error) {
	return run(dir, nil, args)
}

// RunFair runs a benchmark mode with OpenBLAS's own choices: without
// OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which tests and CI may set to
// pin a slower code path. OpenBLAS gets as many threads as zhllama has
// (GOMAXPROCS): torch.set_num_threads does not reach the threads of
// Debian's OpenBLAS, which would otherwise use every core.
func RunFair(dir string, args ...string) ([]byte, error) {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OPENBLAS_CORETYPE=") && !strings.HasPrefix(kv, "OPENBLAS_L2_SIZE=") && !strings.HasPrefix(kv, "OPENBLAS_NUM_THREADS=") {
			env = append(env, kv)
		}
	}
	env = append(env, fmt.Sprintf("OPENBLAS_NUM_THREADS=%d", runtime.GOMAXPROCS(0)))
	return run(dir, env, args)
}

// fairBLAS reports whether a BLAS library path (as the reference prints
// it) is an optimized one rather than the reference BLAS that Debian's
// libblas.so.3 falls back to.
func fairBLAS(path string) bool {
	return strings.Contains(strings.ToLower(path), "openblas") || strings.Contains(strings.ToLower(path), "mkl") || strings.Contains(path, "blis")
}

// CheckBLAS refuses a benchmark against the reference BLAS, naming what to
// install: a ratio against it would flatter zhllama.
func CheckBLAS(path string) error {
	if !fairBLAS(path) {
		return fmt.Errorf("PyTorch multiplies through %s, the reference BLAS: a ratio against it would flatter zhllama; install libopenblas0-pthread (apt-get install libopenblas0-pthread)", path)
	}
	return nil
}

func run(dir string, env []string, args []string) ([]byte, error) {
	path := filepath.Join(dir, "torch_reference.py")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(Python, append([]string{path}, args...)...)
	cmd.Env = env
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return out, fmt.Errorf("torch reference: %v\n%s", err, ee.Stderr)
	}
	return out, err
}
