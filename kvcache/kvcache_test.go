package kvcache

import (
	"slices"
	"testing"
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
// and head; a reset sequence starts over; passing the size is reported.
func TestPutGrowReset(t *testing.T) {
	const heads, hd = 2, 3
	c := New(2, 2, heads, hd, 40)
	var want []float32
	for step := 0; step < 25; step++ {
		rows := 1 + step%2
		k := make([]float32, rows*heads*hd)
		for i := range k {
			k[i] = float32(len(want) + i)
		}
		if err := c.Room(1, rows); err != nil {
			t.Fatal(err)
		}
		for l := 0; l < 2; l++ {
			keys, vals, stride := c.Put(1, l, k, k)
			n := c.Len(1) + rows
			if stride < n*hd || len(keys) < heads*stride {
				t.Fatalf("step %d layer %d: head stride %d for %d positions in %d values", step, l, stride, n, len(keys))
			}
			if got := rowsOf(keys, stride, n, heads, hd); !slices.Equal(got, append(slices.Clone(want), k...)) || !slices.Equal(vals, keys) {
				t.Fatalf("step %d layer %d: keys %v", step, l, got)
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
	if c.Bytes() > 2*2*40*heads*hd*4 {
		t.Fatalf("%d bytes for a 40-token sequence", c.Bytes())
	}
	c.Reset(1)
	nine := []float32{9, 9, 9, 8, 8, 8}
	keys, _, stride := c.Put(1, 0, nine, nine)
	if got := rowsOf(keys, stride, 1, heads, hd); !slices.Equal(got, nine) {
		t.Fatalf("after reset: %v", got)
	}
}
