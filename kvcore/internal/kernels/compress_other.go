//go:build !amd64 || purego

package kernels

// No vector quantization loops here: the word loops of compress.go do all.

func quantize2Vec(out, g, r []float32, pos, neg float32) int { return 0 }
func quantize1Vec(out, g, r []float32, t float32) int        { return 0 }
func dequantize2Vec(out, in []float32, vals *[4]float32) int { return 0 }
func dequantize1Vec(out, in []float32, vals *[2]float32) int { return 0 }
