package wsm

import (
	"testing"
	"unsafe"
)

// TestKeyLayout keeps the Key at one cache line, 64 bytes, with what a
// list call reads and writes of every key (see Key): a field added, or
// the Key grown or shrunk past its padding, shows here.
func TestKeyLayout(t *testing.T) {
	var k Key
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the layout is planned for 64-bit pointers")
	}
	if size := unsafe.Sizeof(k); size != 64 {
		t.Errorf("Key is %d bytes, want 64: adjust its padding", size)
	}
	for _, f := range []struct {
		name     string
		off, end uintptr
	}{
		{"pst1", unsafe.Offsetof(k.pst1), unsafe.Offsetof(k.pst1) + unsafe.Sizeof(k.pst1)},
		{"id", unsafe.Offsetof(k.id), unsafe.Offsetof(k.id) + unsafe.Sizeof(k.id)},
		{"n", unsafe.Offsetof(k.n), unsafe.Offsetof(k.n) + unsafe.Sizeof(k.n)},
		{"shard1", unsafe.Offsetof(k.shard1), unsafe.Offsetof(k.shard1) + unsafe.Sizeof(k.shard1)},
	} {
		if f.end > 64 {
			t.Errorf("Key.%s ends at byte %d, outside the first cache line", f.name, f.end)
		}
	}
}
