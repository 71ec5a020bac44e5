package kvcache

import (
	"slices"
	"testing"
)

// Keys put in pieces read back whole across growth, per sequence and
// layer; a reset sequence starts over; passing the size is reported.
func TestPutGrowReset(t *testing.T) {
	c := New(2, 2, 3, 40)
	var want []float32
	for step := 0; step < 25; step++ {
		rows := 1 + step%2
		k := make([]float32, rows*3)
		for i := range k {
			k[i] = float32(len(want) + i)
		}
		if err := c.Room(1, rows); err != nil {
			t.Fatal(err)
		}
		for l := 0; l < 2; l++ {
			keys, vals := c.Put(1, l, k, k)
			if !slices.Equal(keys, append(slices.Clone(want), k...)) || !slices.Equal(vals, keys) {
				t.Fatalf("step %d layer %d: keys %v", step, l, keys)
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
	if c.Bytes() > 2*2*40*3*4 {
		t.Fatalf("%d bytes for a 40-token sequence", c.Bytes())
	}
	c.Reset(1)
	keys, _ := c.Put(1, 0, []float32{9, 9, 9}, []float32{9, 9, 9})
	if !slices.Equal(keys, []float32{9, 9, 9}) {
		t.Fatalf("after reset: %v", keys)
	}
}
