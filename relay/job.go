//go:build !js && !wasip1

package relay

import (
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
	wake chan struct{} // cap 1: a stalled peer's answers drained
	quit chan struct{}
	wipe chan struct{} // the operator wipes the job (jobs.go)
	done chan struct{}

	// users counts the connections that hold this job (under Server.mu);
	// a job is dropped only when it has none. wiping: the operator wipes
	// it (jobs.go), jobFor refuses it.
	users  int
	wiping bool

	// owned by the job goroutine
	sm      *psm.Job
	peers   map[uint64]*peer
	stalled map[*peer]bool // peers whose requests wait for their answers to drain
	start   time.Time
	dirty   bool // state changed since the last checkpoint
	sinceCk int  // Persist readies since the last checkpoint
	lastCk  time.Time
	ckSize  int // size of the last snapshot, to size the next buffer
	pending []pendingMsg
	shared  map[uint64]*sharedBuf // by key: the last version of its value sent
	expired bool                  // the state machine said so: drop when idle
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
	agg     string    // the state machine's aggregation rule, for /status
	runNo   uint64    // the state machine's run
	workers int       // the state machine's worker count
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
	size int64
}

// sharedBuf is one immutable copy of a payload that several messages carry
// (a key's value at one version, answered to every worker that pulls it
// while it is current): copied once, released when the last writer is done
// with it. A job keeps the last one per key and reuses it while it is
// alive (refs > 0) and of the version asked for.
type sharedBuf struct {
	b    *[]byte
	ver  uint64
	refs atomic.Int32
}

func (s *sharedBuf) release() {
	if s.refs.Add(-1) == 0 {
		bufpool.Put(s.b)
	}
}

// acquire takes a reference unless the buffer was released already.
func (s *sharedBuf) acquire() bool {
	for {
		r := s.refs.Load()
		if r <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// shareMin is the payload size from which a versioned payload is copied
// once and shared; smaller ones are copied into each message.
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
		WorkerTokens:  s.cfg.WorkerTokens[name],
		MinWorkers:    s.cfg.MinWorkers,
		MaxWorkers:    s.cfg.MaxWorkers,
		MaxElems:      int(min(s.cfg.MaxElems, 1<<31-1)),
		MaxBytes:      s.cfg.MaxJobBytes,
		Budget:        s.budget,
		MaxReplyBytes: s.cfg.MaxReplyBytes,
		Window:        s.cfg.Window,
		WindowBytes:   s.cfg.SendBuffer,
		IdleExpiry:    max(s.cfg.JobExpiry, 0),
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
		name:    name,
		s:       s,
		log:     s.log.With("job", name),
		m:       &jobMetrics{},
		in:      make(chan event, 256),
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		wipe:    make(chan struct{}),
		done:    make(chan struct{}),
		sm:      sm,
		peers:   map[uint64]*peer{},
		stalled: map[*peer]bool{},
		shared:  map[uint64]*sharedBuf{},
		start:   time.Now(),
	}
	j.lastCk = time.Now()
	// A restored job's figures are visible from the start, not only after
	// its goroutine first runs.
	j.publish()
	s.wg.Add(1)
	go j.run()
	return j
}

// testHooks order a job goroutine against its readers in tests
// (answers_test.go); a Server's is nil otherwise.
type testHooks struct {
	posted func(wire.Header) // a reader queued a request for the job goroutine
	step   func(wire.Header) // the job goroutine is about to step a request
}

