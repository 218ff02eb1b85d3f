//go:build !js && !wasip1

package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"nhooyr.io/websocket"
)

// peer is one accepted websocket connection. Its reader (the HTTP
// handler's goroutine) feeds the job; its writer goroutine drains a queue
// bounded in bytes (see send). Neither ever blocks the job goroutine or
// another peer.
//
// Liveness is measured in bytes, not messages: the reader notes when the
// last byte arrived (a part of a frame is progress) and the writer when
// the last chunk left. A watchdog closes the connection when nothing
// arrived for the idle timeout (unless the relay itself holds the reader
// back: that is back-pressure, not silence) or when a write made no
// progress for the write timeout (a peer that stopped reading). Both use
// the connection's context: cancelling it makes the websocket library
// close the connection.
type peer struct {
	id     uint64
	ws     *websocket.Conn
	remote string
	m      atomic.Pointer[jobMetrics] // the server's pre-auth figures, then the job's
	job    atomic.Pointer[job]        // set once the Hello names it
	log    *slog.Logger               // nil in unit tests
	epoch  time.Time                  // the server's clock base for lastRead and lastWrite

	ctx    context.Context // the connection's: reads and writes
	cancel context.CancelFunc

	done   chan struct{} // closed when the peer is closed
	once   sync.Once
	authed bool // token checked at upgrade (replaces the Hello's)
	token  string

	joined chan struct{} // closed when the job accepted the Hello
	jonce  sync.Once

	mu     sync.Mutex
	reason error // why the peer was closed

	// Progress, in nanoseconds since epoch.
	lastRead  atomic.Int64
	lastWrite atomic.Int64
	writing   atomic.Bool  // a message is being written
	held      atomic.Int32 // > 0 while the relay holds the reader back
	deadline  atomic.Int64 // pre-auth: absolute Hello deadline (0 after)

	// Inbound credit: bytes and frames of this peer read but not yet
	// handled by the job. The reader waits while either is over its limit,
	// so one fast peer cannot queue unbounded memory in front of the job
	// (the back-pressure reaches the peer through TCP).
	cmu     sync.Mutex
	ccond   *sync.Cond
	inbound int
	frames  int

	// The send queue, bounded in bytes: see send.
	qmu    sync.Mutex
	q      []outMsg
	qwake  chan struct{} // cap 1: wakes the writer
	qbytes atomic.Int64  // bytes queued, including the message being written
	// With drainWant set, the writer kicks the job once qbytes fell to
	// drainAt or below (the job waits for that to resume the peer).
	drainWant atomic.Bool
	drainAt   int64

	// Owned by the job goroutine.
	pend     int64     // bytes of answers held in the job's pending list
	deferred []*[]byte // frames not handled yet: the peer's answers are over the send buffer
	stalled  bool
}

// inboundLimit bounds a peer's frame bytes in flight to the job goroutine;
// one frame larger than it is still accepted when nothing else is in
// flight. inboundFrames bounds their number (small frames cost more than
// their bytes: a pool buffer and an event each).
const (
	inboundLimit  = 64 << 20
	inboundFrames = 4096
)

// writeChunk is the piece size of a big message's write: progress is
// observed between pieces, so a slow but reading peer is never mistaken
// for a dead one (it must take 1 MiB per write timeout, 35 KB/s at the
// default 30 s). Each piece is one websocket frame: bigger pieces, fewer
// frames and system calls.
const writeChunk = 1 << 20

func newPeer(id uint64, ws *websocket.Conn, remote string, m *jobMetrics, epoch time.Time, sendBuffer int64) *peer {
	p := &peer{id: id, ws: ws, remote: remote, epoch: epoch, done: make(chan struct{}),
		joined: make(chan struct{}), qwake: make(chan struct{}, 1), drainAt: sendBuffer / 2}
	p.m.Store(m)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.ccond = sync.NewCond(&p.cmu)
	now := p.clock()
	p.lastRead.Store(now)
	p.lastWrite.Store(now)
	return p
}

