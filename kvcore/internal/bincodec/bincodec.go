// Package bincodec is the one binary encoding helper behind webkv's three
// formats: the metadata of wire messages (kvcore/wire), the parameter
// server's snapshot (kvcore/psm) and the optimizer states file
// (internal/optstate). Numbers are little-endian, lengths uvarints where a
// format says so, floats IEEE 754 binary32 bits.
//
// Enc appends fields to a byte slice. Dec reads fields from a byte slice
// with bounds checks and a sticky first error: after a failure every read
// returns a zero value, so a decoder reads a whole record and checks once.
// Every length is checked against the bytes left before anything is
// allocated, so a hostile length cannot make a decoder allocate more than
// its input holds. Writer and Reader do the same over an io.Writer and an
// io.Reader for inputs too large to hold in memory (states files), keeping
// a CRC-32C and growing arrays only as their bytes arrive.
//
// Failures are *Error values with a Kind (truncated, malformed, over a
// limit) and the offset where they happened; each format wraps them in its
// own error (wire.Error codes, psm.ErrBadSnapshot, ErrBadStates).
package bincodec

import (
	"encoding/binary"
	"fmt"
)

// Enc is an append-only encoder: Enc(b).U8(1).String("w0") appends to b.
type Enc []byte

// U8 appends v.
func (e Enc) U8(v uint8) Enc { return append(e, v) }

// U16 appends v, little-endian.
func (e Enc) U16(v uint16) Enc { return binary.LittleEndian.AppendUint16(e, v) }

// U32 appends v, little-endian.
func (e Enc) U32(v uint32) Enc { return binary.LittleEndian.AppendUint32(e, v) }

// U64 appends v, little-endian.
func (e Enc) U64(v uint64) Enc { return binary.LittleEndian.AppendUint64(e, v) }

// Uvarint appends v as a uvarint.
func (e Enc) Uvarint(v uint64) Enc { return binary.AppendUvarint(e, v) }

// Bool appends 1 or 0.
func (e Enc) Bool(b bool) Enc {
	if b {
		return append(e, 1)
	}
	return append(e, 0)
}

// Bytes appends len(b) as a uvarint, then b.
func (e Enc) Bytes(b []byte) Enc { return append(e.Uvarint(uint64(len(b))), b...) }

// String appends len(s) as a uvarint, then s.
func (e Enc) String(s string) Enc { return append(e.Uvarint(uint64(len(s))), s...) }

// Float32s appends the bits of f, little-endian, without a length.
func (e Enc) Float32s(f []float32) Enc { return AppendFloat32s(e, f) }

// Kind says what made a decoding fail.
type Kind uint8

// Kinds of failure.
const (
	Truncated Kind = iota + 1 // the input ends inside a field
	Malformed                 // a field is not a valid encoding (an overlong uvarint, a bad value, trailing bytes)
	Limit                     // a length or count is above what the format or the input allows
)

// Error is a decoding failure: its kind, the offset in the input where the
// field that failed starts, and what was wrong.
type Error struct {
	Kind Kind
	Off  int64
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Dec decodes a byte slice; its zero value decodes nothing. Reads after
// the first failure return zero values and leave Err as it was.
type Dec struct {
	b   []byte // unread input
	off int64  // offset of b[0] in the input
	Err *Error
}

// NewDec returns a decoder of b.
func NewDec(b []byte) Dec { return Dec{b: b} }

// Failf records a failure (unless one is recorded already) at the current
// offset.
func (d *Dec) Failf(k Kind, format string, args ...any) {
	if d.Err == nil {
		d.Err = &Error{Kind: k, Off: d.off, Msg: fmt.Sprintf(format, args...)}
	}
}

// Left is the number of bytes not read yet.
func (d *Dec) Left() int { return len(d.b) }

// Take returns the next n bytes (a view of the input, not a copy).
func (d *Dec) Take(n uint64, what string) []byte {
	if d.Err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.Failf(Truncated, "%s needs %d bytes, %d left", what, n, len(d.b))
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	d.off += int64(n)
	return s
}

// Uvarint reads a uvarint.
func (d *Dec) Uvarint(what string) uint64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		k := Malformed
		if n == 0 {
			k = Truncated
		}
		d.Failf(k, "truncated or overlong %s", what)
		return 0
	}
	d.b = d.b[n:]
	d.off += int64(n)
	return v
}

// U8 reads one byte.
func (d *Dec) U8(what string) uint8 {
	if b := d.Take(1, what); b != nil {
		return b[0]
	}
	return 0
}

// U16 reads a little-endian uint16.
func (d *Dec) U16(what string) uint16 {
	if b := d.Take(2, what); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

// U32 reads a little-endian uint32.
func (d *Dec) U32(what string) uint32 {
	if b := d.Take(4, what); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// U64 reads a little-endian uint64.
func (d *Dec) U64(what string) uint64 {
	if b := d.Take(8, what); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// Bool reads a byte that must be 0 or 1.
func (d *Dec) Bool(what string) bool {
	switch d.U8(what) {
	case 0:
		return false
	case 1:
		return true
	}
	d.Failf(Malformed, "%s is not 0 or 1", what)
	return false
}

// Length reads a uvarint length of at most max.
func (d *Dec) Length(what string, max uint64) uint64 {
	n := d.Uvarint(what + " length")
	if d.Err == nil && n > max {
		d.Failf(Limit, "%s of %d bytes exceeds the limit of %d", what, n, max)
		return 0
	}
	return n
}

// Bytes reads a uvarint length of at most max and that many bytes, copied.
func (d *Dec) Bytes(what string, max uint64) []byte {
	b := d.Take(d.Length(what, max), what)
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// String reads a uvarint length of at most max and that many bytes.
func (d *Dec) String(what string, max uint64) string {
	return string(d.Take(d.Length(what, max), what))
}

// Count reads a uvarint count of items that each take at least per bytes
// of what is left, and at most max.
func (d *Dec) Count(what string, per int, max uint64) int {
	v := d.Uvarint(what)
	if d.Err != nil {
		return 0
	}
	if v > max {
		d.Failf(Limit, "%d %s exceed the limit of %d", v, what, max)
		return 0
	}
	if v > uint64(len(d.b))/uint64(per) {
		d.Failf(Truncated, "%d %s cannot fit %d bytes", v, what, len(d.b))
		return 0
	}
	return int(v)
}

// Float32s reads n float32 values into dst (grown as needed) and returns
// it; the bytes are checked to be there before dst grows.
func (d *Dec) Float32s(what string, n int, dst []float32) []float32 {
	b := d.Take(4*uint64(n), what)
	if b == nil {
		return nil
	}
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	return DecodeFloat32s(b, dst[:n])
}

// Done fails if input is left over.
func (d *Dec) Done() {
	if d.Err == nil && len(d.b) != 0 {
		d.Failf(Malformed, "%d unexpected trailing bytes", len(d.b))
	}
}
