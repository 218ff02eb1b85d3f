package psm

import (
	"testing"
	"unsafe"
)

// TestKeyLayout keeps what a list request touches of every key in five
// cache lines (see key): a field added to key instead of keyCold, or an
// arrival grown, shows here.
func TestKeyLayout(t *testing.T) {
	var k key
	if size := unsafe.Sizeof(k); size > 5*64 {
		t.Errorf("key is %d bytes, more than five cache lines (320): put what a round does not touch in keyCold", size)
	}
	if size := unsafe.Sizeof(arrival{}); size > 88 {
		t.Errorf("arrival is %d bytes, want at most 88 (a key holds one inline)", size)
	}
}