// clock is the time since the server's epoch (monotonic).
func (p *peer) clock() int64 { return int64(time.Since(p.epoch)) }

// heardAt is when the peer was last heard from: the last byte read, or
// now while the relay holds its reader back.
func (p *peer) heardAt() int64 {
	if p.held.Load() > 0 {
		return p.clock()
	}
	return p.lastRead.Load()
}

// hold marks the reader as held back by the relay until the returned
// func is called.
func (p *peer) hold() func() {
	p.held.Add(1)
	return func() {
		p.lastRead.Store(p.clock())
		p.held.Add(-1)
	}
}

// progressReader notes the bytes that arrive, at least every readChunk.
type progressReader struct {
	r io.Reader
	p *peer
}

// readChunk bounds one Read of a frame's payload. The websocket library
// fills the whole buffer it is given before returning (io.ReadFull on the
// socket), so reading a 24 MiB frame in one call would show no progress
// until its last byte: an honest worker uploading it over a slow link
// looked silent and was removed. In pieces, a peer must deliver 256 KiB
// per idle timeout (25 KB/s at the default 10 s) to count as alive.
const readChunk = 256 << 10

func (r progressReader) Read(b []byte) (int, error) {
	if len(b) > readChunk {
		b = b[:readChunk]
	}
	n, err := r.r.Read(b)
	if n > 0 {
		r.p.lastRead.Store(r.p.clock())
	}
	return n, err
}

// watch closes the connection when it is idle or a write is stuck; it
// returns when the peer closes.
func (p *peer) watch(idle, write time.Duration) {
	t := time.NewTimer(0) // the first round computes the first deadline
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		now := p.clock()
		next := now + int64(write)
		if d := p.deadline.Load(); d != 0 {
			if now >= d {
				p.close(websocket.StatusPolicyViolation, errNoHello)
				return
			}
			next = min(next, d)
		} else {
			last := p.heardAt()
			if now-last >= int64(idle) {
				p.close(websocket.StatusPolicyViolation, errIdle)
				return
			}
			next = min(next, last+int64(idle))
		}
		if p.writing.Load() {
			last := p.lastWrite.Load()
			if now-last >= int64(write) {
				p.m.Load().dropped.Add(1)
				p.close(websocket.StatusPolicyViolation, errStuck)
				return
			}
			next = min(next, last+int64(write))
		}
		t.Reset(time.Duration(max(next-now, int64(time.Millisecond))))
	}
}

var (
	errNoHello = errors.New("no Hello within the handshake timeout")
	errIdle    = errors.New("connection idle: nothing received within the idle timeout")
	errStuck   = errors.New("peer stopped reading: a write made no progress within the write timeout")
)

// acquire waits until a frame of n more inbound bytes fits; false if the
// peer closed.
func (p *peer) acquire(n int) bool {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	if (p.inbound > 0 && p.inbound+n > inboundLimit) || p.frames >= inboundFrames {
		done := p.hold()
		defer done()
		for (p.inbound > 0 && p.inbound+n > inboundLimit) || p.frames >= inboundFrames {
			select {
			case <-p.done:
				return false
			default:
			}
			p.ccond.Wait()
		}
	}
	p.inbound += n
	p.frames++
	return true
}

// release returns a frame of n inbound bytes (the job handled it).
func (p *peer) release(n int) {
	p.cmu.Lock()
	p.inbound -= n
	p.frames--
	p.cmu.Unlock()
	p.ccond.Broadcast()
}

// outMsg is one message to send. release, when set, returns the message's
// buffers once written (or dropped).
type outMsg struct {
	b       []byte
	body    []byte // optional second part, sent in the same message
	release func()
	// closeWith, when set, makes the writer close the connection after
	// everything queued before it was written (an error frame, then the
	// close that it explains).
	closeWith error
}

func (m *outMsg) size() int64 { return int64(len(m.b) + len(m.body)) }

