package kernels

import (
	"syscall"
	"testing"
	"unsafe"
)

// TestPrefetchUnmapped: Prefetch of a page that was just unmapped (not
// Go's memory, so the race detector's pointer checks allow it) does not
// fault.
func TestPrefetchUnmapped(t *testing.T) {
	mem, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	p := unsafe.Pointer(&mem[0])
	if err := syscall.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	Prefetch(p)
}