// post hands an event to the job goroutine; false once the job stopped.
// The reader counts as held back (not silent) while it waits.
func (j *job) post(e event) bool {
	if h := j.s.hooks; h != nil && e.kind == evMsg {
		var hd wire.Header
		if wire.DecodeHeader(*e.buf, nil, &hd) == nil {
			defer h.posted(hd)
		}
	}
	select {
	case j.in <- e:
		return true
	default:
	}
	if e.p != nil {
		defer e.p.hold()()
	}
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

// readLoop reads frames after the handshake. Each frame's header is read
// and validated first, and only then is a buffer of the announced size
// taken from the pool: a peer cannot make the relay allocate more than
// the limits allow.
func (j *job) readLoop(p *peer) error {
	lim := j.s.limits()
	var hdr [wire.HeaderSize]byte
	for {
		err := j.readFrame(p, &lim, hdr[:])
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
func (j *job) readFrame(p *peer, lim *wire.Limits, hdr []byte) error {
	b, h, err := readFrame(p, lim, hdr, func(n int) bool { return p.acquire(n) })
	if err != nil {
		return err
	}
	n := len(*b)
	if h.Type == wire.TypeHello {
		// The URL chose the job (and its token was checked for it);
		// a Hello naming another job is refused, not rerouted.
		hl, err := wire.DecodeHello((*b)[wire.HeaderSize:], lim)
		if err == nil && hl.Job != j.name {
			err = wire.Errorf(wire.CodeBadRequest, "hello names job %s on a connection for job %s", quote(hl.Job), quote(j.name))
		}
		if err != nil {
			bufpool.Put(b)
			p.release(n)
			return err
		}
	}
	j.count(&h, n)
	if j.compileFirst(p, &h, b) {
		return nil
	}
	if !j.post(event{kind: evMsg, p: p, buf: b}) {
		p.release(n)
		return errStop
	}
	return nil
}

func (j *job) count(h *wire.Header, n int) {
	j.m.msgsIn.Add(1)
	j.m.bytesIn.Add(uint64(n))
	switch h.Type {
	case wire.TypePush, wire.TypePushPull, wire.TypePushList:
		j.m.pushes.Add(1)
	case wire.TypePull, wire.TypePullList:
		j.m.pulls.Add(1)
	}
}

// readFrame reads one frame from p: the header first, checked against lim,
// then (after acquire agreed to its size) a pooled buffer of the announced
// size. Every byte that arrives is progress for p's liveness.
func readFrame(p *peer, lim *wire.Limits, hdr []byte, acquire func(int) bool) (*[]byte, wire.Header, error) {
	var h wire.Header
	typ, rd, err := p.ws.Reader(p.ctx)
	if err != nil {
		return nil, h, err
	}
	r := progressReader{rd, p}
	p.lastRead.Store(p.clock())
	if typ != websocket.MessageBinary {
		return nil, h, wire.Errorf(wire.CodeBadFrame, "text message; the protocol is binary")
	}
	if _, err := io.ReadFull(r, hdr); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, h, wire.Errorf(wire.CodeBadFrame, "message shorter than the %d-byte header", wire.HeaderSize)
		}
		return nil, h, err
	}
	if err := wire.DecodeHeader(hdr, lim, &h); err != nil {
		return nil, h, err
	}
	n := wire.HeaderSize + int(h.PLen)
	if !acquire(n) {
		return nil, h, errStop
	}
	b := bufpool.Get(n)
	*b = append(*b, hdr...)
	*b = (*b)[:n]
	fail := func(err error) (*[]byte, wire.Header, error) {
		bufpool.Put(b)
		p.release(n)
		return nil, h, err
	}
	if _, err := io.ReadFull(r, (*b)[wire.HeaderSize:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fail(wire.Errorf(wire.CodeBadFrame, "%v: truncated: payload shorter than the %d bytes announced", h.Type, h.PLen))
		}
		return fail(err)
	}
	// Trailing bytes after the announced payload are malformed too.
	var one [1]byte
	if k, _ := r.Read(one[:]); k > 0 {
		return fail(wire.Errorf(wire.CodeBadFrame, "%v: trailing bytes after the %d-byte payload", h.Type, h.PLen))
	}
	return b, h, nil
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

// kick wakes the job goroutine (a stalled peer drained).
func (j *job) kick() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// run is the job goroutine.
func (j *job) run() {
	defer j.s.wg.Done()
	defer close(j.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ckTicker := time.NewTicker(j.s.cfg.CheckpointInterval)
	defer ckTicker.Stop()
	j.tick(timer)
	var retry <-chan time.Time // set while a durable checkpoint keeps failing
	for {
		select {
		case <-j.quit:
			j.shutdown()
			return
		case <-j.wipe:
			j.wipeNow()
			return
		case e := <-j.in:
			j.handle(e, timer)
			// Drain what is already queued before the group commit, so
			// one checkpoint covers a whole round's worth of pushes.
			// Answers that no durable checkpoint holds go out as each
			// request is handled: the worker acts on the first while
			// the relay steps through the rest (a list call's many
			// requests arrive together).
		drain:
			for range cap(j.in) {
				if !j.holdsAnswers() {
					j.send()
				}
				select {
				case e := <-j.in:
					j.handle(e, timer)
				default:
					break drain
				}
			}
		case <-j.wake:
			j.resume(timer)
		case <-timer.C:
			j.tick(timer)
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
		if j.idle() && j.s.dropJob(j) {
			j.drop()
			return
		}
	}
}

// tick tells the state machine when each peer was last heard from, then
// ticks it. Silence is the peer's: bytes count, not messages (a big upload
// in progress is not silence), and while the relay owes a peer answers
// (held for a durable checkpoint, queued, or its requests held back by
// flow control) the peer is waiting for the relay, not silent. A peer
// that stops reading what it is sent is closed by the write watchdog
// instead.
func (j *job) tick(timer *time.Timer) {
	off := j.start.Sub(j.s.epoch)
	for _, p := range j.peers {
		// Owed nothing: silent since the later of its last byte and the
		// end of the relay's last write to it.
		at := max(p.heardAt(), p.lastWrite.Load())
		if p.pend > 0 || p.stalled || p.qbytes.Load() > 0 {
			at = p.clock()
		}
		j.sm.Heard(time.Duration(at)-off, psm.ConnID(p.id))
	}
	rd := j.sm.Tick(j.now())
	j.apply(rd, timer)
	j.expired = rd.Expired
}

// idle reports a job that may go: expired, or holding nothing, and with
// no connection.
func (j *job) idle() bool {
	return len(j.peers) == 0 && (j.expired || j.sm.Empty())
}

func (j *job) handle(e event, timer *time.Timer) {
	p := e.p
	switch e.kind {
	case evConnect:
		j.peers[p.id] = p
		if p.authed {
			j.sm.Connect(psm.ConnID(p.id), p.token)
		}
	case evDisconnect:
		if _, ok := j.peers[p.id]; ok {
			delete(j.peers, p.id)
			j.dropDeferred(p)
			j.sm.Heard(time.Duration(p.heardAt())-j.start.Sub(j.s.epoch), psm.ConnID(p.id))
			j.apply(j.sm.Disconnect(j.now(), psm.ConnID(p.id)), timer)
		}
	case evMsg:
		if _, ok := j.peers[p.id]; !ok {
			p.release(len(*e.buf))
			bufpool.Put(e.buf)
			return
		}
		if p.stalled || p.qbytes.Load()+p.pend > j.s.cfg.SendBuffer {
			// Its answers are over the send buffer: its requests wait
			// (in order) until they drain. Flow control, not a
			// disconnect: only a peer that stops reading is closed (by
			// its write timeout).
			j.stall(p)
			p.deferred = append(p.deferred, e.buf)
			return
		}
		j.step(p, e.buf, timer)
	}
}

func (j *job) step(p *peer, buf *[]byte, timer *time.Timer) {
	if h := j.s.hooks; h != nil {
		var hd wire.Header
		if wire.DecodeHeader(*buf, nil, &hd) == nil {
			h.step(hd)
		}
	}
	j.apply(j.sm.Step(j.now(), psm.ConnID(p.id), *buf), timer)
	p.release(len(*buf))
	bufpool.Put(buf)
}

func (j *job) stall(p *peer) {
	if !p.stalled {
		p.stalled = true
		j.stalled[p] = true
		j.m.stalls.Add(1)
	}
	p.drainWant.Store(true)
}

// resume handles the deferred frames of stalled peers whose answers
// drained.
func (j *job) resume(timer *time.Timer) {
	for p := range j.stalled {
		for len(p.deferred) > 0 && p.qbytes.Load()+p.pend <= j.s.cfg.SendBuffer {
			b := p.deferred[0]
			p.deferred[0] = nil
			p.deferred = p.deferred[1:]
			j.step(p, b, timer)
		}
		if len(p.deferred) == 0 {
			p.deferred = nil
			p.stalled = false
			p.drainWant.Store(false)
			delete(j.stalled, p)
			continue
		}
		p.drainWant.Store(true)
		if p.qbytes.Load() <= p.drainAt && p.drainWant.CompareAndSwap(true, false) {
			j.kick() // drained meanwhile: the writer may not call again
		}
	}
}

func (j *job) dropDeferred(p *peer) {
	for _, b := range p.deferred {
		p.release(len(*b))
		bufpool.Put(b)
	}
	p.deferred = nil
	if p.stalled {
		p.stalled = false
		delete(j.stalled, p)
	}
}

// apply encodes what the state machine returned (its memory is only valid
// until the next call) and queues it; flush sends it after the checkpoint
// that Durable mode requires.
func (j *job) apply(rd psm.Ready, timer *time.Timer) {
	for i := range rd.Msgs {
		m := &rd.Msgs[i]
		p, ok := j.peers[uint64(m.To)]
		if !ok {
			continue
		}
		if pl := m.Msg.Payload; len(pl) >= shareMin && m.Ver != 0 {
			sb := j.shared[m.Msg.Key]
			if sb == nil || sb.ver != m.Ver || !sb.acquire() {
				b := bufpool.Get(len(pl))
				*b = append(*b, pl...)
				sb = &sharedBuf{b: b, ver: m.Ver}
				sb.refs.Store(1)
				j.shared[m.Msg.Key] = sb
			}
			h := m.Msg.Header
			h.PLen = uint32(len(pl))
			hb := bufpool.Get(wire.HeaderSize)
			*hb = wire.AppendHeader(*hb, &h)
			j.queue(pendingMsg{p: p, buf: hb, body: sb, size: int64(wire.HeaderSize + len(pl))})
			continue
		}
		b := bufpool.Get(wire.HeaderSize + len(m.Msg.Payload))
		*b = m.Append(*b)
		j.queue(pendingMsg{p: p, buf: b, size: int64(len(*b))})
	}
	for _, c := range rd.Close {
		if p, ok := j.peers[uint64(c)]; ok {
			// Queued after the messages, so the error that explains the
			// close goes out first.
			j.queue(pendingMsg{p: p})
		}
	}
	for _, c := range rd.Joined {
		if p, ok := j.peers[uint64(c)]; ok {
			p.markJoined()
		}
	}
	if rd.Persist {
		j.dirty = true
		j.sinceCk++
	}
	for i := range rd.Notes {
		j.logNote(&rd.Notes[i])
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
		// Every round closed counts (several keys close together): the
		// histogram's count is webkv_rounds_total.
		j.m.observeRounds(st.Rounds-j.lastRounds, d)
		j.roundStart = time.Time{}
	case st.Pushes != j.lastPushes && j.roundStart.IsZero():
		j.roundStart = time.Now()
	}
	j.lastPushes = st.Pushes
	j.lastRounds = st.Rounds
}

func (j *job) queue(pm pendingMsg) {
	pm.p.pend += pm.size
	j.pending = append(j.pending, pm)
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
	j.send()
	return true
}

// holdsAnswers reports whether answers wait for a checkpoint (Durable
// mode): they go out in flush, after it. Otherwise a checkpoint is
// periodic and answers need not wait for it.
func (j *job) holdsAnswers() bool { return j.s.cfg.Durable && j.s.db != nil }

// send hands the queued messages to their peers' writers.
func (j *job) send() {
	for i, pm := range j.pending {
		pm.p.pend -= pm.size
		switch {
		case pm.buf == nil:
			pm.p.closeAfterQueued(errors.New("closed by the parameter server"))
		case pm.body != nil:
			b, sb := pm.buf, pm.body
			pm.p.send(outMsg{b: *b, body: *sb.b, release: func() { bufpool.Put(b); sb.release() }})
		default:
			b := pm.buf
			pm.p.send(outMsg{b: *b, release: func() { bufpool.Put(b) }})
		}
		j.pending[i] = pendingMsg{}
	}
	j.pending = j.pending[:0]
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
	j.release()
	for _, p := range j.peers {
		p.close(websocket.StatusGoingAway, errors.New("relay shutting down"))
	}
}

// drop ends a job the server let go (expired, or empty): its checkpoint
// is deleted and its memory freed.
func (j *job) drop() {
	if j.expired {
		j.log.Info("job expired: no worker for the idle expiry", "expiry", j.s.cfg.JobExpiry)
	}
	if j.s.db != nil {
		if err := j.s.db.remove(j.name); err != nil {
			j.log.Error("deleting the checkpoint of a dropped job", "err", err)
		}
	}
	j.release()
	j.stop()
}

// release frees what the goroutine holds: pending answers, deferred
// frames, queued events, the state machine.
func (j *job) release() {
	for _, pm := range j.pending {
		if pm.buf != nil {
			bufpool.Put(pm.buf)
		}
		if pm.body != nil {
			pm.body.release()
		}
	}
	j.pending = nil
	for p := range j.stalled {
		j.dropDeferred(p)
	}
	for _, p := range j.peers {
		j.dropDeferred(p)
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
			j.sm.Close()
			return
		}
	}
}

// publish copies the state machine's figures where Status reads them.
func (j *job) publish() psm.Stats {
	st := j.sm.Stats()
	j.m.liveWorkers.Store(int64(st.Workers))
	j.m.budget.Store(j.sm.BudgetUsed())
	j.mu.Lock()
	j.stats = st
	j.agg = j.sm.Aggregate().String()
	j.runNo = j.sm.Run()
	j.workers = j.sm.Workers()
	if j.mode == "" && j.sm.Mode() != 0 {
		j.mode = j.sm.Mode().String()
	}
	j.mu.Unlock()
	return st
}

func (j *job) status() JobStatus {
	j.mu.Lock()
	last, mode, st, agg, run, workers := j.lastCkT, j.mode, j.stats, j.agg, j.runNo, j.workers
	j.mu.Unlock()
	return JobStatus{
		Job:         j.name,
		Mode:        mode,
		Run:         run,
		Workers:     workers,
		Keys:        st.Keys,
		Updates:     st.Updates,
		LatePushes:  st.LatePushes,
		Rescaled:    st.Rescaled,
		Duplicates:  st.Duplicates,
		Removed:     st.Removed,
		LiveWorkers: j.m.liveWorkers.Load(),
		Connections: j.m.conns.Load(),
		Rounds:      j.m.roundCount(),
		Pushes:      j.m.pushes.Load(),
		Pulls:       j.m.pulls.Load(),
		BytesIn:     j.m.bytesIn.Load(),
		BytesOut:    j.m.bytesOut.Load(),
		Checkpoints: j.m.checkpoints.Load(),
		LastCkpt:    last,
		BudgetBytes: j.m.budget.Load(),
		Stalls:      j.m.stalls.Load(),
		Aggregate:   agg,
		NonFinite:   st.NonFinite,
	}
}

// serve runs an admitted peer's reader on the caller's goroutine (the HTTP
// handler) until the connection ends: the Hello (read by the caller) goes
// to the job, the reader waits for the verdict, calls joined, then reads
// frames.
func (j *job) serve(p *peer, hello *[]byte, joined func()) {
	p.m.Store(j.m)
	p.job.Store(j)
	if !j.post(event{kind: evConnect, p: p}) {
		bufpool.Put(hello)
		p.close(websocket.StatusGoingAway, errors.New("relay shutting down"))
		return
	}
	defer j.post(event{kind: evDisconnect, p: p})
	n := len(*hello)
	if !p.acquire(n) || !j.post(event{kind: evMsg, p: p, buf: hello}) {
		p.close(websocket.StatusGoingAway, errors.New("relay shutting down"))
		return
	}
	select {
	case <-p.joined:
	case <-p.done:
		return // refused: the job sent the reason and closed
	}
	joined()
	err := j.readLoop(p)
	j.closeWith(p, err)
}

// closeWith ends p after its reader returned err: a frame that failed
// validation gets an Error naming the problem before the close.
func (j *job) closeWith(p *peer, err error) {
	var we *wire.Error
	if !errors.As(err, &we) {
		p.close(websocket.StatusNormalClosure, nil)
		return
	}
	j.m.errors.Add(1)
	j.log.Warn("bad frame; closing connection", "peer", p.id, "remote", p.remote, "err", err)
	refuse(p, we, j.s.cfg.WriteTimeout)
}

// refuse sends p an Error (seq 0) and closes it once that is written
// (bounded by timeout).
func refuse(p *peer, we *wire.Error, timeout time.Duration) {
	b := bufpool.Get(wire.HeaderSize + len(we.Msg))
	*b = wire.AppendError(*b, 0, we.Code, we.Msg)
	p.send(outMsg{b: *b, release: func() { bufpool.Put(b) }})
	p.closeAfterQueued(we)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.close(websocket.StatusPolicyViolation, we)
	}
}

// logNote logs what the state machine noted: joins, resumes, leaves and
// removals (Info, with the worker, its rank and the membership after it),
// new runs, rounds closed at their deadline without every worker (Warn).
func (j *job) logNote(n *psm.Note) {
	switch n.Kind {
	case psm.NoteJoined:
		j.log.Info("worker joined", "worker", n.Worker, "rank", n.Rank, "workers", n.Workers)
	case psm.NoteResumed:
		j.log.Info("worker resumed", "worker", n.Worker, "rank", n.Rank, "workers", n.Workers)
	case psm.NoteLeft:
		j.log.Info("worker left", "worker", n.Worker, "rank", n.Rank, "workers", n.Workers)
	case psm.NoteRemoved:
		j.log.Warn("worker removed", "worker", n.Worker, "rank", n.Rank, "why", n.Why, "workers", n.Workers)
	case psm.NoteRun:
		j.log.Info("job run started", "run", n.Run)
	case psm.NoteDeadline:
		j.log.Warn("round closed at its deadline without every worker", "key", n.Key, "round", n.Round, "pushed", n.Pushed, "missing_ranks", n.Missing)
	}
}
