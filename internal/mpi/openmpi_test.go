//go:build mpi

package mpi

import (
	"fmt"
	"os"
	"testing"
)

// Run under mpirun (go test -tags mpi -exec "mpirun -np 3 ..."): every
// collective moves exactly the values it should, at any world size.
func TestMain(m *testing.M) {
	if err := Init(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	Finalize()
	os.Exit(code)
}

func TestCollectives(t *testing.T) {
	n, r := Size(), Rank()
	if want := launchedSize(); n != want {
		t.Fatalf("MPI says %d ranks, mpirun started %d", n, want)
	}
	// Rank r sends q+1 values r*100+q*10+i to rank q.
	var send []float32
	sc, sd, rc, rd := make([]int, n), make([]int, n), make([]int, n), make([]int, n)
	for q := range n {
		sc[q], sd[q] = q+1, len(send)
		for i := range q + 1 {
			send = append(send, float32(r*100+q*10+i))
		}
		rc[q], rd[q] = r+1, q*(r+1)
	}
	recv := make([]float32, n*(r+1))
	if err := Alltoallv(send, sc, sd, recv, rc, rd); err != nil {
		t.Fatal(err)
	}
	for q := range n {
		for i := range r + 1 {
			if got, want := recv[q*(r+1)+i], float32(q*100+r*10+i); got != want {
				t.Fatalf("alltoallv: from rank %d value %d is %g, want %g", q, i, got, want)
			}
		}
	}
	counts, displs := make([]int, n), make([]int, n)
	total := 0
	for q := range n {
		counts[q], displs[q] = q+1, total
		total += q + 1
	}
	mine := make([]float32, r+1)
	for i := range mine {
		mine[i] = float32(r) + 0.5
	}
	for _, root := range []int{-1, n - 1} {
		all := make([]float32, total)
		var err error
		if root < 0 {
			err = Allgatherv(mine, all, counts, displs)
		} else {
			err = Gatherv(mine, all, counts, displs, root)
		}
		if err != nil {
			t.Fatal(err)
		}
		if root >= 0 && r != root {
			continue
		}
		for q := range n {
			for i := range q + 1 {
				if got := all[displs[q]+i]; got != float32(q)+0.5 {
					t.Fatalf("gather (root %d): rank %d's value %d is %g", root, q, i, got)
				}
			}
		}
	}
	msgs, err := AllgatherBytes([]byte(fmt.Sprint("rank ", r)[:4+r%2]))
	if err != nil {
		t.Fatal(err)
	}
	for q, m := range msgs {
		if want := fmt.Sprint("rank ", q)[:4+q%2]; string(m) != want {
			t.Fatalf("allgather bytes: rank %d sent %q, got %q", q, want, m)
		}
	}
	Barrier()
}
