package rlhf

import (
	"testing"

	"zhllama/internal/testenv"
)

// TestMain lists the tests skipped for want of a reference tool.
func TestMain(m *testing.M) { testenv.Main(m) }
