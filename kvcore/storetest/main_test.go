package storetest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: the stores under test and their servers.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
