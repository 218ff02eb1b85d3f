package backendtest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: the suite's
// concurrent callers and the CPU backend's helpers must all have ended.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
