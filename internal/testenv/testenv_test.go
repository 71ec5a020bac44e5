package testenv

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTB records how a helper stopped a test instead of stopping it.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Name() string { return "TestFake" }
func (f *fakeTB) Fatal(a ...any) {
	f.fatal = fmt.Sprint(a...)
}
func (f *fakeTB) Fatalf(format string, a ...any) {
	f.fatal = fmt.Sprintf(format, a...)
}
func (f *fakeTB) Skipf(format string, a ...any) {
	f.skip = fmt.Sprintf(format, a...)
}

func TestNeedSkipsOrFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "")
	f := &fakeTB{}
	Need(f, "frobnicator", "apt-get install frob")
	if f.fatal != "" || !strings.Contains(f.skip, "frobnicator") || !strings.Contains(f.skip, "apt-get install frob") {
		t.Errorf("outside CI: fatal %q, skip %q", f.fatal, f.skip)
	}
	skipsMu.Lock()
	last := skips[len(skips)-1]
	skips = skips[:len(skips)-1] // not a real skip of this package's tests
	skipsMu.Unlock()
	if last != (skip{"TestFake", "frobnicator", "apt-get install frob"}) {
		t.Errorf("recorded %+v", last)
	}
	t.Setenv("CI", "true")
	f = &fakeTB{}
	Need(f, "frobnicator", "apt-get install frob")
	if f.skip != "" || !strings.Contains(f.fatal, "CI must run this test") {
		t.Errorf("under CI: fatal %q, skip %q", f.fatal, f.skip)
	}
	f = &fakeTB{}
	Tool(f, "no-such-tool-zhllama", "zhllama-tools")
	if !strings.Contains(f.fatal, "apt-get install zhllama-tools") {
		t.Errorf("Tool under CI: %q", f.fatal)
	}
}

func TestMaxRelDiff(t *testing.T) {
	want := []float64{1, -200, 0, 1e-9}
	got := []float64{1.005, -202, 0, 0}
	d, i := MaxRelDiff(got, want, 1)
	if i != 1 || math.Abs(d-0.01) > 1e-12 {
		t.Errorf("MaxRelDiff = %g at %d, want 0.01 at 1", d, i)
	}
	if d, i := MaxRelDiff([]float32{0, float32(math.NaN())}, []float32{0, 1}, 0); i != 1 || !math.IsInf(d, 1) {
		t.Errorf("NaN: %g at %d", d, i)
	}
	if d, i := MaxRelDiff([]float32{}, nil, 1); d != 0 || i != -1 {
		t.Errorf("empty: %g at %d", d, i)
	}
	f := &fakeTB{}
	AssertClose(f, "x", got, want, 1e-3, 1)
	if !strings.Contains(f.fatal, "x[1] = -202, want -200") {
		t.Errorf("AssertClose: %q", f.fatal)
	}
	f = &fakeTB{}
	AssertClose(f, "x", got, want, 0.02, 1)
	AssertClose(f, "x", got[:1], want[:1], 0.02, 1)
	if f.fatal != "" {
		t.Errorf("AssertClose within tolerance: %q", f.fatal)
	}
	AssertClose(f, "x", got[:2], want, 0.02, 1)
	if !strings.Contains(f.fatal, "2 values, want 4") {
		t.Errorf("AssertClose of different lengths: %q", f.fatal)
	}
}

func TestNumericGrad(t *testing.T) {
	x := []float32{0.5, -1, 2}
	f := func() float64 { // x0² + 3·x1·x2
		return float64(x[0])*float64(x[0]) + 3*float64(x[1])*float64(x[2])
	}
	g := NumericGrad(f, x, []int{0, 1, 2}, 1e-2)
	want := []float64{1, 6, -3}
	for i := range want {
		if math.Abs(g[i]-want[i]) > 1e-4 {
			t.Errorf("d/dx%d = %g, want %g", i, g[i], want[i])
		}
	}
	if x[0] != 0.5 || x[1] != -1 || x[2] != 2 {
		t.Errorf("x not restored: %v", x)
	}
}

func TestReadJSON(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.json")
	WriteFile(t, p, []byte(`{"a": [1, 2]}`))
	var v struct{ A []int }
	ReadJSON(t, p, &v)
	if len(v.A) != 2 || v.A[1] != 2 {
		t.Errorf("ReadJSON: %+v", v)
	}
	lines := filepath.Join(dir, "b.jsonl")
	WriteFile(t, lines, []byte("{\"k\": 1}\n{\"k\": 2}\n"))
	if got := ReadJSONLines[map[string]int](t, lines); len(got) != 2 || got[1]["k"] != 2 {
		t.Errorf("ReadJSONLines: %v", got)
	}
	WriteFile(t, lines, []byte("{\"k\": 1}\nnot json\n"))
	f := &fakeTB{}
	ReadJSONLines[map[string]int](f, lines)
	if !strings.Contains(f.fatal, "b.jsonl:2") {
		t.Errorf("bad line: %q", f.fatal)
	}
	f = &fakeTB{}
	ReadJSON(f, filepath.Join(dir, "missing.json"), &v)
	if f.fatal == "" {
		t.Error("a missing file was read")
	}
}
