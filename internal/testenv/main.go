package testenv

import (
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"testing"
)

type skip struct{ test, what, how string }

var (
	skipsMu sync.Mutex
	skips   []skip
)

func recordSkip(test, what, how string) {
	skipsMu.Lock()
	skips = append(skips, skip{test, what, how})
	skipsMu.Unlock()
}

// Main is a package's TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run runs the tests and then prints to standard output a line for each
// test that Need skipped, with what it lacked and how to get it, so that
// parity tests that did not run are seen without -v. It returns the exit
// code, for a TestMain that cleans up before exiting.
//
// Listing packages (go test ./...) hides what passing packages print, so
// on a terminal the lines go to the terminal itself.
func Run(m *testing.M) int {
	code := m.Run()
	skipsMu.Lock()
	defer skipsMu.Unlock()
	if len(skips) == 0 {
		return code
	}
	sort.SliceStable(skips, func(i, j int) bool { return skips[i].test < skips[j].test })
	var out io.Writer = os.Stdout
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		defer tty.Close()
		out = tty
	}
	for _, s := range skips {
		fmt.Fprintf(out, "testenv: skipped %s: %s is missing: %s\n", s.test, s.what, s.how)
	}
	return code
}
