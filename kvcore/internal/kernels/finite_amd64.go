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

// copyFiniteVec copies the leading whole 8-float units of src into dst
// (32-float blocks, then 8-float units) and returns how many elements it
// copied that are all finite: it stops at the first block or unit with a
// NaN or ±Inf. 0 without AVX2.
func copyFiniteVec(dst, src []float32) int {
	if !hasAVX2 || len(src) < 8 {
		return 0
	}
	done := 0
	if blocks := len(src) / 32; blocks > 0 {
		if done = 32 * copyFiniteAVX2(&dst[0], &src[0], blocks); done < 32*blocks {
			return done
		}
	}
	if units := (len(src) - done) / 8; units > 0 {
		done += 8 * copyFinite8AVX2(&dst[done], &src[done], units)
	}
	return done
}

// copyFiniteAVX2 copies blocks 32-float blocks from src to dst until one
// holds a non-finite value; it returns that block's index, or blocks.
//
//go:noescape
func copyFiniteAVX2(dst, src *float32, blocks int) int

// copyFinite8AVX2 copies units 8-float units from src to dst until one
// holds a non-finite value; it returns that unit's index, or units.
//
//go:noescape
func copyFinite8AVX2(dst, src *float32, units int) int

// copyFiniteSmall is the most floats that CopyFinite leaves to
// copyFiniteWords: the tail of the vector path (under 8 floats), and
// without AVX2 small keys, where calling copy and then FirstNonFinite
// costs more than the one loop.
const copyFiniteSmall = 64
