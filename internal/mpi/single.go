//go:build !mpi

package mpi

import (
	"fmt"
	"os"
)

// Built reports whether this binary talks to MPI.
const Built = false

// Init refuses a launch by mpirun with several ranks: each would train
// alone, as one process, and write the same output.
func Init() error {
	if n := launchedSize(); n > 1 {
		return fmt.Errorf("mpirun started %d ranks, but this zhllama was built without MPI: build it with `go build -tags mpi ./cmd/zhllama` (needs libopenmpi-dev), or run it without mpirun", n)
	}
	return nil
}

func Finalize() {}
func Rank() int { return 0 }
func Size() int { return 1 }
func Barrier()  {}
func Abort(why string) {
	fmt.Fprintf(os.Stderr, "%s: aborting\n", why)
	os.Exit(1)
}

// Alltoallv with one rank copies send's part into recv's.
func Alltoallv(send []float32, sendCounts, sendDispls []int, recv []float32, recvCounts, recvDispls []int) error {
	if err := checkCounts(sendCounts, sendDispls, len(send)); err != nil {
		return err
	}
	if err := checkCounts(recvCounts, recvDispls, len(recv)); err != nil {
		return err
	}
	copy(recv[recvDispls[0]:recvDispls[0]+recvCounts[0]], send[sendDispls[0]:sendDispls[0]+sendCounts[0]])
	return nil
}

func Allgatherv(send []float32, recv []float32, counts, displs []int) error {
	if err := checkCounts(counts, displs, len(recv)); err != nil {
		return err
	}
	copy(recv[displs[0]:displs[0]+counts[0]], send)
	return nil
}

func Gatherv(send []float32, recv []float32, counts, displs []int, root int) error {
	return Allgatherv(send, recv, counts, displs)
}

func AllgatherBytes(msg []byte) ([][]byte, error) { return [][]byte{msg}, nil }
