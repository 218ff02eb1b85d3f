package compute

import "fmt"

// RowMover is an optional Backend capability: moving whole rows between a
// dense array and a compact one (MXNet's row_sparse storage: the rows a
// gradient touches, back to back). Row-sparse pushes and pulls of a store
// and of a parameter server go through GatherRows and ScatterRows, which
// use a backend's RowMover when it has one and host copies otherwise.
//
// Rows are numbered in a dense array of rows of width words each, shifted
// by shift words (the element offset of a key part on a parameter server;
// 0 for a whole array): row r covers words [r*width-shift, (r+1)*width-shift)
// of the dense buffer, clipped to the buffer. Words of a row outside the
// dense buffer are skipped (gather writes 0 for them), so a key part that
// starts or ends inside a row takes exactly its share of it.
type RowMover interface {
	// GatherRows sets, for i < len(rows) and j < width,
	//
	//	dst[i*width+j] = src[rows[i]*width+j-shift]   (0 outside src)
	//
	// rows may repeat and come in any order; dst has at least
	// len(rows)*width words.
	GatherRows(dst, src Buffer, rows []uint32, width, shift int) error
	// ScatterRows is the inverse: for i < len(rows) and j < width, with e =
	// rows[i]*width+j-shift inside dst,
	//
	//	dst[e] = src[i*width+j]        (add: dst[e] += src[i*width+j])
	//
	// rows must be strictly increasing (no word is written twice), src
	// has at least len(rows)*width words.
	ScatterRows(dst, src Buffer, rows []uint32, width, shift int, add bool) error
}

// CheckRows checks the arguments of GatherRows (strict false) or
// ScatterRows (strict true): a positive width, rows in increasing order
// when strict, and a compact buffer of compact words that holds the rows.
func CheckRows(rows []uint32, width, compact int, strict bool) error {
	if width < 1 {
		return fmt.Errorf("compute: rows of width %d", width)
	}
	if len(rows) > compact || (len(rows) > 0 && width > compact) || len(rows)*width > compact {
		return fmt.Errorf("compute: %d rows of %d words need %d words, the compact buffer has %d", len(rows), width, len(rows)*width, compact)
	}
	if strict {
		for i := 1; i < len(rows); i++ {
			if rows[i] <= rows[i-1] {
				return fmt.Errorf("compute: scatter rows: row %d follows row %d (rows must be strictly increasing)", rows[i], rows[i-1])
			}
		}
	}
	return nil
}

// GatherRows runs be's GatherRows (see RowMover), or the reference loop
// through host memory when be has none.
func GatherRows(be Backend, dst, src Buffer, rows []uint32, width, shift int) error {
	if err := CheckRows(rows, width, dst.Len(), false); err != nil {
		return err
	}
	if rm, ok := be.(RowMover); ok {
		return rm.GatherRows(dst, src, rows, width, shift)
	}
	s := make([]float32, src.Len())
	if err := be.Read(src, 0, s); err != nil {
		return err
	}
	d := make([]float32, len(rows)*width)
	gatherRows(d, s, rows, width, shift)
	return be.Write(dst, 0, d)
}

// ScatterRows runs be's ScatterRows (see RowMover), or the reference loop
// through host memory when be has none.
func ScatterRows(be Backend, dst, src Buffer, rows []uint32, width, shift int, add bool) error {
	if err := CheckRows(rows, width, src.Len(), true); err != nil {
		return err
	}
	if rm, ok := be.(RowMover); ok {
		return rm.ScatterRows(dst, src, rows, width, shift, add)
	}
	d := make([]float32, dst.Len())
	if err := be.Read(dst, 0, d); err != nil {
		return err
	}
	s := make([]float32, len(rows)*width)
	if err := be.Read(src, 0, s); err != nil {
		return err
	}
	scatterRows(d, s, rows, width, shift, add)
	return be.Write(dst, 0, d)
}

// rowSpan is the part of row r inside a dense buffer of n words: words
// [lo, hi) of the dense buffer, which are words [lo-base, hi-base) of the
// row (base = r*width-shift). Empty (lo >= hi) when the row lies outside.
func rowSpan(r uint32, width, shift, n int) (lo, hi, base int) {
	base = int(r)*width - shift
	lo, hi = max(base, 0), min(base+width, n)
	return lo, hi, base
}

// gatherRows is GatherRows' reference loop on host memory.
func gatherRows(d, s []float32, rows []uint32, width, shift int) {
	for i, r := range rows {
		row := d[i*width : (i+1)*width]
		lo, hi, base := rowSpan(r, width, shift, len(s))
		if lo >= hi {
			clear(row)
			continue
		}
		clear(row[:lo-base])
		copy(row[lo-base:hi-base], s[lo:hi])
		clear(row[hi-base:])
	}
}

// scatterRows is ScatterRows' reference loop on host memory.
func scatterRows(d, s []float32, rows []uint32, width, shift int, add bool) {
	for i, r := range rows {
		lo, hi, base := rowSpan(r, width, shift, len(d))
		if lo >= hi {
			continue
		}
		src := s[i*width+lo-base : i*width+hi-base]
		if !add {
			copy(d[lo:hi], src)
			continue
		}
		dst := d[lo:hi]
		for j, v := range src {
			dst[j] += v
		}
	}
}

// GatherRows implements RowMover.
func (c *CPU) GatherRows(dst, src Buffer, rows []uint32, width, shift int) error {
	d, s, err := cpuPair(dst, src)
	if err != nil {
		return err
	}
	if err := CheckRows(rows, width, len(d), false); err != nil {
		return err
	}
	gatherRows(d, s, rows, width, shift)
	return nil
}

// ScatterRows implements RowMover.
func (c *CPU) ScatterRows(dst, src Buffer, rows []uint32, width, shift int, add bool) error {
	d, s, err := cpuPair(dst, src)
	if err != nil {
		return err
	}
	if err := CheckRows(rows, width, len(s), true); err != nil {
		return err
	}
	scatterRows(d, s, rows, width, shift, add)
	return nil
}
