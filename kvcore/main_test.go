package kvcore_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: the store's engine workers, its dist links and event goroutine, and the in-process servers of the dist tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
