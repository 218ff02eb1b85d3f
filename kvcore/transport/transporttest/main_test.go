package transporttest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests (pipes,
// listeners and the suite's senders and receivers end with their Close).
//
// Under GOOS=js the runtime keeps a goroutine of its own waiting for
// JavaScript events (runtime.handleEvent); it is not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("runtime.handleEvent"))
}
