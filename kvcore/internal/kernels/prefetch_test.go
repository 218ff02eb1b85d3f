package kernels

import (
	"testing"
	"unsafe"
)

// TestPrefetchNeverFaults: Prefetch is a hint on any address (a list call
// asks for lines of objects a few keys on, which may be nil); a load in
// its place would crash here. prefetch_linux_test.go adds an unmapped
// page.
func TestPrefetchNeverFaults(t *testing.T) {
	b := make([]byte, 64)
	Prefetch(nil)
	Prefetch(unsafe.Pointer(&b[0]))
	Prefetch(unsafe.Pointer(&b[63]))
	PrefetchOff(unsafe.Pointer(&b[0]), 64)    // past b
	PrefetchOff(unsafe.Pointer(&b[0]), 1<<40) // far past anything mapped
	PrefetchOff(nil, 0)
	if b[0] != 0 || b[63] != 0 {
		t.Fatal("Prefetch wrote memory")
	}
}
