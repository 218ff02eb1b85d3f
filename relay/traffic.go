package relay

import "sync/atomic"

// Traffic counts the bytes a client's connections carry (set
// DialOptions.Traffic): what one worker costs its network, e.g. to compare
// per-step training with local steps. It counts the TCP bytes of the
// websocket connections (frames, their headers and the HTTP upgrade,
// before TLS encryption); natively only: under GOOS=js it stays at 0. Safe
// for concurrent use.
type Traffic struct {
	sent, received atomic.Int64
}

// Sent is the bytes written so far.
func (t *Traffic) Sent() int64 { return t.sent.Load() }

// Received is the bytes read so far.
func (t *Traffic) Received() int64 { return t.received.Load() }

// Total is Sent + Received.
func (t *Traffic) Total() int64 { return t.Sent() + t.Received() }
