package tensor

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"zhllama/internal/testenv"
)

// A large BlocksFor copy lives in a mapping of its own that reads as the
// rows it came from and is unmapped once the matrix is unreachable.
func TestBlocksForLarge(t *testing.T) {
	if x16Kernel == nil {
		t.Skip("no sixteen-row kernel on this CPU (AVX-512 VNNI) or with ZHLLAMA_NOASM/NOAVX512")
	}
	rng := rand.New(rand.NewPCG(31, 32))
	const rows, cols = 1024, 8192 // 4.5 MB of Q4_0
	data := randBlocks(rng, rows*cols/QBlock, Q4_0BlockBytes)
	at := func() uintptr { // the matrix is unreachable once this returns
		m, copied := BlocksFor(data, rows, cols, true)
		if !copied || !m.Interleaved() {
			t.Fatal("BlocksFor did not copy into the sixteen-row layout")
		}
		native := &Blocks{Rows: rows, Cols: cols, Data: data, Q4: true}
		for _, r := range []int{0, 17, rows - 1} {
			got, want := make([]float32, cols), make([]float32, cols)
			m.Widen(got, r, 0)
			native.Widen(want, r, 0)
			testenv.AssertClose(t, "Widen", got, want, 0, 1)
		}
		at := uintptr(unsafe.Pointer(&m.Data[len(m.Data)/2]))
		if !mapped(t, at) {
			t.Fatalf("%#x is in no mapping", at)
		}
		return at
	}()
	for range 100 {
		runtime.GC()
		if !mapped(t, at) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the mapping outlived its matrix")
}

// mapped says whether address at is in a mapping of this process.
func mapped(t *testing.T, at uintptr) bool {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(maps), "\n") {
		var lo, hi uintptr
		if _, err := fmt.Sscanf(l, "%x-%x", &lo, &hi); err == nil && lo <= at && at < hi {
			return true
		}
	}
	return false
}
