package kvcache

import (
	"slices"
	"testing"

	"zhllama/internal/half"
)

// rowsOf reads the first n positions of each head back into the rows'
// layout [n × heads × hd].
func rowsOf(kv []float32, stride, n, heads, hd int) []float32 {
	out := make([]float32, 0, n*heads*hd)
	for j := range n {
		for h := range heads {
			out = append(out, kv[h*stride+j*hd:h*stride+(j+1)*hd]...)
		}
	}
	return out
}

// Keys put in pieces read back whole across growth, per sequence, layer
// and head, in a float32 and a float16 cache; a reset sequence starts
// over; passing the size is reported.
func TestPutGrowReset(t *testing.T) {
	const heads, hd = 2, 3
	for _, f16 := range []bool{false, true} {
		c := New(2, 2, heads, hd, 40, f16)
		// keysOf reads a layer's keys back as float32.
		keysOf := func(la Layer) []float32 {
			if !f16 {
				return la.K
			}
			k := make([]float32, len(la.K16))
			for i, h := range la.K16 {
				k[i] = half.FromF16(h)
			}
			return k
		}
		var want []float32
		for step := 0; step < 25; step++ {
			rows := 1 + step%2
			k := make([]float32, rows*heads*hd)
			for i := range k {
				k[i] = float32(len(want)+i) + 0.25 // exact in float16 below 512
			}
			if err := c.Room(1, rows); err != nil {
				t.Fatal(err)
			}
			for l := 0; l < 2; l++ {
				la := c.Put(1, l, k, k)
				n := c.Len(1) + rows
				keys := keysOf(la)
				if la.Stride < n*hd || len(keys) < heads*la.Stride || (la.K == nil) != f16 {
					t.Fatalf("f16=%v step %d layer %d: head stride %d for %d positions in %d values", f16, step, l, la.Stride, n, len(keys))
				}
				if got := rowsOf(keys, la.Stride, n, heads, hd); !slices.Equal(got, append(slices.Clone(want), k...)) || !slices.Equal(la.V, la.K) || !slices.Equal(la.V16, la.K16) {
					t.Fatalf("f16=%v step %d layer %d: keys %v", f16, step, l, got)
				}
			}
			want = append(want, k...)
			c.Advance(1, rows)
		}
		if c.Len(0) != 0 || c.Len(1) != 37 {
			t.Fatalf("lengths %d, %d", c.Len(0), c.Len(1))
		}
		if err := c.Room(1, 4); err == nil {
			t.Fatal("41 tokens fit a cache of 40")
		}
		size := int64(4)
		if f16 {
			size = 2
		}
		if c.Bytes() != 2*2*40*heads*hd*size {
			t.Fatalf("f16=%v: %d bytes for a 40-token sequence", f16, c.Bytes())
		}
		c.Reset(1)
		nine := []float32{9, 9, 9, 8, 8, 8}
		la := c.Put(1, 0, nine, nine)
		if got := rowsOf(keysOf(la), la.Stride, 1, heads, hd); !slices.Equal(got, nine) {
			t.Fatalf("f16=%v: after reset: %v", f16, got)
		}
	}
}
