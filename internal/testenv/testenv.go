// Package testenv is what the tests share: the test data that lives beside
// the repository (../shared/data), the reference tools parity tests run,
// the rule for when they are missing, and numeric and file helpers.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"zhllama/llama/torchref"
)

// Need stops a test that lacks what (data, a tool) with how to get it: a
// skip, except under CI (CI set), where parity tests must run and a missing
// reference is a failure. Skips are listed again by Main.
func Need(t testing.TB, what, how string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing, and CI must run this test: %s", what, how)
	} else {
		recordSkip(t.Name(), what, how)
		t.Skipf("%s is missing: %s", what, how)
	}
}

// Dir returns the shared data directory, or skips the test when it is absent.
// ZHLLAMA_SHARED overrides the location of the shared directory.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("ZHLLAMA_SHARED"); d != "" {
		d = filepath.Join(d, "data")
		if _, err := os.Stat(d); err != nil {
			Need(t, "shared test data at "+d, "point ZHLLAMA_SHARED at the shared folder")
		}
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, "..", "shared", "data")
			if _, err := os.Stat(d); err != nil {
				Need(t, "shared test data at "+d, "put the shared folder beside the repository or set ZHLLAMA_SHARED")
			}
			return d
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Path returns a file under the shared data directory.
func Path(t testing.TB, rel string) string {
	return filepath.Join(Dir(t), rel)
}

// Tool returns the path of a reference command, or stops the test (see
// Need) with the Debian package to install.
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Need(t, name, fmt.Sprintf("install Debian's %s (apt-get install %s)", pkg, pkg))
	}
	return p
}

// RequireTorch stops a test (see Need) that runs the PyTorch reference
// without python3-torch.
func RequireTorch(t testing.TB) {
	t.Helper()
	if !torchref.Available() {
		Need(t, "python3-torch", "install Debian's python3-torch (apt-get install python3-torch) to run the PyTorch parity tests")
	}
}

// JiebaDict returns the path of jieba's dict.txt as /usr/bin/python3's
// jieba installs it, or stops the test (see Need).
func JiebaDict(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "-c", "import jieba, os; print(os.path.join(os.path.dirname(jieba.__file__), 'dict.txt'))").Output()
	if err != nil {
		Need(t, "python3-jieba", "install Debian's python3-jieba (apt-get install python3-jieba)")
	}
	return strings.TrimSpace(string(out))
}
