package wire

import "github.com/webkv/webkv/kvcore/internal/bincodec"

// Float32Bytes returns the bytes of f as they go on the wire. On a
// little-endian machine (amd64, arm64, wasm) it is a view of f (no copy;
// ok is true); elsewhere it returns nil, false and the caller uses
// AppendFloat32s.
func Float32Bytes(f []float32) (b []byte, ok bool) { return bincodec.Float32Bytes(f) }

// Float32View returns data bytes b as float32 values: a view of b (no copy)
// on a little-endian machine when b is 4-byte aligned, or else the values
// decoded into dst (grown if needed). len(b) must be a multiple of 4.
func Float32View(b []byte, dst []float32) []float32 { return bincodec.Float32View(b, dst) }

// DecodeFloat32s copies the little-endian float32 values in b into dst and
// returns dst[:len(b)/4]; dst must be long enough.
func DecodeFloat32s(b []byte, dst []float32) []float32 { return bincodec.DecodeFloat32s(b, dst) }

// AppendFloat32s appends the wire bytes of f to b.
func AppendFloat32s(b []byte, f []float32) []byte { return bincodec.AppendFloat32s(b, f) }