// send queues msg. It never blocks and never fails for being over a
// limit: the queue is bounded in bytes by the job, which stops handling
// the peer's requests while its queued answers exceed the send buffer
// (see job.handle), so what a peer can make the relay hold is bounded by
// the answers to requests already accepted. False if the peer is closed.
func (p *peer) send(msg outMsg) bool {
	select {
	case <-p.done:
		if msg.release != nil {
			msg.release()
		}
		return false
	default:
	}
	p.qmu.Lock()
	p.q = append(p.q, msg)
	p.qbytes.Add(msg.size())
	p.qmu.Unlock()
	select {
	case p.qwake <- struct{}{}:
	default:
	}
	return true
}

// writeLoop sends queued messages until the peer closes.
func (p *peer) writeLoop() {
	var batch []outMsg
	defer func() {
		for _, m := range batch {
			if m.release != nil {
				m.release()
			}
		}
		p.drain()
	}()
	for {
		select {
		case <-p.done:
			return
		case <-p.qwake:
		}
		p.qmu.Lock()
		batch, p.q = p.q, batch[:0]
		p.qmu.Unlock()
		for i := range batch {
			msg := batch[i]
			batch[i] = outMsg{}
			if msg.closeWith != nil {
				p.close(websocket.StatusPolicyViolation, msg.closeWith)
				for _, m := range batch[i+1:] {
					if m.release != nil {
						m.release()
					}
				}
				batch = batch[:0]
				return
			}
			err := p.write(msg.b, msg.body)
			if err == nil {
				m := p.m.Load()
				m.msgsOut.Add(1)
				m.bytesOut.Add(uint64(msg.size()))
			}
			if msg.release != nil {
				msg.release()
			}
			left := p.qbytes.Add(-msg.size())
			if err != nil {
				p.close(websocket.StatusPolicyViolation, err)
				for _, m := range batch[i+1:] {
					if m.release != nil {
						m.release()
					}
				}
				batch = batch[:0]
				return
			}
			if left <= p.drainAt && p.drainWant.CompareAndSwap(true, false) {
				if j := p.job.Load(); j != nil {
					j.kick()
				}
			}
		}
		batch = batch[:0]
	}
}

// write sends head and body as one message, in pieces of writeChunk, and
// notes the progress between pieces for the watchdog.
func (p *peer) write(head, body []byte) error {
	p.lastWrite.Store(p.clock())
	p.writing.Store(true)
	defer func() {
		p.lastWrite.Store(p.clock())
		p.writing.Store(false)
	}()
	if len(head)+len(body) <= writeChunk {
		if body == nil {
			return p.ws.Write(p.ctx, websocket.MessageBinary, head)
		}
		return writeParts(p.ctx, p.ws, head, body)
	}
	w, err := p.ws.Writer(p.ctx, websocket.MessageBinary)
	if err != nil {
		return err
	}
	for _, part := range [2][]byte{head, body} {
		for len(part) > 0 {
			n := min(len(part), writeChunk)
			if _, err := w.Write(part[:n]); err != nil {
				w.Close()
				return err
			}
			part = part[n:]
			p.lastWrite.Store(p.clock())
		}
	}
	return w.Close()
}

// drain releases whatever is still queued (the peer closed).
func (p *peer) drain() {
	p.qmu.Lock()
	q := p.q
	p.q = nil
	p.qmu.Unlock()
	for _, m := range q {
		p.qbytes.Add(-m.size())
		if m.release != nil {
			m.release()
		}
	}
}

// closeAfterQueued closes the connection (StatusPolicyViolation) once the
// writer has sent what is queued, so an error frame reaches the peer
// before the close.
func (p *peer) closeAfterQueued(why error) {
	if !p.send(outMsg{closeWith: why}) {
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
			p.cancel()
			return
		}
		go func() {
			// Close waits up to 5s for the peer's close frame; do not
			// hold the caller (often the job goroutine) for that. The
			// context goes last: cancelling it closes the connection at
			// once, without the close handshake.
			_ = p.ws.Close(code, msg)
			p.cancel()
		}()
	})
}

func (p *peer) closedReason() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reason
}

// markJoined records that the job accepted the peer's Hello.
func (p *peer) markJoined() { p.jonce.Do(func() { close(p.joined) }) }
