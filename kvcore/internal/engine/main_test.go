package engine

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: each Runner's workers (stopped by Close).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
