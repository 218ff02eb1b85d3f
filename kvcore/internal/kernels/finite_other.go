//go:build !amd64 || purego

package kernels

// nonFiniteVec: no vector path here; FirstNonFinite's Go loop does it all.
func nonFiniteVec(data []byte) int { return 0 }

// copyFiniteVec: no vector path here; CopyFinite copies and checks in Go.
func copyFiniteVec(dst, src []float32) int { return 0 }

// copyFiniteSmall is 0: CopyFinite always copies, then checks. In wasm
// (wazero) copyFiniteWords took 100 ns for 16 floats, copy and
// FirstNonFinite 72.
const copyFiniteSmall = 0
