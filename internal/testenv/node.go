package testenv

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// NodePeers returns the folder of the JavaScript reference implementations
// (llama.cpp through node-llama-cpp, @huggingface/jinja, @huggingface/gguf),
// pinned in internal/testenv/node/package.json; a test runs its script
// there with node. Without node or the installed packages the test stops
// as Need says.
func NodePeers(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "node")
	if _, err := exec.LookPath("node"); err != nil {
		Need(t, "node (Node.js)", "install Node.js 20 or later")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "node-llama-cpp")); err != nil {
		Need(t, "the JavaScript reference packages in "+dir, "run: cd "+dir+" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm ci --omit=optional")
	}
	return dir
}

// RunNode runs an ES module script with node among the reference packages,
// the input as JSON in the file named by process.argv[2], and decodes what
// it prints to stdout as JSON into out. The script is a file in a
// temporary folder whose node_modules links to the pinned packages, so
// imports resolve as in a project of its own.
func RunNode(t testing.TB, script string, in, out any) {
	t.Helper()
	peers := NodePeers(t)
	dir := t.TempDir()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	input, main := filepath.Join(dir, "input.json"), filepath.Join(dir, "main.mjs")
	if err := os.WriteFile(input, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(main, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(peers, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", main, input)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		t.Fatalf("node printed no JSON (%v): %.500s\n%s", err, stdout, stderr.String())
	}
}
