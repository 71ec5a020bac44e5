package testenv

import (
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
