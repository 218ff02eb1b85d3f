package mnist

import (
	"embed"
	"io/fs"
)

//go:embed wgsl/*.wgsl
var kernelFS embed.FS

// KernelSources returns the model's WGSL kernels as files named
// matmul.wgsl, relu.wgsl, xent.wgsl and colsum.wgsl. Package gpu compiles
// them natively and under GOOS=js; package www serves them to browser tabs,
// so a tab and a native worker run identical shader code.
func KernelSources() fs.FS {
	sub, err := fs.Sub(kernelFS, "wgsl")
	if err != nil {
		panic(err) // "wgsl" is a literal directory embedded above
	}
	return sub
}
