//go:build !mpi

package mpi

import (
	"strings"
	"testing"
)

// A build without MPI started by mpirun with several ranks refuses to run
// rather than train the same model N times over.
func TestRefusesSeveralRanks(t *testing.T) {
	t.Setenv("OMPI_COMM_WORLD_SIZE", "2")
	if err := Init(); err == nil || !strings.Contains(err.Error(), "-tags mpi") {
		t.Errorf("Init under 2 ranks: %v", err)
	}
	t.Setenv("OMPI_COMM_WORLD_SIZE", "1")
	if err := Init(); err != nil || Size() != 1 || Rank() != 0 {
		t.Errorf("Init alone: %v, size %d, rank %d", err, Size(), Rank())
	}
}
