package torchref

import (
	"strings"
	"testing"
)

// Benchmarks refuse the reference BLAS that Debian's libblas.so.3 falls
// back to, and say what to install.
func TestCheckBLAS(t *testing.T) {
	for _, path := range []string{"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so", "/opt/intel/lib/libmkl_rt.so"} {
		if err := CheckBLAS(path); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	for _, path := range []string{"/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0", "?"} {
		if err := CheckBLAS(path); err == nil || !strings.Contains(err.Error(), "libopenblas0-pthread") {
			t.Errorf("%s: %v", path, err)
		}
	}
}
