//go:build !linux

package tensor

// weightBytes returns n zeroed bytes for a weight (huge pages are asked
// for on Linux only).
func weightBytes[T any](n int, _ *T) []byte { return make([]byte, n) }

// WeightBytes is weightBytes for a buffer outside this package.
func WeightBytes[T any](n int, owner *T) []byte { return weightBytes(n, owner) }
