// Package pipeline runs work on several goroutines while keeping results in
// input order: the shape of every streaming job here (encode a file, pack a
// corpus, clean a dataset).
package pipeline

import "sync"

// Ordered runs work on each item that produce emits, on threads
// goroutines, and hands the results to sink in the order the items were
// emitted. emit returns false once the run is ending (sink failed); an
// error from sink or produce ends the run and is returned.
func Ordered[T, R any](threads int, produce func(emit func(T) bool) error, work func(worker int, item T) R, sink func(R) error) error {
	threads = max(threads, 1)
	type job struct {
		item T
		out  chan R
	}
	jobs := make(chan job, threads*2)
	order := make(chan chan R, threads*4)
	var wg sync.WaitGroup
	for w := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				j.out <- work(w, j.item)
			}
		}()
	}
	done := make(chan struct{})
	prodErr := make(chan error, 1)
	go func() {
		defer close(prodErr)
		defer close(order)
		defer close(jobs)
		err := produce(func(item T) bool {
			ch := make(chan R, 1)
			select {
			case order <- ch:
			case <-done:
				return false
			}
			jobs <- job{item, ch}
			return true
		})
		if err != nil {
			prodErr <- err
		}
	}()
	var serr error
	for ch := range order {
		r := <-ch
		if serr == nil {
			if serr = sink(r); serr != nil {
				close(done)
			}
		}
	}
	wg.Wait()
	if err := <-prodErr; err != nil && serr == nil {
		return err
	}
	return serr
}
