package compute_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: the CPU backend's helper goroutines (forked and joined within each call).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
