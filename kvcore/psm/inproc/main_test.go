package inproc_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: the server's connection and timer goroutines (stopped by Close).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
