//go:build mpi

package mpi

/*
#cgo pkg-config: ompi-c
#include <stdlib.h>
#include <mpi.h>

static int thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static MPI_Comm world(void) { return MPI_COMM_WORLD; }
static MPI_Datatype f32(void) { return MPI_FLOAT; }
static MPI_Datatype i64(void) { return MPI_INT64_T; }
static MPI_Datatype bytes(void) { return MPI_BYTE; }
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"unsafe"
)

// Built reports whether this binary talks to MPI.
const Built = true

var (
	// mu serializes the calls: MPI is initialized MPI_THREAD_SERIALIZED
	// and goroutines move between threads.
	mu         sync.Mutex
	rank, size = 0, 1
	started    bool
)

// Init starts MPI and learns this process's rank and the world size.
func Init() error {
	mu.Lock()
	defer mu.Unlock()
	if started {
		return nil
	}
	var provided C.int
	if rc := C.MPI_Init_thread(nil, nil, C.thread_serialized(), &provided); rc != C.MPI_SUCCESS {
		return fmt.Errorf("MPI_Init_thread failed with code %d: check the OpenMPI installation (ompi_info)", int(rc))
	}
	if provided < C.thread_serialized() {
		return fmt.Errorf("this MPI provides thread level %d, zhllama needs MPI_THREAD_SERIALIZED (%d)", int(provided), int(C.thread_serialized()))
	}
	var r, s C.int
	C.MPI_Comm_rank(C.world(), &r)
	C.MPI_Comm_size(C.world(), &s)
	rank, size, started = int(r), int(s), true
	return nil
}

// Finalize ends MPI after every rank's last collective.
func Finalize() {
	mu.Lock()
	defer mu.Unlock()
	if started {
		C.MPI_Finalize()
		started = false
	}
}

// Rank is this process's rank, 0 before Init.
func Rank() int { return rank }

// Size is the number of ranks, 1 before Init.
func Size() int { return size }

// Abort prints why on stderr and takes every rank of the job down with
// exit status 1. It does not return.
func Abort(why string) {
	fmt.Fprintf(os.Stderr, "rank %d of %d: %s: aborting the job\n", rank, size, why)
	if started {
		C.MPI_Abort(C.world(), 1)
	}
	os.Exit(1)
}

// Barrier waits for every rank.
func Barrier() {
	mu.Lock()
	defer mu.Unlock()
	C.MPI_Barrier(C.world())
}

func ints(v []int) []C.int {
	out := make([]C.int, len(v))
	for i, x := range v {
		out[i] = C.int(x)
	}
	return out
}

func ptr[T any](v []T) unsafe.Pointer {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Pointer(&v[0])
}

// Alltoallv sends send[sendDispls[q]:+sendCounts[q]] to rank q and
// receives rank q's part into recv[recvDispls[q]:+recvCounts[q]]. It moves
// values without arithmetic, so the receiver chooses the order of any sum.
func Alltoallv(send []float32, sendCounts, sendDispls []int, recv []float32, recvCounts, recvDispls []int) error {
	if err := checkCounts(sendCounts, sendDispls, len(send)); err != nil {
		return err
	}
	if err := checkCounts(recvCounts, recvDispls, len(recv)); err != nil {
		return err
	}
	sc, sd, rc, rd := ints(sendCounts), ints(sendDispls), ints(recvCounts), ints(recvDispls)
	mu.Lock()
	defer mu.Unlock()
	if e := C.MPI_Alltoallv(ptr(send), &sc[0], &sd[0], C.f32(), ptr(recv), &rc[0], &rd[0], C.f32(), C.world()); e != C.MPI_SUCCESS {
		return fmt.Errorf("MPI_Alltoallv failed with code %d", int(e))
	}
	return nil
}

// Allgatherv gives every rank recv, in which rank q's send lies at
// displs[q] with counts[q] values.
func Allgatherv(send []float32, recv []float32, counts, displs []int) error {
	return gatherv(send, recv, counts, displs, -1)
}

// Gatherv is Allgatherv with only root receiving.
func Gatherv(send []float32, recv []float32, counts, displs []int, root int) error {
	return gatherv(send, recv, counts, displs, root)
}

func gatherv(send []float32, recv []float32, counts, displs []int, root int) error {
	if root < 0 || root == rank {
		if err := checkCounts(counts, displs, len(recv)); err != nil {
			return err
		}
	}
	if len(counts) != size {
		return fmt.Errorf("mpi: %d counts for %d ranks", len(counts), size)
	}
	if len(send) != counts[rank] {
		return fmt.Errorf("mpi: rank %d sends %d values, its count says %d", rank, len(send), counts[rank])
	}
	c, d := ints(counts), ints(displs)
	mu.Lock()
	defer mu.Unlock()
	var e C.int
	if root < 0 {
		e = C.MPI_Allgatherv(ptr(send), C.int(len(send)), C.f32(), ptr(recv), &c[0], &d[0], C.f32(), C.world())
	} else {
		e = C.MPI_Gatherv(ptr(send), C.int(len(send)), C.f32(), ptr(recv), &c[0], &d[0], C.f32(), C.int(root), C.world())
	}
	if e != C.MPI_SUCCESS {
		return fmt.Errorf("MPI gather failed with code %d", int(e))
	}
	return nil
}

// AllgatherBytes gives every rank every rank's message, in rank order.
func AllgatherBytes(msg []byte) ([][]byte, error) {
	if len(msg) > Int32Max {
		return nil, fmt.Errorf("mpi: a message of %d bytes is over the int32 count limit", len(msg))
	}
	lens := make([]int64, size)
	n := C.int64_t(len(msg))
	mu.Lock()
	defer mu.Unlock()
	if e := C.MPI_Allgather(unsafe.Pointer(&n), 1, C.i64(), ptr(lens), 1, C.i64(), C.world()); e != C.MPI_SUCCESS {
		return nil, fmt.Errorf("MPI_Allgather failed with code %d", int(e))
	}
	counts, displs := make([]C.int, size), make([]C.int, size)
	total := 0
	for q, l := range lens {
		if total+int(l) > Int32Max {
			return nil, fmt.Errorf("mpi: the ranks' messages add up to over the int32 count limit")
		}
		counts[q], displs[q] = C.int(l), C.int(total)
		total += int(l)
	}
	all := make([]byte, total+1) // +1: a valid pointer when every message is empty
	if e := C.MPI_Allgatherv(ptr(msg), C.int(len(msg)), C.bytes(), ptr(all), &counts[0], &displs[0], C.bytes(), C.world()); e != C.MPI_SUCCESS {
		return nil, fmt.Errorf("MPI_Allgatherv failed with code %d", int(e))
	}
	out := make([][]byte, size)
	for q := range out {
		out[q] = all[displs[q] : displs[q]+counts[q]]
	}
	return out, nil
}
