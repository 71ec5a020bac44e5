package tensor

import (
	"runtime"
	"syscall"
)

// madvHugepage is Linux's MADV_HUGEPAGE (the syscall package lacks it).
const madvHugepage = 14

// WeightBytes is weightBytes for a buffer outside this package (such as
// a bandwidth probe that should read memory as the weights are read).
func WeightBytes[T any](n int, owner *T) []byte { return weightBytes(n, owner) }

// weightBytes returns n zeroed bytes for a weight that decoding reads
// from end to end once per token. From 4 MB up they are an anonymous
// mapping the kernel is asked to back with 2 MB pages: under transparent
// huge pages' usual "madvise" mode Go's heap gets 4 KB pages, and a
// matrix streamed through 4 KB pages takes a TLB miss and a stop of the
// hardware prefetcher every 4 KB. (At 7B Q4_0 with 2 threads this took
// decoding from 8.8–9.5 to 10.4–10.5 tokens/s in alternating runs.) The
// mapping is released once owner is unreachable; nothing else may keep a
// slice of it.
func weightBytes[T any](n int, owner *T) []byte {
	if n < 4<<20 {
		return make([]byte, n)
	}
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n)
	}
	_ = syscall.Madvise(b, madvHugepage) // a kernel without THP keeps 4 KB pages
	runtime.AddCleanup(owner, func(b []byte) { syscall.Munmap(b) }, b)
	return b
}
