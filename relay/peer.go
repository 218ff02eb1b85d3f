//go:build !js && !wasip1

package relay

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"nhooyr.io/websocket"
)

// peer is one accepted websocket connection. Its reader goroutine feeds the
// job; its writer goroutine drains a bounded queue with a write deadline, so
// a peer that reads slowly (or not at all) is closed instead of stalling the
// job goroutine or the other peers.
type peer struct {
	id     uint64
	ws     *websocket.Conn
	remote string
	m      *jobMetrics
	log    *slog.Logger // nil in unit tests

	out    chan outMsg
	done   chan struct{} // closed when the peer is closed
	once   sync.Once
	authed bool // token checked at upgrade

	mu     sync.Mutex
	reason error // why the peer was closed

	// Inbound credit: bytes of this peer's frames read but not yet handled
	// by the job. The reader waits while it is over inboundLimit, so one
	// fast peer cannot queue unbounded memory in front of the job (the
	// backpressure reaches the peer through TCP).
	cmu     sync.Mutex
	ccond   *sync.Cond
	inbound int
}

// inboundLimit bounds a peer's frames in flight to the job goroutine; one
// frame larger than it is still accepted when nothing else is in flight.
const inboundLimit = 64 << 20

// acquire waits until n more inbound bytes fit; false if the peer closed.
func (p *peer) acquire(n int) bool {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	for p.inbound > 0 && p.inbound+n > inboundLimit {
		select {
		case <-p.done:
			return false
		default:
		}
		p.ccond.Wait()
	}
	p.inbound += n
	return true
}

// release returns n inbound bytes (the job handled a frame).
func (p *peer) release(n int) {
	p.cmu.Lock()
	p.inbound -= n
	p.cmu.Unlock()
	p.ccond.Broadcast()
}

// outMsg is one message to send. release, when set, returns the message's
// buffer to its pool once written (or dropped).
type outMsg struct {
	b       []byte
	body    []byte // optional second part, sent in the same message
	release func()
	// closeWith, when set, makes the writer close the connection after
	// everything queued before it was written (an error frame, then the
	// close that it explains).
	closeWith error
}

func newPeer(id uint64, ws *websocket.Conn, remote string, m *jobMetrics, queue int) *peer {
	p := &peer{id: id, ws: ws, remote: remote, m: m, out: make(chan outMsg, queue), done: make(chan struct{})}
	p.ccond = sync.NewCond(&p.cmu)
	return p
}

var errSlowPeer = errors.New("peer too slow: send queue full")

// send queues msg without blocking. A full queue means the peer is not
// keeping up; it is closed (StatusPolicyViolation) and send reports false.
func (p *peer) send(msg outMsg) bool {
	select {
	case <-p.done:
		if msg.release != nil {
			msg.release()
		}
		return false
	default:
	}
	select {
	case p.out <- msg:
		return true
	default:
		if msg.release != nil {
			msg.release()
		}
		p.m.dropped.Add(1)
		p.close(websocket.StatusPolicyViolation, errSlowPeer)
		return false
	}
}

// writeLoop sends queued messages, each under its own write deadline.
func (p *peer) writeLoop(writeTimeout time.Duration) {
	for {
		select {
		case <-p.done:
			p.drain()
			return
		case msg := <-p.out:
			if msg.closeWith != nil {
				p.close(websocket.StatusPolicyViolation, msg.closeWith)
				p.drain()
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
			var err error
			if msg.body == nil {
				err = p.ws.Write(ctx, websocket.MessageBinary, msg.b)
			} else {
				err = writeParts(ctx, p.ws, msg.b, msg.body)
			}
			cancel()
			if err == nil {
				p.m.msgsOut.Add(1)
				p.m.bytesOut.Add(uint64(len(msg.b) + len(msg.body)))
			}
			if msg.release != nil {
				msg.release()
			}
			if err != nil {
				if ctx.Err() != nil {
					p.m.dropped.Add(1)
				}
				p.close(websocket.StatusPolicyViolation, err)
				p.drain()
				return
			}
		}
	}
}

func (p *peer) drain() {
	for {
		select {
		case msg := <-p.out:
			if msg.release != nil {
				msg.release()
			}
		default:
			return
		}
	}
}

// closeAfterQueued closes the connection (StatusPolicyViolation) once the
// writer has sent what is queued, so an error frame reaches the peer before
// the close; if the queue is full it closes at once.
func (p *peer) closeAfterQueued(why error) {
	select {
	case p.out <- outMsg{closeWith: why}:
	default:
		p.close(websocket.StatusPolicyViolation, why)
	}
}

// close closes the connection once; later calls are no-ops.
func (p *peer) close(code websocket.StatusCode, why error) {
	p.once.Do(func() {
		p.mu.Lock()
		p.reason = why
		p.mu.Unlock()
		close(p.done)
		if p.log != nil && code != websocket.StatusNormalClosure {
			p.log.Info("closing connection", "peer", p.id, "remote", p.remote, "code", code, "reason", why)
		}
		p.cmu.Lock()
		p.ccond.Broadcast() // a reader waiting for credit sees done
		p.cmu.Unlock()
		msg := ""
		if why != nil {
			msg = why.Error()
			if len(msg) > 120 { // close reasons are capped at 123 bytes
				msg = msg[:120]
			}
		}
		if p.ws == nil {
			return
		}
		go func() {
			// Close waits up to 5s for the peer's close frame; do not
			// hold the caller (often the job goroutine) for that.
			_ = p.ws.Close(code, msg)
		}()
	})
}

func (p *peer) closedReason() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reason
}
