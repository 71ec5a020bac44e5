//go:build !linux

package tensor

// weightBytes returns n zeroed bytes for a weight (huge pages are asked
// for on Linux only).
func weightBytes[T any](n int, _ *T) []byte { return make([]byte, n) }
