//go:build !cgo || js

// Command webkv-gpu needs cgo (wgpu-native); this build has none.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "webkv-gpu: built without cgo: there is no native WebGPU here (rebuild with CGO_ENABLED=1)")
	os.Exit(1)
}
