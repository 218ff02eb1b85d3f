package main

import (
	"bytes"
	"os"
	"testing"
)

// TestUpToDate fails when ../sum_wasm.go is not what gensum writes: edit
// the generator and run go generate, not the file.
func TestUpToDate(t *testing.T) {
	want, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../sum_wasm.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("sum_wasm.go is stale: run go generate ./kvcore/internal/kernels")
	}
}
