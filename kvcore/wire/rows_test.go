package wire

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// RowSpan against its definition: the rows that intersect the part, and
// where their words inside it sit when the rows lie back to back.
func TestRowSpan(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for range 2000 {
		nrows, width := 1+r.IntN(20), 1+r.IntN(6)
		total := nrows * width
		off := r.IntN(total)
		n := 1 + r.IntN(total-off)
		var rows []uint32
		for row := range nrows {
			if r.IntN(2) == 0 {
				rows = append(rows, uint32(row))
			}
		}
		i0, i1, lo, hi := RowSpan(rows, width, off, n)
		// Reference: walk every word of every row.
		wi0, wi1, wlo, whi := -1, -1, 0, 0
		first := true
		for i, row := range rows {
			for j := range width {
				e := int(row)*width + j
				if e >= off && e < off+n {
					if first {
						wi0, wlo, first = i, i*width+j, false
					}
					wi1, whi = i+1, i*width+j+1
				}
			}
		}
		if first {
			if i0 != i1 {
				t.Fatalf("rows %v width %d part [%d,+%d): %d..%d, want none", rows, width, off, n, i0, i1)
			}
			continue
		}
		if i0 != wi0 || i1 != wi1 || lo != wlo || hi != whi {
			t.Fatalf("rows %v width %d part [%d,+%d): rows [%d,%d) words [%d,%d), want [%d,%d) [%d,%d)", rows, width, off, n, i0, i1, lo, hi, wi0, wi1, wlo, whi)
		}
		// CheckRows accepts exactly what RowSpan sends.
		meta := AppendRowIDs(nil, rows[i0:i1])
		if _, err := CheckRows(nil, meta, width, off, n, hi-lo); err != nil {
			t.Fatalf("CheckRows refused RowSpan's rows: %v", err)
		}
	}
}

// FuzzCheckRows: any metadata, width, part and count give rows that are
// strictly increasing, each inside the part, holding count words, or an
// error; nothing panics, and the rows come from the metadata only.
func FuzzCheckRows(f *testing.F) {
	f.Add(AppendRowIDs(nil, []uint32{0, 2, 5}), 3, 0, 30, 9)
	f.Add(AppendRowIDs(nil, []uint32{1, 2}), 2, 3, 3, 3)
	f.Add([]byte{1, 2, 3}, 1, 0, 1, 1)
	f.Add(AppendRowIDs(nil, []uint32{4294967295}), 1, 0, 1, 1)
	f.Fuzz(func(t *testing.T, meta []byte, width, off, n, count int) {
		if width > 1<<20 || off < 0 || off > 1<<30 || n < 0 || n > 1<<30 {
			return
		}
		rows, err := CheckRows(nil, meta, width, off, n, count)
		if err != nil {
			return
		}
		if len(rows) != len(meta)/4 {
			t.Fatalf("%d rows from %d bytes", len(rows), len(meta))
		}
		words := 0
		for i, r := range rows {
			if r != binary.LittleEndian.Uint32(meta[4*i:]) || i > 0 && r <= rows[i-1] {
				t.Fatalf("row %d = %d", i, r)
			}
			lo, hi := max(int64(r)*int64(width), int64(off)), min((int64(r)+1)*int64(width), int64(off+n))
			if lo >= hi {
				t.Fatalf("row %d outside the part", r)
			}
			words += int(hi - lo)
		}
		if words != count {
			t.Fatalf("%d words, count %d", words, count)
		}
	})
}
