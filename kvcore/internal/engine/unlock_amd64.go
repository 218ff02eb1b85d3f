//go:build amd64 && !race && !purego

package engine

import "sync/atomic"

// storeRelease sets *p to v with a plain store (MOV), which on amd64 is a
// release: the writes before it are seen before it. That is all a lock's
// release needs; sync/atomic's Store is a locked exchange, as slow as a
// CAS (RATIONALE: "Why does a variable's unlock use a plain store on
// amd64?"). The race detector's builds use Store, which it sees.
//
//go:noescape
func storeRelease(p *atomic.Uint64, v uint64)
