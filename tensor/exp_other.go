//go:build !amd64

package tensor

import "math"

// Without assembly the Go code does everything.

func expSubAsm(impl int, dst, src []float32, m float32, acc *[16]float64) int { return 0 }

func swigluAsm(impl int, h, g, u []float32) int { return 0 }

func swigluBackAsm(impl int, dg, du, dh, g, u []float32) int { return 0 }

func rowMaxAsm(impl int, x []float32) (float32, int) { return float32(math.Inf(-1)), 0 }

func scalAsm(impl int, x []float32, a float32) int { return 0 }

func adamwAsm(impl int, data, grad, m, v []float32, s *AdamWStep) int { return 0 }
