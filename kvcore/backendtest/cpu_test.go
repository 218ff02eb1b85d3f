package backendtest_test

import (
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/backendtest"
)

// TestCPU runs the suite on the CPU backend. Compared with itself it checks
// little arithmetic, but every error path, pooling, offsets, concurrency and
// the large case are real checks of the reference.
func TestCPU(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) kvcore.Backend { return kvcore.CPU() })
}
