//go:build cgo && !js

package native

import (
	"errors"
	"os"
	"testing"
)

// TestBackendReleasesDevice: NewBackend's device belongs to the backend,
// and Close releases it (device, adapter and instance), which leaked before.
func TestBackendReleasesDevice(t *testing.T) {
	b, err := NewBackend(nil)
	if err != nil {
		if errors.Is(err, ErrNoAdapter) && os.Getenv("WEBKV_ALLOW_NO_GPU") == "1" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	if b.dev.Device == nil || b.dev.Adapter == nil || b.dev.Instance == nil {
		t.Fatal("backend without its device")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b.dev.Device != nil || b.dev.Adapter != nil || b.dev.Instance != nil {
		t.Errorf("Close left the device open: %+v", b.dev)
	}
}
