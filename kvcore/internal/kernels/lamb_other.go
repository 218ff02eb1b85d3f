//go:build !amd64 || purego

package kernels

// lambPhase1PairsVec: no two-block loop here; LAMBPhase1Blocks runs the
// blocks one by one.
func lambPhase1PairsVec(p *Params, w, g, mean, vr []float32, sums []float64) int { return 0 }
