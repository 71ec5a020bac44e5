// Package tensor holds the compute kernels of the model, each a forward and
// backward pair on float32 slices in row-major order, and the worker pool
// they share. Results are deterministic for a given thread count: every
// output element is reduced by one goroutine in a fixed order.
package tensor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Parallel runs f over [0, n) split into contiguous chunks, one per worker
// (GOMAXPROCS of them), and waits. The chunks do not depend on which
// goroutine runs them, so neither do the results.
func Parallel(n int, f func(lo, hi int)) { parallel(n, 1, f) }

// ParallelFine is Parallel with about four chunks a worker, claimed as
// workers come free: for work whose results do not depend on where the
// chunks end (each output computed whole within one chunk), so that a
// worker the machine slows does not hold up the rest.
func ParallelFine(n int, f func(lo, hi int)) { parallel(n, 4, f) }

// ParallelLarge is Parallel for items that touch values values in all:
// under 16K of them (too few to pay for the hand-off) it runs f on the
// caller.
func ParallelLarge(n, values int, f func(lo, hi int)) { split(values < 1<<14, n, 1, f) }

// split runs f over [0, n) across the workers in perWorker chunks each,
// or whole on the calling goroutine when serial: for work inside a
// Parallel chunk that already has a worker to itself.
func split(serial bool, n, perWorker int, f func(lo, hi int)) {
	if serial {
		if n > 0 {
			f(0, n)
		}
		return
	}
	parallel(n, perWorker, f)
}

// parallel runs f over [0, n) in perWorker chunks a worker.
func parallel(n, perWorker int, f func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		if n > 0 {
			f(0, n)
		}
		return
	}
	chunk := (n + perWorker*workers - 1) / (perWorker * workers)
	chunks := (n + chunk - 1) / chunk
	j := &job{f: f, n: n, chunk: chunk, chunks: int64(chunks), done: make(chan struct{})}
	if !workPool.mu.TryLock() {
		// Another caller holds the pool (a Parallel inside a chunk, or
		// concurrent callers): start goroutines for this one.
		spawn(j, workers)
		return
	}
	defer workPool.mu.Unlock()
	workPool.run(j, workers-1)
}

// spawn runs j on workers-1 goroutines of its own and the caller, each
// claiming chunks as it comes free, so that nested calls neither start a
// goroutine a chunk nor wait on one that the machine has paused.
func spawn(j *job, workers int) {
	var wg sync.WaitGroup
	for range min(workers, int(j.chunks)) - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.work()
		}()
	}
	j.work()
	wg.Wait()
}

// pool is a set of goroutines started once that take the chunks of one
// job at a time. A job is handed over through an atomic pointer that idle
// workers watch for a short while before they sleep: a decoding step makes
// hundreds of small hand-offs, and waking a sleeping thread for each (as a
// fresh goroutine per chunk does) costs tens of microseconds every time.
type pool struct {
	mu       sync.Mutex // held by the caller whose job runs
	job      atomic.Pointer[job]
	workers  int           // started so far
	sleeping atomic.Int32  // workers blocked on wake
	wake     chan struct{} // a token wakes one sleeping worker
}

// job is one Parallel call: its chunks are claimed in any order by the
// caller and the workers.
type job struct {
	f              func(lo, hi int)
	n, chunk       int
	chunks         int64
	next, finished atomic.Int64
	done           chan struct{} // closed when every chunk has run
}

var workPool = pool{wake: make(chan struct{}, 256)}

// spinFor is how long an idle worker, and a caller waiting for the last
// chunks, watch before blocking.
const spinFor = 50 * time.Microsecond

// run hands j to the workers (starting up to want of them), works on it
// too, and returns when all its chunks have run.
func (p *pool) run(j *job, want int) {
	for ; p.workers < min(want, cap(p.wake)); p.workers++ {
		go p.worker()
	}
	p.job.Store(j)
	for range min(int(p.sleeping.Load()), int(j.chunks)-1) {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	j.work()
	if !spin(func() bool { return j.finished.Load() == j.chunks }) {
		<-j.done
	}
}

// work claims and runs chunks of j until none is left.
func (j *job) work() {
	for {
		i := j.next.Add(1) - 1
		if i >= j.chunks {
			return
		}
		lo := int(i) * j.chunk
		j.f(lo, min(lo+j.chunk, j.n))
		if j.finished.Add(1) == j.chunks {
			close(j.done)
		}
	}
}

// worker runs every job it sees, watching for the next one for spinFor
// before it sleeps until woken.
func (p *pool) worker() {
	var seen *job
	for {
		if !spin(func() bool { return p.job.Load() != seen }) {
			p.sleeping.Add(1)
			// Sleep unless a job came while we said so: the caller reads
			// sleeping after publishing, so one of the two sees the other.
			if p.job.Load() == seen {
				<-p.wake
			}
			p.sleeping.Add(-1)
			continue
		}
		seen = p.job.Load()
		seen.work()
	}
}

// spin reports whether ready became true within spinFor.
func spin(ready func() bool) bool {
	start := time.Now()
	for i := 0; ; i++ {
		if ready() {
			return true
		}
		if i%64 == 63 {
			if time.Since(start) > spinFor {
				return false
			}
			runtime.Gosched()
		}
	}
}
