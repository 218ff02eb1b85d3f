//go:build !amd64 || race || purego

package engine

import "sync/atomic"

// storeRelease sets *p to v: see unlock_amd64.go. Elsewhere Store is the
// release store (STLR on arm64) or what the race detector sees.
func storeRelease(p *atomic.Uint64, v uint64) { p.Store(v) }
