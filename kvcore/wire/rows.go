package wire

import (
	"encoding/binary"
	"math"
)

// Row-sparse messages. A key of shape (s0, s1, …) has s0 rows of width
// s1*s2*… values; a row-sparse push or pull names the rows it moves and
// carries only their values.
//
// TypeRowPush: the header is a push's (key, round, offset and total of the
// key part; DType DTypeF32, Count the data values); the metadata is the
// row ids, 4 bytes little-endian each, strictly increasing, every one
// intersecting the part; the data is those rows' values inside the part,
// back to back (a part that starts or ends inside a row carries only its
// share of that row: RowSpan). A push without rows (no metadata, no data)
// still counts for its dist_sync round, as MXNet's empty row_sparse pushes
// do. TypeRowPull: the same metadata, DType DTypeNone, Count the values
// the answer carries; the Ack carries them as data (DTypeF32).
//
// A server checks the row ids against the key part before it reads the
// data (CheckRows): the ids are bounded by the payload, and an answer by
// the part's size, so no row list makes it allocate beyond its limits.

// AppendRowIDs appends rows as row-sparse metadata.
func AppendRowIDs(b []byte, rows []uint32) []byte {
	for _, r := range rows {
		b = binary.LittleEndian.AppendUint32(b, r)
	}
	return b
}

// RowSpan returns the rows of increasing rows (of width values each) that
// intersect the key part [off, off+n): rows[i0:i1]; and where their values
// inside the part sit when the rows' values lie back to back: words
// [lo, hi). i0 == i1 when none does.
func RowSpan(rows []uint32, width, off, n int) (i0, i1, lo, hi int) {
	end := off + n
	// First row ending after off, first row starting at or after end.
	i0 = searchRows(rows, func(r uint32) bool { return (int(r)+1)*width > off })
	i1 = searchRows(rows, func(r uint32) bool { return int(r)*width >= end })
	if i0 >= i1 {
		return i0, i0, 0, 0
	}
	lo = i0*width + max(off-int(rows[i0])*width, 0)
	last := int(rows[i1-1]) * width
	hi = (i1-1)*width + min(end-last, width)
	return i0, i1, lo, hi
}

func searchRows(rows []uint32, f func(uint32) bool) int {
	i, j := 0, len(rows)
	for i < j {
		h := int(uint(i+j) >> 1)
		if !f(rows[h]) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i
}

// CheckRows reads the row ids of a row-sparse message's metadata for a key
// part [off, off+n) with rows of width values, into dst: they must be
// strictly increasing, each intersect the part, and hold count values in
// it. It allocates nothing beyond dst's growth (4 bytes of metadata per
// row id).
func CheckRows(dst []uint32, meta []byte, width, off, n, count int) ([]uint32, *Error) {
	if width < 1 {
		return dst, errf(CodeShape, "row-sparse message for a key without rows")
	}
	if len(meta)%4 != 0 {
		return dst, errf(CodeBadFrame, "row ids of %d bytes (4 bytes each)", len(meta))
	}
	end, words := off+n, 0
	prev := int64(-1)
	for i := 0; i < len(meta); i += 4 {
		r := binary.LittleEndian.Uint32(meta[i:])
		if int64(r) <= prev {
			return dst, errf(CodeBadRequest, "row id %d follows %d (row ids must be strictly increasing)", r, prev)
		}
		prev = int64(r)
		lo, hi := int64(r)*int64(width), (int64(r)+1)*int64(width)
		lo, hi = max(lo, int64(off)), min(hi, int64(end))
		if lo >= hi {
			return dst, errf(CodeShape, "row %d (of %d values) lies outside this part [%d, +%d)", r, width, off, n)
		}
		words += int(hi - lo)
		dst = append(dst, r)
	}
	if words != count || count > math.MaxInt32 {
		return dst, errf(CodeShape, "%d rows hold %d values in this part, the message says %d", len(meta)/4, words, count)
	}
	return dst, nil
}
