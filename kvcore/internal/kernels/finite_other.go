//go:build !amd64 || purego

package kernels

// nonFiniteVec: no vector path here; FirstNonFinite's Go loop does it all.
func nonFiniteVec(data []byte) int { return 0 }
