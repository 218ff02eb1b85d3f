//go:build cgo && !js

package main

import (
	"errors"
	"os"
	"testing"

	"github.com/webkv/webkv/native"
)

// TestRun runs the command's check on a small reduce: it fails when the
// WebGPU backend disagrees with the CPU backend.
func TestRun(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	err := run(4099, 3)
	if errors.Is(err, native.ErrNoAdapter) && os.Getenv("WEBKV_ALLOW_NO_GPU") == "1" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := run(0, 3); err == nil {
		t.Fatal("run accepted -n 0")
	}
}
