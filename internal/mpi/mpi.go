// Package mpi is the project's own small binding to OpenMPI: the few
// collectives data-parallel training needs. Built with -tags mpi it links
// libmpi through cgo (pkg-config ompi-c); the default build has a
// one-process stand-in, so it stays cgo-free, and refuses to start under
// mpirun with several ranks rather than train N unrelated copies.
package mpi

import (
	"fmt"
	"os"
	"strconv"
)

// Int32Max is the largest count one MPI call takes; callers cut larger
// buffers into pieces below it.
const Int32Max = 1<<31 - 1

// launchedSize is the number of ranks mpirun started, read from its
// environment (1 when not under mpirun).
func launchedSize() int {
	n, err := strconv.Atoi(os.Getenv("OMPI_COMM_WORLD_SIZE"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// checkCounts fails when counts and displacements do not describe a buffer
// of n values.
func checkCounts(counts, displs []int, n int) error {
	if len(counts) != len(displs) {
		return fmt.Errorf("mpi: %d counts but %d displacements", len(counts), len(displs))
	}
	for i, c := range counts {
		if c < 0 || displs[i] < 0 || displs[i]+c > n || c > Int32Max || displs[i] > Int32Max {
			return fmt.Errorf("mpi: part %d (%d values at %d) does not fit a buffer of %d values or an int32", i, c, displs[i], n)
		}
	}
	return nil
}

// World is MPI's world communicator as a value, for code that takes its
// collectives through an interface.
type World struct{}

func (World) Rank() int { return Rank() }
func (World) Size() int { return Size() }
func (World) Alltoallv(send []float32, sendCounts, sendDispls []int, recv []float32, recvCounts, recvDispls []int) error {
	return Alltoallv(send, sendCounts, sendDispls, recv, recvCounts, recvDispls)
}
func (World) Allgatherv(send, recv []float32, counts, displs []int) error {
	return Allgatherv(send, recv, counts, displs)
}
func (World) Gatherv(send, recv []float32, counts, displs []int, root int) error {
	return Gatherv(send, recv, counts, displs, root)
}
func (World) AllgatherBytes(msg []byte) ([][]byte, error) { return AllgatherBytes(msg) }
