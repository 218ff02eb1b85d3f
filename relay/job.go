//go:build !js && !wasip1

package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/wire"
	"github.com/webkv/webkv/relay/internal/bufpool"
	"nhooyr.io/websocket"
)

// job runs one psm.Job in its own goroutine. Connection readers and a timer
// feed it events; it is the only goroutine that touches the state machine,
// so the psm needs no locks and stays deterministic.
type job struct {
	name string
	s    *Server
	log  *slog.Logger
	m    *jobMetrics
	in   chan event
	quit chan struct{}
	done chan struct{}

	// owned by the job goroutine
	sm      *psm.Job
	peers   map[uint64]*peer
	start   time.Time
	dirty   bool // state changed since the last checkpoint
	sinceCk int  // Persist readies since the last checkpoint
	lastCk  time.Time
	ckSize  int // size of the last snapshot, to size the next buffer
	pending []pendingMsg
	// round latency: time from the first push after a round closed to the
	// next close (an approximation across keys; psm keeps per-key rounds)
	roundStart time.Time
	lastPushes uint64
	lastRounds uint64

	mu      sync.Mutex
	err     error // final checkpoint error, read after done
	lastCkT time.Time
	mode    string
	stats   psm.Stats // copy of the state machine's counters, for /status and /metrics
}

// payloadID identifies a payload in the state machine's memory.
type payloadID struct {
	p *byte
	n int
}

type eventKind uint8

const (
	evConnect eventKind = iota
	evMsg
	evDisconnect
)

type event struct {
	kind eventKind
	p    *peer
	buf  *[]byte // evMsg: the frame (pooled)
}

type pendingMsg struct {
	p    *peer
	buf  *[]byte
	body *sharedBuf // payload shared with other messages (buf is then the header)
}

// sharedBuf is one copy of a payload that several messages carry (the new
// value of a key answered to every worker of a round): copied once, released
// when the last writer is done with it.
type sharedBuf struct {
	b    *[]byte
	refs atomic.Int32
}

func (s *sharedBuf) release() {
	if s.refs.Add(-1) == 0 {
		bufpool.Put(s.b)
	}
}

// shareMin is the payload size from which identical payloads in one Ready
// are copied once and shared.
const shareMin = 64 << 10

func (s *Server) psmConfig(name string) psm.Config {
	lim := s.limits()
	c := psm.Config{
		Job:           name,
		Shard:         s.cfg.ShardIndex,
		Shards:        max(1, len(s.cfg.Shards)),
		Heartbeat:     s.cfg.Heartbeat,
		Timeout:       s.cfg.Timeout,
		RoundDeadline: s.cfg.RoundDeadline,
		Limits:        &lim,
		MaxKeys:       s.cfg.MaxKeys,
		Token:         s.cfg.Tokens[name],
		MinWorkers:    s.cfg.MinWorkers,
		Updaters:      s.updaters(),
	}
	// Quorum 0 means every expected worker: the deadline then never closes
	// a round short (psm's own default would be a quorum of one).
	switch q := s.cfg.Quorum; {
	case q > 1:
		c.QuorumMin = int(q)
	case q > 0:
		c.QuorumFrac = q
	default:
		c.QuorumFrac = 1
	}
	return c
}

func (s *Server) limits() wire.Limits {
	return wire.Limits{
		MaxPayload: int(min(s.cfg.MaxMessage, 1<<31-1)),
		MaxKeys:    s.cfg.MaxKeys,
	}
}

func (s *Server) newJob(name string) (*job, error) {
	sm, err := psm.New(s.psmConfig(name))
	if err != nil {
		return nil, err
	}
	s.log.Info("job created", "job", name)
	return s.startJob(name, sm), nil
}

func (s *Server) restoreJob(name string, ck checkpoint) (*job, error) {
	sm, err := psm.Restore(s.psmConfig(name), ck.Snapshot, 0)
	if err != nil {
		return nil, err
	}
	j := s.startJob(name, sm)
	j.mu.Lock()
	j.lastCkT = ck.Time
	j.mu.Unlock()
	return j, nil
}

func (s *Server) startJob(name string, sm *psm.Job) *job {
	j := &job{
		name:  name,
		s:     s,
		log:   s.log.With("job", name),
		m:     &jobMetrics{},
		in:    make(chan event, 256),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
		sm:    sm,
		peers: map[uint64]*peer{},
		start: time.Now(),
	}
	j.lastCk = time.Now()
	// A restored job's figures are visible from the start, not only after
	// its goroutine first runs.
	j.publish()
	s.wg.Add(1)
	go j.run()
	return j
}

