package backendtest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: the suite's
// concurrent callers and the CPU backend's helpers must all have ended.
//
// Under GOOS=js the runtime keeps a goroutine of its own waiting for
// JavaScript events (runtime.handleEvent); it is not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("runtime.handleEvent"))
}
