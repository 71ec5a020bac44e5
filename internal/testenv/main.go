package testenv

import (
	"fmt"
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
// go test shows this output when run in a package's directory without
// arguments, with -v or with -json; listing packages (go test ./...) hides
// the output of packages that pass.
func Run(m *testing.M) int {
	code := m.Run()
	skipsMu.Lock()
	defer skipsMu.Unlock()
	sort.SliceStable(skips, func(i, j int) bool { return skips[i].test < skips[j].test })
	for _, s := range skips {
		fmt.Printf("testenv: skipped %s: %s is missing: %s\n", s.test, s.what, s.how)
	}
	return code
}
