// Package tensor holds the compute kernels of the model, each a forward and
// backward pair on float32 slices in row-major order, and the worker pool
// they share. Results are deterministic for a given thread count: every
// output element is reduced by one goroutine in a fixed order.
package tensor

import (
	"runtime"
	"sync"
)

// Parallel runs f over [0, n) split into contiguous chunks, one per worker
// (GOMAXPROCS of them), and waits.
func Parallel(n int, f func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		if n > 0 {
			f(0, n)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	// The caller works the first chunk itself: one goroutine fewer to wake.
	for lo := chunk; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	f(0, min(chunk, n))
	wg.Wait()
}
