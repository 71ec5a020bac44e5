package spm

// heap is a binary heap whose top is the item that less puts first.
type heap[T any] struct {
	items []T
	less  func(a, b *T) bool
}

func (h *heap[T]) push(x T) {
	h.items = append(h.items, x)
	s := h.items
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(&s[i], &s[parent]) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

// init makes a heap of items in linear time.
func (h *heap[T]) init(items []T) {
	h.items = items
	for i := len(items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *heap[T]) pop() T {
	s := h.items
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	h.items = s[:n]
	h.down(0)
	return top
}

func (h *heap[T]) down(i int) {
	s := h.items
	n := len(s)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && h.less(&s[r], &s[l]) {
			c = r
		}
		if !h.less(&s[c], &s[i]) {
			return
		}
		s[i], s[c] = s[c], s[i]
		i = c
	}
}