// serve runs p's reader on the caller's goroutine (the HTTP handler) until
// the connection ends.
func (j *job) serve(p *peer) {
	if !j.post(event{kind: evConnect, p: p}) {
		p.close(websocket.StatusGoingAway, errors.New("relay shutting down"))
		return
	}
	err := j.readLoop(p)
	var we *wire.Error
	if errors.As(err, &we) {
		// A frame that failed validation: tell the peer why, close only
		// this connection.
		j.m.errors.Add(1)
		j.log.Warn("bad frame; closing connection", "peer", p.id, "remote", p.remote, "err", err)
		b := bufpool.Get(wire.HeaderSize + len(we.Msg))
		*b = wire.AppendError(*b, 0, we.Code, we.Msg)
		p.send(outMsg{b: *b, release: func() { bufpool.Put(b) }})
		p.closeAfterQueued(err)
		// Wait (bounded) for the writer to send the error and close.
		select {
		case <-p.done:
		case <-time.After(j.s.cfg.WriteTimeout):
			p.close(websocket.StatusPolicyViolation, err)
		}
	} else {
		p.close(websocket.StatusNormalClosure, nil)
	}
	j.post(event{kind: evDisconnect, p: p})
}

// post hands an event to the job goroutine; false once the job stopped.
func (j *job) post(e event) bool {
	select {
	case j.in <- e:
		return true
	case <-j.quit:
		if e.buf != nil {
			bufpool.Put(e.buf)
		}
		return false
	}
}

// readLoop reads frames. Each frame's header is read and validated first,
// and only then is a buffer of the announced size taken from the pool: a
// peer cannot make the relay allocate more than the limits allow.
func (j *job) readLoop(p *peer) error {
	lim := j.s.limits()
	var hdr [wire.HeaderSize]byte
	for {
		// The context covers waiting for the message and reading it; when
		// it expires the library closes the connection.
		ctx, cancel := context.WithTimeout(context.Background(), j.s.cfg.IdleTimeout)
		err := j.readFrame(ctx, p, &lim, hdr[:])
		cancel()
		if err == errStop {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// errStop ends the read loop quietly (the job stopped or the peer closed).
var errStop = errors.New("stop")

// readFrame reads, validates and posts one frame.
func (j *job) readFrame(ctx context.Context, p *peer, lim *wire.Limits, hdr []byte) error {
	typ, r, err := p.ws.Reader(ctx)
	if err != nil {
		return err
	}
	if typ != websocket.MessageBinary {
		return wire.Errorf(wire.CodeBadFrame, "text message; the protocol is binary")
	}
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return wire.Errorf(wire.CodeBadFrame, "message shorter than the %d-byte header", wire.HeaderSize)
		}
		return err
	}
	var h wire.Header
	if err := wire.DecodeHeader(hdr[:], lim, &h); err != nil {
		return err
	}
	n := wire.HeaderSize + int(h.PLen)
	if !p.acquire(n) {
		return errStop
	}
	b := bufpool.Get(n)
	*b = append(*b, hdr[:]...)
	*b = (*b)[:n]
	if _, err := io.ReadFull(r, (*b)[wire.HeaderSize:]); err != nil {
		bufpool.Put(b)
		p.release(n)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return wire.Errorf(wire.CodeBadFrame, "%v: truncated: payload shorter than the %d bytes announced", h.Type, h.PLen)
		}
		return err
	}
	// Trailing bytes after the announced payload are malformed too.
	var one [1]byte
	if k, _ := r.Read(one[:]); k > 0 {
		bufpool.Put(b)
		p.release(n)
		return wire.Errorf(wire.CodeBadFrame, "%v: trailing bytes after the %d-byte payload", h.Type, h.PLen)
	}
	if h.Type == wire.TypeHello {
		// The URL chose the job (and its token was checked for it);
		// a Hello naming another job is refused, not rerouted.
		hl, err := wire.DecodeHello((*b)[wire.HeaderSize:], lim)
		if err != nil {
			bufpool.Put(b)
			p.release(n)
			return err
		}
		if hl.Job != j.name {
			bufpool.Put(b)
			p.release(n)
			return wire.Errorf(wire.CodeBadRequest, "hello names job %q on a connection for job %q", hl.Job, j.name)
		}
	}
	j.m.msgsIn.Add(1)
	j.m.bytesIn.Add(uint64(n))
	switch h.Type {
	case wire.TypePush, wire.TypePushPull:
		j.m.pushes.Add(1)
	case wire.TypePull:
		j.m.pulls.Add(1)
	}
	if j.compileFirst(p, &h, b) {
		return nil
	}
	if !j.post(event{kind: evMsg, p: p, buf: b}) {
		p.release(n)
		return errStop
	}
	return nil
}

