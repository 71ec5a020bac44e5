package tensor

//go:noescape
func adamwAVX2(n int, data, grad, m, v *float32, s *AdamWStep)

// adamwAsm runs the AVX2 kernel (on any CPU with a vector exp, which
// needs AVX2) over the whole groups of eight and returns how many it did.
func adamwAsm(impl int, data, grad, m, v []float32, s *AdamWStep) int {
	n := len(data) &^ 7
	if impl == implGo || n == 0 {
		return 0
	}
	adamwAVX2(n, &data[0], &grad[0], &m[0], &v[0], s)
	return n
}
