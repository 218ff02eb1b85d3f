package bincodec

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// littleEndian is true where float32 memory already has the formats' byte
// order, so views need no conversion (every target webkv runs on: amd64,
// arm64, wasm).
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// Float32Bytes returns the bytes of f as they go in webkv's formats. On a
// little-endian machine it is a view of f (no copy; ok is true); elsewhere it
// returns nil, false and the caller uses AppendFloat32s.
func Float32Bytes(f []float32) (b []byte, ok bool) {
	if !littleEndian {
		return nil, false
	}
	if len(f) == 0 {
		return []byte{}, true
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f)), true
}

// Float32View returns data bytes b as float32 values: a view of b (no copy)
// on a little-endian machine when b is 4-byte aligned, or else the values
// decoded into dst (grown if needed). len(b) must be a multiple of 4.
func Float32View(b []byte, dst []float32) []float32 {
	n := len(b) / 4
	if littleEndian && n > 0 && uintptr(unsafe.Pointer(&b[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
	}
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	return DecodeFloat32s(b, dst[:n])
}

// DecodeFloat32s copies the little-endian float32 values in b into dst and
// returns dst[:len(b)/4]; dst must be long enough.
func DecodeFloat32s(b []byte, dst []float32) []float32 {
	n := len(b) / 4
	dst = dst[:n]
	if littleEndian && n > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*n), b)
		return dst
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return dst
}

// AppendFloat32s appends the little-endian bytes of f to b.
func AppendFloat32s(b []byte, f []float32) []byte {
	if v, ok := Float32Bytes(f); ok {
		return append(b, v...)
	}
	for _, x := range f {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}
