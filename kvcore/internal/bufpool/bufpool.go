// Package bufpool pools byte buffers in power-of-two size classes, for
// messages (the in-memory pipe, the dist client's sends).
package bufpool

import (
	"math/bits"
	"sync"
)

// Buffers are pooled in power-of-two size classes from 256 bytes to 2 GiB:
// a message buffer is reused instead of allocated (first touch of fresh
// memory costs about 200 ms per 64 MB on the machines webkv runs on).
const minClass = 8 // 256 bytes

var pools [32]sync.Pool

func class(n int) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(n - 1))
}

// Get returns a pooled buffer with length 0 and capacity at least n.
// Give it back with Put when no longer used.
func Get(n int) *[]byte {
	c := class(n)
	if c >= len(pools) {
		b := make([]byte, 0, n)
		return &b
	}
	if v := pools[c].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, 1<<c)
	return &b
}

// Put returns b to the pool. b must not be used afterwards.
func Put(b *[]byte) {
	if b == nil {
		return
	}
	c := cap(*b)
	if c < 1<<minClass || c&(c-1) != 0 { // only exact classes (grown buffers are dropped)
		return
	}
	k := bits.Len(uint(c)) - 1
	if k < len(pools) {
		*b = (*b)[:0]
		pools[k].Put(b)
	}
}
