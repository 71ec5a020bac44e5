package pipeline

import (
	"errors"
	"testing"
)

func TestOrderedKeepsOrder(t *testing.T) {
	for _, threads := range []int{1, 3, 8} {
		var got []int
		err := Ordered(threads, func(emit func(int) bool) error {
			for i := range 1000 {
				if !emit(i) {
					return nil
				}
			}
			return nil
		}, func(_ int, x int) int { return x * x }, func(r int) error {
			got = append(got, r)
			return nil
		})
		if err != nil || len(got) != 1000 {
			t.Fatalf("threads %d: %d results, %v", threads, len(got), err)
		}
		for i, r := range got {
			if r != i*i {
				t.Fatalf("threads %d: result %d is %d", threads, i, r)
			}
		}
	}
}

func TestOrderedStopsOnErrors(t *testing.T) {
	stop := errors.New("stop")
	emitted := 0
	err := Ordered(2, func(emit func(int) bool) error {
		for i := range 100000 {
			if !emit(i) {
				return nil
			}
			emitted++
		}
		return nil
	}, func(_ int, x int) int { return x }, func(r int) error {
		if r == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || emitted > 1000 {
		t.Errorf("sink error: %v after %d items", err, emitted)
	}
	bad := errors.New("bad input")
	err = Ordered(2, func(emit func(int) bool) error { emit(1); return bad }, func(_ int, x int) int { return x }, func(int) error { return nil })
	if !errors.Is(err, bad) {
		t.Errorf("producer error: %v", err)
	}
}
