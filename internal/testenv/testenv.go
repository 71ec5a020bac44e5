// Package testenv locates the shared test data that lives beside the
// repository (../shared/data), and the reference tools tests compare against.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Dir returns the shared data directory, or skips the test when it is absent.
// ZHLLAMA_SHARED overrides the location of the shared directory.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("ZHLLAMA_SHARED"); d != "" {
		return filepath.Join(d, "data")
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, "..", "shared", "data")
			if _, err := os.Stat(d); err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("shared test data not found at %s (CI must have it)", d)
				}
				t.Skipf("shared test data not found at %s; put the shared folder beside the repository or set ZHLLAMA_SHARED", d)
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

// Tool returns the path of a reference command, or skips the test with the
// Debian package to install. Under CI it fails instead: parity must run there.
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found: CI must install Debian's %s", name, pkg)
		}
		t.Skipf("%s not found: install Debian's %s (apt-get install %s) to run this parity test", name, pkg, pkg)
	}
	return p
}
