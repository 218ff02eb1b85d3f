//go:build amd64 && !purego

package kernels

// nonFiniteVec returns how many leading bytes of data (whole 128-byte
// blocks) hold only finite float32 values: it stops at the first block
// with a NaN or ±Inf, or before the tail. 0 without AVX2.
func nonFiniteVec(data []byte) int {
	blocks := len(data) / 128
	if !hasAVX2 || blocks == 0 {
		return 0
	}
	return 128 * finiteBlocksAVX2(&data[0], blocks)
}

// finiteBlocksAVX2 returns the index of the first of blocks 128-byte
// blocks at p that holds a non-finite float32, or blocks.
//
//go:noescape
func finiteBlocksAVX2(p *byte, blocks int) int

// copyFiniteVec copies the leading whole 32-float blocks of src into dst
// and returns how many elements it copied that are all finite: it stops
// at the first block with a NaN or ±Inf. 0 without AVX2.
func copyFiniteVec(dst, src []float32) int {
	blocks := len(src) / 32
	if !hasAVX2 || blocks == 0 {
		return 0
	}
	return 32 * copyFiniteAVX2(&dst[0], &src[0], blocks)
}

// copyFiniteAVX2 copies blocks 32-float blocks from src to dst until one
// holds a non-finite value; it returns that block's index, or blocks.
//
//go:noescape
func copyFiniteAVX2(dst, src *float32, blocks int) int
