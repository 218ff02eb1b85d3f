package wire

import (
	"fmt"
	"math"
)

// DefaultBigArrayBound is MXNet's MXNET_KVSTORE_BIGARRAY_BOUND: keys with at
// least this many elements are split over every shard.
const DefaultBigArrayBound = 1_000_000

// IntKeyID is the wire key of int key k: its int64 bits.
func IntKeyID(k int) uint64 { return uint64(int64(k)) }

// StrKeyID is the wire key of string key name: its 64-bit FNV-1a hash
// (stable across processes, platforms and versions). Init carries the name,
// so a server detects the (unlikely) collision of two names and refuses the
// second.
func StrKeyID(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return h
}

// Part is one shard's part of a key: elements [Offset, Offset+Len).
type Part struct {
	Shard  int
	Offset int
	Len    int
}

// Place appends to dst where the n elements of key id live among shards
// servers, MXNet's EncodeDefaultKey rule:
//
//   - n >= bound (bound <= 0 means DefaultBigArrayBound): split over all
//     shards, part i has round(n/S*(i+1)) - round(n/S*i) elements (empty
//     parts are left out);
//   - otherwise the whole key on shard (id*9973) % S, computed in uint64
//     (wrapping) arithmetic.
//
// One shard always gets the whole key.
func Place(dst []Part, id uint64, n, shards, bound int) ([]Part, error) {
	if shards < 1 {
		return dst, fmt.Errorf("wire: place key %d: %d shards", id, shards)
	}
	if n < 1 {
		return dst, fmt.Errorf("wire: place key %d: %d elements", id, n)
	}
	if bound <= 0 {
		bound = DefaultBigArrayBound
	}
	if shards == 1 {
		return append(dst, Part{0, 0, n}), nil
	}
	if n < bound {
		return append(dst, Part{int((id * 9973) % uint64(shards)), 0, n}), nil
	}
	s := float64(n) / float64(shards)
	for i := range shards {
		lo := int(math.Round(s * float64(i)))
		hi := int(math.Round(s * float64(i+1)))
		if i == shards-1 {
			hi = n
		}
		if hi > lo {
			dst = append(dst, Part{i, lo, hi - lo})
		}
	}
	return dst, nil
}
