package relay

import "sync/atomic"

// Traffic counts the bytes a client's connections carry (set
// DialOptions.Traffic): what one worker costs its network, e.g. to compare
// per-step training with local steps. Natively it counts the TCP bytes of
// the websocket connections (frames, their headers and the HTTP upgrade,
// before TLS encryption). In the browser, which shows a page neither, it
// counts each message with the header of its websocket frame (masked from
// the client, as RFC 6455 has it), not the upgrade. Safe for concurrent
// use.
type Traffic struct {
	sent, received atomic.Int64
}

// Sent is the bytes written so far.
func (t *Traffic) Sent() int64 { return t.sent.Load() }

// Received is the bytes read so far.
func (t *Traffic) Received() int64 { return t.received.Load() }

// Total is Sent + Received.
func (t *Traffic) Total() int64 { return t.Sent() + t.Received() }

// frameBytes is a websocket frame of n payload bytes on the wire: 2 header
// bytes, 2 or 8 more for lengths from 126 and 65536, and 4 of mask from
// a client (RFC 6455 §5.2).
func frameBytes(n int, masked bool) int64 {
	h := 2
	switch {
	case n >= 1<<16:
		h += 8
	case n >= 126:
		h += 2
	}
	if masked {
		h += 4
	}
	return int64(h + n)
}
