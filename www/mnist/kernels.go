package mlp

import (
	"embed"
	"io/fs"
)

//go:embed wgsl/*.wgsl
var kernelFS embed.FS

// KernelSources returns the WGSL kernels by name (matmul, relu, xent,
// colsum). Browser tabs fetch the same sources (package www serves them), so
// a tab and a native worker run identical shader code.
func KernelSources() fs.FS {
	sub, err := fs.Sub(kernelFS, "wgsl")
	if err != nil {
		panic(err) // "wgsl" is a literal directory embedded above
	}
	return sub
}

func kernelSource(name string) string {
	b, err := kernelFS.ReadFile("wgsl/" + name + ".wgsl")
	if err != nil {
		panic("mlp: missing embedded kernel " + name) // names are literals in gpu.go
	}
	return string(b)
}

// Kernel flags of matmul.wgsl.
const (
	mmBias = 1
	mmReLU = 2
)
