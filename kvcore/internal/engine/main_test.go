package engine

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: each Runner's
// workers (stopped by Close).
//
// Under GOOS=js the runtime keeps a goroutine of its own waiting for
// JavaScript events (runtime.handleEvent); it is not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("runtime.handleEvent"))
}
