package relay

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: the server's
// peers, jobs and checkpoint writers after Server.Close, the client's
// reconnection after Conn.Close, the stores' goroutines after their Close.
//
// Under GOOS=js the runtime keeps a goroutine of its own waiting for
// JavaScript events (runtime.handleEvent); it is not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("runtime.handleEvent"))
}
