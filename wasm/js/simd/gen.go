//go:build ignore

// gen assembles kernels.wat into kernels.wasm (go generate in this
// directory).
package main

import (
	"log"
	"os"

	"github.com/webkv/webkv/wasm/js/simd/internal/wat"
)

func main() {
	src, err := os.ReadFile("kernels.wat")
	if err != nil {
		log.Fatal(err)
	}
	bin, err := wat.Assemble(src)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("kernels.wasm", bin, 0o644); err != nil {
		log.Fatal(err)
	}
}