func (j *job) stop() {
	select {
	case <-j.quit:
	default:
		close(j.quit)
	}
}

func (j *job) stopErr() error {
	<-j.done
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

func (j *job) now() time.Duration { return time.Since(j.start) }

// run is the job goroutine.
func (j *job) run() {
	defer j.s.wg.Done()
	defer close(j.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ckTicker := time.NewTicker(j.s.cfg.CheckpointInterval)
	defer ckTicker.Stop()
	j.apply(j.sm.Tick(j.now()), timer)
	var retry <-chan time.Time // set while a durable checkpoint keeps failing
	for {
		select {
		case <-j.quit:
			j.shutdown()
			return
		case e := <-j.in:
			j.handle(e, timer)
			// Drain what is already queued before the group commit, so
			// one checkpoint covers a whole round's worth of pushes.
		drain:
			for range cap(j.in) {
				select {
				case e := <-j.in:
					j.handle(e, timer)
				default:
					break drain
				}
			}
		case <-timer.C:
			j.apply(j.sm.Tick(j.now()), timer)
		case <-ckTicker.C:
			if j.dirty {
				j.checkpoint()
			}
		case <-retry:
		}
		retry = nil
		if !j.flush() {
			retry = time.After(time.Second)
		}
	}
}

func (j *job) handle(e event, timer *time.Timer) {
	switch e.kind {
	case evConnect:
		j.peers[e.p.id] = e.p
	case evDisconnect:
		if _, ok := j.peers[e.p.id]; ok {
			delete(j.peers, e.p.id)
			j.apply(j.sm.Disconnect(j.now(), psm.ConnID(e.p.id)), timer)
		}
	case evMsg:
		if _, ok := j.peers[e.p.id]; ok {
			j.apply(j.sm.Step(j.now(), psm.ConnID(e.p.id), *e.buf), timer)
		}
		e.p.release(len(*e.buf))
		bufpool.Put(e.buf)
	}
}

// apply encodes what the state machine returned (its memory is only valid
// until the next call) and queues it; flush sends it after the checkpoint
// that Durable mode requires.
func (j *job) apply(rd psm.Ready, timer *time.Timer) {
	var shared map[payloadID]*sharedBuf
	for i := range rd.Msgs {
		m := &rd.Msgs[i]
		p, ok := j.peers[uint64(m.To)]
		if !ok {
			continue
		}
		if pl := m.Msg.Payload; len(pl) >= shareMin {
			id := payloadID{&pl[0], len(pl)}
			sb := shared[id]
			if sb == nil {
				b := bufpool.Get(len(pl))
				*b = append(*b, pl...)
				sb = &sharedBuf{b: b}
				if shared == nil {
					shared = map[payloadID]*sharedBuf{}
				}
				shared[id] = sb
			}
			sb.refs.Add(1)
			h := m.Msg.Header
			h.PLen = uint32(len(pl))
			hb := bufpool.Get(wire.HeaderSize)
			*hb = wire.AppendHeader(*hb, &h)
			j.pending = append(j.pending, pendingMsg{p: p, buf: hb, body: sb})
			continue
		}
		b := bufpool.Get(wire.HeaderSize + len(m.Msg.Payload))
		*b = m.Append(*b)
		j.pending = append(j.pending, pendingMsg{p: p, buf: b})
	}
	for _, c := range rd.Close {
		if p, ok := j.peers[uint64(c)]; ok {
			// Queued after the messages, so the error that explains the
			// close goes out first.
			j.pending = append(j.pending, pendingMsg{p: p, buf: nil})
		}
	}
	if rd.Persist {
		j.dirty = true
		j.sinceCk++
	}
	if rd.Next > 0 {
		d := rd.Next - j.now()
		if d < 0 {
			d = 0
		}
		timer.Reset(d)
	}
	st := j.publish()
	switch {
	case st.Rounds > j.lastRounds:
		var d time.Duration
		if !j.roundStart.IsZero() {
			d = time.Since(j.roundStart)
		}
		j.m.observeRound(d)
		j.roundStart = time.Time{}
	case st.Pushes != j.lastPushes && j.roundStart.IsZero():
		j.roundStart = time.Now()
	}
	j.lastPushes = st.Pushes
	j.lastRounds = st.Rounds
}

// flush checkpoints when due (always before acks in Durable mode), then
// hands the queued messages to their peers' writers.
//
// In Durable mode a failed checkpoint holds every answer back (they stay
// in j.pending) and flush reports false; the run loop retries every second.
// Answering anyway would acknowledge updates a crash could lose.
func (j *job) flush() bool {
	if j.dirty && j.s.db != nil && (j.s.cfg.Durable || j.sinceCk >= j.s.cfg.CheckpointRounds) {
		if err := j.checkpoint(); err != nil && j.s.cfg.Durable {
			return false
		}
	}
	for i, pm := range j.pending {
		if pm.buf == nil {
			pm.p.closeAfterQueued(errors.New("closed by the parameter server"))
		} else if pm.body != nil {
			b, sb := pm.buf, pm.body
			pm.p.send(outMsg{b: *b, body: *sb.b, release: func() { bufpool.Put(b); sb.release() }})
		} else {
			b := pm.buf
			pm.p.send(outMsg{b: *b, release: func() { bufpool.Put(b) }})
		}
		j.pending[i] = pendingMsg{}
	}
	j.pending = j.pending[:0]
	return true
}

// checkpoint writes the job's snapshot in one bbolt transaction.
func (j *job) checkpoint() error {
	if j.s.db == nil {
		j.dirty = false
		return nil
	}
	t0 := time.Now()
	b := bufpool.Get(j.ckSize)
	snap, err := j.sm.AppendSnapshot(*b)
	if err == nil {
		j.ckSize = len(snap)
		err = j.s.db.save(j.name, checkpoint{Round: j.sm.Stats().Rounds, Time: t0, Snapshot: snap})
	}
	*b = snap
	bufpool.Put(b)
	j.m.ckptNanos.Store(uint64(time.Since(t0)))
	if err != nil {
		j.m.ckptErrors.Add(1)
		j.log.Error("checkpoint failed", "err", err)
		return err
	}
	j.m.checkpoints.Add(1)
	j.dirty, j.sinceCk, j.lastCk = false, 0, t0
	j.mu.Lock()
	j.lastCkT = t0
	j.mu.Unlock()
	return nil
}

// shutdown writes the final checkpoint and closes every connection with
// GoingAway, so workers reconnect (to the restarted relay).
func (j *job) shutdown() {
	if j.dirty || j.s.db != nil {
		if err := j.checkpoint(); err != nil {
			j.mu.Lock()
			j.err = fmt.Errorf("relay: final checkpoint of job %q: %w", j.name, err)
			j.mu.Unlock()
		}
	}
	for _, pm := range j.pending {
		if pm.buf != nil {
			bufpool.Put(pm.buf)
		}
		if pm.body != nil {
			pm.body.release()
		}
	}
	j.pending = nil
	for _, p := range j.peers {
		p.close(websocket.StatusGoingAway, errors.New("relay shutting down"))
	}
	// Readers blocked in post see quit; drop what they queued.
	for {
		select {
		case e := <-j.in:
			if e.buf != nil {
				e.p.release(len(*e.buf))
				bufpool.Put(e.buf)
			}
		default:
			return
		}
	}
}

// publish copies the state machine's figures where Status reads them.
func (j *job) publish() psm.Stats {
	st := j.sm.Stats()
	j.m.liveWorkers.Store(int64(st.Workers))
	j.m.rounds.Store(st.Rounds)
	j.mu.Lock()
	j.stats = st
	if j.mode == "" && j.sm.Mode() != 0 {
		j.mode = j.sm.Mode().String()
	}
	j.mu.Unlock()
	return st
}

func (j *job) status() JobStatus {
	j.mu.Lock()
	last, mode, st := j.lastCkT, j.mode, j.stats
	j.mu.Unlock()
	return JobStatus{
		Job:         j.name,
		Mode:        mode,
		Keys:        st.Keys,
		Updates:     st.Updates,
		LatePushes:  st.LatePushes,
		Rescaled:    st.Rescaled,
		Duplicates:  st.Duplicates,
		Removed:     st.Removed,
		LiveWorkers: j.m.liveWorkers.Load(),
		Connections: j.m.conns.Load(),
		Rounds:      j.m.rounds.Load(),
		Pushes:      j.m.pushes.Load(),
		Pulls:       j.m.pulls.Load(),
		BytesIn:     j.m.bytesIn.Load(),
		BytesOut:    j.m.bytesOut.Load(),
		Checkpoints: j.m.checkpoints.Load(),
		LastCkpt:    last,
	}
}
