package llama

import (
	"encoding/binary"
	"math"
	"testing"

	"zhllama/internal/half"
	"zhllama/safetensors"
)

// float32Parallel converts a tensor of several pieces, into a reused
// buffer longer than it, as the whole conversion does, and rejects a dtype
// that is not float.
func TestFloat32Parallel(t *testing.T) {
	n := 3<<16 + 5
	data := make([]byte, 2*n)
	for i := range n {
		binary.LittleEndian.PutUint16(data[2*i:], half.ToBF16(float32(i%1000)-500.25))
	}
	tn := &safetensors.Tensor{Name: "w", DType: safetensors.BF16, Shape: []int{n}, Data: data}
	want, err := tn.Float32(nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]float32, n+100)
	for i := range buf {
		buf[i] = float32(math.NaN())
	}
	got, err := float32Parallel(tn, buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n || &got[0] != &buf[0] {
		t.Fatalf("%d values, buffer reused %v", len(got), &got[0] == &buf[0])
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("value %d: %g, want %g", i, got[i], want[i])
		}
	}
	ids := &safetensors.Tensor{Name: "ids", DType: safetensors.I64, Shape: []int{2}, Data: make([]byte, 16)}
	if _, err := float32Parallel(ids, nil); err == nil {
		t.Error("an I64 tensor converted")
	}
}
