package main

import (
	"bytes"
	"os"
	"testing"
)

// TestUpToDate fails when ../optimizers_wasm.go is not what genopt writes:
// edit the generator and run go generate, not the file.
func TestUpToDate(t *testing.T) {
	want, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../optimizers_wasm.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("optimizers_wasm.go is stale: run go generate ./kvcore/internal/kernels")
	}
}
