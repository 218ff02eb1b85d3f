package bincodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
)

// chunkBytes bounds the scratch buffer of a Writer or Reader.
const chunkBytes = 64 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Writer writes fields to an io.Writer and keeps a CRC-32C of every byte
// written through it; the first write error sticks in Err and stops all
// later writes.
type Writer struct {
	w     io.Writer
	crc   hash.Hash32
	small [8]byte
	chunk []byte // float payload buffer, sized by the largest array up to chunkBytes
	Err   error
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, crc: crc32.New(castagnoli)} }

// Raw writes b.
func (e *Writer) Raw(b []byte) {
	if e.Err != nil || len(b) == 0 {
		return
	}
	e.crc.Write(b) // a hash.Hash's Write never fails
	_, e.Err = e.w.Write(b)
}

// U8 writes v.
func (e *Writer) U8(v uint8) { e.small[0] = v; e.Raw(e.small[:1]) }

// U16 writes v, little-endian.
func (e *Writer) U16(v uint16) {
	binary.LittleEndian.PutUint16(e.small[:2], v)
	e.Raw(e.small[:2])
}

// U32 writes v, little-endian.
func (e *Writer) U32(v uint32) {
	binary.LittleEndian.PutUint32(e.small[:4], v)
	e.Raw(e.small[:4])
}

// U64 writes v, little-endian.
func (e *Writer) U64(v uint64) {
	binary.LittleEndian.PutUint64(e.small[:8], v)
	e.Raw(e.small[:8])
}

// Float32s writes the bits of f, little-endian, in chunks.
func (e *Writer) Float32s(f []float32) {
	if need := min(4*len(f), chunkBytes); len(e.chunk) < need {
		e.chunk = make([]byte, need)
	}
	for len(f) > 0 && e.Err == nil {
		n := min(len(f), len(e.chunk)/4)
		for i, v := range f[:n] {
			binary.LittleEndian.PutUint32(e.chunk[4*i:], math.Float32bits(v))
		}
		e.Raw(e.chunk[:4*n])
		f = f[n:]
	}
}

// Sum32 is the CRC-32C of everything written so far.
func (e *Writer) Sum32() uint32 { return e.crc.Sum32() }

// Trailer writes v, little-endian, outside the checksum (the checksum
// itself, typically).
func (e *Writer) Trailer(v uint32) {
	if e.Err != nil {
		return
	}
	binary.LittleEndian.PutUint32(e.small[:4], v)
	_, e.Err = e.w.Write(e.small[:4])
}

// Reader reads fields from an io.Reader, keeps a CRC-32C of what it read
// and counts the offset for errors. It reads exactly what it is asked for,
// so the input may go on after a record. Its errors are *Error values:
// Truncated where the input ends, Malformed for any other read error.
type Reader struct {
	r     io.Reader
	crc   hash.Hash32
	off   int64
	small [8]byte
	chunk []byte // grown on demand up to chunkBytes
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r, crc: crc32.New(castagnoli)} }

// Off is the number of bytes read so far.
func (d *Reader) Off() int64 { return d.off }

// Sum32 is the CRC-32C of everything read so far (Trailer excluded).
func (d *Reader) Sum32() uint32 { return d.crc.Sum32() }

func (d *Reader) fail(what string, start int64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Kind: Truncated, Off: start, Msg: fmt.Sprintf("truncated: input ends at byte %d while reading %s", d.off, what)}
	}
	return &Error{Kind: Malformed, Off: start, Msg: fmt.Sprintf("reading %s at byte %d: %v", what, d.off, err)}
}

// Read fills b from the input and adds it to the checksum.
func (d *Reader) Read(b []byte, what string) error {
	start := d.off
	n, err := io.ReadFull(d.r, b)
	d.off += int64(n)
	if err != nil {
		return d.fail(what, start, err)
	}
	d.crc.Write(b) // a hash.Hash's Write never fails
	return nil
}

// U8 reads one byte.
func (d *Reader) U8(what string) (uint8, error) {
	err := d.Read(d.small[:1], what)
	return d.small[0], err
}

// U16 reads a little-endian uint16.
func (d *Reader) U16(what string) (uint16, error) {
	err := d.Read(d.small[:2], what)
	return binary.LittleEndian.Uint16(d.small[:2]), err
}

// U32 reads a little-endian uint32.
func (d *Reader) U32(what string) (uint32, error) {
	err := d.Read(d.small[:4], what)
	return binary.LittleEndian.Uint32(d.small[:4]), err
}

// U64 reads a little-endian uint64.
func (d *Reader) U64(what string) (uint64, error) {
	err := d.Read(d.small[:8], what)
	return binary.LittleEndian.Uint64(d.small[:8]), err
}

// Trailer reads a little-endian uint32 outside the checksum.
func (d *Reader) Trailer(what string) (uint32, error) {
	start := d.off
	n, err := io.ReadFull(d.r, d.small[:4])
	d.off += int64(n)
	if err != nil {
		return 0, d.fail(what, start, err)
	}
	return binary.LittleEndian.Uint32(d.small[:4]), nil
}

// buf returns a scratch buffer of min(n, chunkBytes) bytes or more,
// allocated only as large as the input has needed so far, so that small or
// hostile inputs stay cheap.
func (d *Reader) buf(n int) []byte {
	n = min(n, chunkBytes)
	if len(d.chunk) < n {
		d.chunk = make([]byte, min(chunkBytes, max(n, 2*len(d.chunk))))
	}
	return d.chunk
}

// Bytes reads n bytes into a new slice, in chunks, so a false length
// cannot allocate more than the input holds plus one chunk.
func (d *Reader) Bytes(n int, what string) ([]byte, error) {
	out := make([]byte, 0, min(n, chunkBytes))
	for len(out) < n {
		buf := d.buf(n - len(out))
		c := min(n-len(out), len(buf))
		if err := d.Read(buf[:c], what); err != nil {
			return nil, err
		}
		out = append(out, buf[:c]...)
	}
	return out, nil
}

// Float32s reads n float32 values. Up to eager values are allocated at
// once; larger arrays grow by doubling as their bytes arrive.
func (d *Reader) Float32s(n, eager int, what string) ([]float32, error) {
	out := make([]float32, 0, min(n, eager))
	for len(out) < n {
		buf := d.buf(4 * (n - len(out)))
		c := min(n-len(out), len(buf)/4)
		if err := d.Read(buf[:4*c], what); err != nil {
			return nil, err
		}
		if len(out)+c > cap(out) {
			grown := make([]float32, len(out), min(n, max(2*cap(out), len(out)+c)))
			copy(grown, out)
			out = grown
		}
		for i := range c {
			out = append(out, math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:])))
		}
	}
	return out, nil
}
