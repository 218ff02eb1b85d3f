//go:build !js

package relay

import (
	"net"
	"sync"
)

// batchConn coalesces the websocket library's small writes while a message
// is being sent.
//
// Why: nhooyr.io/websocket masks client frames in place inside a 4 KiB
// bufio.Writer (taken from a package-private pool) and flushes it every
// 4 KiB, so a 64 MB push became 16384 write syscalls and client→server
// transfer stalled near 0.5 GB/s. The library itself is unchanged: the
// client dials through an http.Transport whose DialContext returns this
// wrapper. While a Send is in progress (begin/end), writes are appended to a
// large buffer and handed to the kernel in big pieces; end flushes what is
// left. Outside Send (the HTTP upgrade request, pongs, close frames) writes
// go straight through, so nothing written by the library can be held back.
type batchConn struct {
	net.Conn

	mu       sync.Mutex
	batching int // nesting depth of begin/end
	buf      []byte
	size     int
}

func newBatchConn(c net.Conn, size int) *batchConn {
	return &batchConn{Conn: c, size: size}
}

// begin starts coalescing writes.
func (b *batchConn) begin() {
	b.mu.Lock()
	b.batching++
	if b.buf == nil {
		b.buf = make([]byte, 0, b.size)
	}
	b.mu.Unlock()
}

// end flushes the coalesced bytes and stops coalescing once the outermost
// begin is matched.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching--
	return b.flushLocked()
}

func (b *batchConn) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching == 0 {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		return b.Conn.Write(p)
	}
	if len(b.buf)+len(p) > cap(b.buf) {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= cap(b.buf) {
			return b.Conn.Write(p)
		}
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}
