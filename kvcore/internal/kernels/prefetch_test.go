package kernels

import (
	"testing"
	"unsafe"
)

// TestPrefetchNeverFaults: Prefetch is a hint on any address, mapped or
// not (a list call asks for lines of objects a few keys on, which may be
// nil); a load in its place would crash here.
func TestPrefetchNeverFaults(t *testing.T) {
	b := make([]byte, 64)
	for _, p := range []unsafe.Pointer{
		nil,
		unsafe.Pointer(&b[0]),
		unsafe.Add(unsafe.Pointer(&b[0]), 1<<46), // far outside the heap: unmapped
		unsafe.Add(nil, 8),
	} {
		Prefetch(p)
	}
	if b[0] != 0 {
		t.Fatal("Prefetch wrote memory")
	}
}
