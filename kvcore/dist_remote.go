package kvcore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/bufpool"
	"github.com/webkv/webkv/kvcore/wire"
)

// The remote: one link per shard. Each link has a sender goroutine that
// writes queued requests in order (so engine workers never block on the
// network) and a receiver goroutine that matches answers to requests by seq
// and runs the operations' callbacks. Requests stay in the link's pending
// table until answered; after a reconnect they are all sent again with the
// same seq (the server answers retries from its cache).

const (
	linkJoining = iota // Hello sent, waiting for Welcome
	linkReady
	linkDead
)

// rkey is what the remote knows of one key.
type rkey struct {
	key   Key // as the store knows it (for events)
	id    uint64
	str   bool
	name  string
	shape []int64
	n     int
	parts []wire.Part
	next  []uint64 // next dist_sync round, per part
	mu    sync.Mutex
}

type distRemote struct {
	mode  wire.Mode
	info  JoinInfo
	bound int
	links []*link

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	keys   map[Key]*rkey
	closed bool
	bar    *barrierWait // the barrier entered last, until a call saw it end

	reqPool  sync.Pool
	callPool sync.Pool

	ev      *eventQueue // Options.Events; nil: no events
	members []int       // shard 0's last membership notice (under mu)
}

// call is one store operation; it may span several shards (one req each).
type call struct {
	mu     sync.Mutex
	left   int
	err    error
	done   func(error)    // async operations
	ch     chan error     // sync operations (buffered 1)
	states []*wire.States // saveStates answers, by shard
	nw     int            // barrier answer: live workers
}

// req is one request on one link.
type req struct {
	h    wire.Header
	meta []byte
	data []byte    // data bytes (a view of the caller's values)
	out  []float32 // where a value answer goes
	k    *rkey
	part int
	c    *call
	l    *link
	// pooled reqs (of asynchronous operations) go back to the pool when
	// finished; those of synchronous calls are not reused, because their
	// caller may still look at them to abandon them when its context ends.
	pooled bool
}

// qent is a queued request; seq tells a stale entry (its req was answered
// and reused) from a live one.
type qent struct {
	q   *req
	seq uint64
}

type link struct {
	r   *distRemote
	idx int
	t   Transport
	ps  PartSender

	mu       sync.Mutex
	cond     sync.Cond // signals queue changes to the sender
	queue    []qent    // to send: queue[qhead:]
	qhead    int
	sending  *req      // the request the sender is writing
	sent     sync.Cond // signals sending == nil
	pending  map[uint64]*req
	seq      uint64
	state    int
	dead     error
	workerID string
	rank     int
	nw       int
	hb       time.Duration
	welcome  chan struct{} // closed at the first Welcome or death
	welcomed bool
	hello    bool // a Hello is to be sent first
	pings    int  // pings to send
	rankHint uint32
	attempt  uint32 // Hellos sent
	rejoin   bool   // the transport reconnected: the next Welcome is a rejoin
	resume   string // the resume key of workerID (from its Welcome), sent in every resuming Hello

	hdr []byte // sender's scratch
}

func dialRemote(ctx context.Context, ts []Transport, mode wire.Mode, info JoinInfo, events func(Event)) (*distRemote, error) {
	r := &distRemote{mode: mode, info: info, bound: info.BigArrayBound, keys: map[Key]*rkey{}, ev: newEventQueue(events)}
	if r.bound <= 0 {
		r.bound = wire.DefaultBigArrayBound
	}
	r.reqPool.New = func() any { return new(req) }
	r.callPool.New = func() any { return &call{ch: make(chan error, 1)} }
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for i, t := range ts {
		l := &link{r: r, idx: i, t: t, pending: map[uint64]*req{}, welcome: make(chan struct{}), hello: true}
		l.ps, _ = t.(PartSender)
		if cw, ok := t.(ConnWatcher); ok && r.ev != nil {
			shard := i
			cw.WatchConn(func(st ConnState, attempt int, err error) {
				if st == ConnReconnecting {
					r.ev.emit(Event{Kind: EventConnection, Conn: st, Shard: shard, Attempt: attempt, Err: err})
				}
			})
		}
		l.cond.L = &l.mu
		l.sent.L = &l.mu
		r.links = append(r.links, l)
	}
	r.wg.Add(1)
	go r.heartbeat()
	start := func(l *link) {
		r.wg.Add(2)
		go l.sender()
		go l.receiver()
	}
	joined := func(l *link) error {
		select {
		case <-l.welcome:
		case <-ctx.Done():
			return fmt.Errorf("dist: joining shard %d: %w", l.idx, ctx.Err())
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.dead != nil {
			return fmt.Errorf("dist: joining shard %d: %w", l.idx, l.dead)
		}
		return nil
	}
	// Shard 0 first: the other shards are asked for the rank it gave, so
	// that ranks agree everywhere.
	l0 := r.links[0]
	start(l0)
	if err := joined(l0); err != nil {
		r.shutdown(err)
		return nil, err
	}
	l0.mu.Lock()
	hint := uint32(l0.rank + 1)
	l0.mu.Unlock()
	for _, l := range r.links[1:] {
		l.rankHint = hint
		start(l)
	}
	for _, l := range r.links[1:] {
		if err := joined(l); err != nil {
			r.shutdown(err)
			return nil, err
		}
	}
	return r, nil
}

func (r *distRemote) rank() int {
	l := r.links[0]
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rank
}

func (r *distRemote) numWorkers() int {
	l := r.links[0]
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nw
}

// ---- sending ----

func (l *link) sender() {
	defer l.r.wg.Done()
	l.mu.Lock()
	for {
		for !l.hello && l.pings == 0 && l.qhead == len(l.queue) && l.state != linkDead && l.r.ctx.Err() == nil {
			l.cond.Wait()
		}
		if l.state == linkDead || l.r.ctx.Err() != nil {
			l.mu.Unlock()
			return
		}
		var msg []byte
		var q *req
		switch {
		case l.hello:
			l.hello = false
			l.attempt++
			l.hdr = wire.AppendHello(l.hdr[:0], &wire.Hello{Job: l.r.info.Job, Role: "worker", Token: l.r.info.Token,
				WorkerID: l.workerID, Mode: l.r.mode, Want: uint32(max(0, l.r.info.Workers)), RankHint: l.rankHint, Attempt: l.attempt,
				ResumeKey: l.resume})
			msg = l.hdr
		case l.state != linkReady:
			// Not joined yet: requests wait in pending and are resent at
			// the Welcome.
			clear(l.queue)
			l.queue, l.qhead = l.queue[:0], 0
			l.pings = 0
			continue
		case l.pings > 0:
			l.pings = 0
			l.hdr = wire.AppendHeader(l.hdr[:0], &wire.Header{Type: wire.TypePing})
			msg = l.hdr
		default:
			e := l.queue[l.qhead]
			l.queue[l.qhead] = qent{}
			l.qhead++
			if l.qhead == len(l.queue) {
				l.queue, l.qhead = l.queue[:0], 0
			}
			if l.pending[e.seq] != e.q {
				continue // answered or abandoned meanwhile
			}
			q = e.q
			q.h.Ack = l.lowestPending()
			q.h.PLen = uint32(len(q.meta) + len(q.data))
			l.hdr = wire.AppendHeader(l.hdr[:0], &q.h)
			l.hdr = append(l.hdr, q.meta...)
			l.sending = q
			msg = l.hdr
		}
		body := []byte(nil)
		if q != nil {
			body = q.data
		}
		l.mu.Unlock()
		var err error
		switch {
		case len(body) == 0:
			err = l.t.Send(l.r.ctx, msg)
		case l.ps != nil:
			err = l.ps.SendParts(l.r.ctx, msg, body)
		default:
			b := bufpool.Get(len(msg) + len(body))
			*b = append(append(*b, msg...), body...)
			err = l.t.Send(l.r.ctx, *b)
			bufpool.Put(b)
		}
		// A failed send is resent after the transport reports the
		// reconnect, or failed when the transport reports its death.
		_ = err
		l.mu.Lock()
		if q != nil {
			l.sending = nil
			l.sent.Broadcast()
		}
	}
}

// lowestPending is the lowest seq without an answer (the header's ack).
func (l *link) lowestPending() uint64 {
	low := l.seq + 1
	for s := range l.pending {
		if s < low {
			low = s
		}
	}
	return low
}

// start registers q on l and queues it for sending.
func (l *link) start(q *req) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == linkDead {
		return l.dead
	}
	l.seq++
	q.h.Seq = l.seq
	q.l = l
	l.pending[q.h.Seq] = q
	if l.state == linkReady {
		l.queue = append(l.queue, qent{q, q.h.Seq})
		l.cond.Signal()
	}
	return nil
}

// abandon drops q (its caller stopped waiting).
func (l *link) abandon(q *req) {
	l.mu.Lock()
	if l.pending[q.h.Seq] == q {
		delete(l.pending, q.h.Seq)
	}
	l.mu.Unlock()
}

// ---- receiving ----

func (l *link) receiver() {
	defer l.r.wg.Done()
	var m wire.Msg
	for {
		frame, err := l.t.Recv(l.r.ctx)
		if err != nil {
			if errors.Is(err, ErrReconnected) && l.r.ctx.Err() == nil {
				l.mu.Lock()
				if l.state != linkDead {
					l.state, l.hello, l.rejoin = linkJoining, true, true
					l.cond.Signal()
				}
				l.mu.Unlock()
				continue
			}
			if l.r.ctx.Err() != nil {
				err = ErrClosed
			}
			l.die(fmt.Errorf("dist: shard %d: %w: %w", l.idx, ErrConnLost, err))
			return
		}
		if err := wire.Decode(frame, nil, &m); err != nil {
			l.die(fmt.Errorf("dist: shard %d sent a bad message: %w: %w", l.idx, ErrConnLost, err))
			return
		}
		if !l.handle(&m) {
			return
		}
	}
}

// die fails every pending request with err; later requests fail at once.
func (l *link) die(err error) {
	l.mu.Lock()
	if l.state == linkDead {
		l.mu.Unlock()
		return
	}
	l.state, l.dead = linkDead, err
	if l.r.ctx.Err() == nil {
		// Not Store.Close (shutdown cancels ctx first).
		l.r.ev.emit(Event{Kind: EventConnection, Conn: ConnLost, Shard: l.idx, Err: err})
	}
	ps := make([]*req, 0, len(l.pending))
	for _, q := range l.pending {
		ps = append(ps, q)
	}
	clear(l.pending)
	clear(l.queue)
	l.queue, l.qhead = l.queue[:0], 0
	if !l.welcomed {
		l.welcomed = true
		close(l.welcome)
	}
	l.cond.Broadcast()
	l.mu.Unlock()
	// Close the dead transport (it unblocks a Send in progress), and wait
	// until the sender no longer reads a request's data before its caller
	// gets it back.
	l.t.Close()
	l.mu.Lock()
	for l.sending != nil {
		l.sent.Wait()
	}
	l.mu.Unlock()
	sort.Slice(ps, func(a, b int) bool { return ps[a].h.Seq < ps[b].h.Seq })
	for _, q := range ps {
		l.r.finish(q, err)
	}
}

// handle processes one message; false stops the receiver.
func (l *link) handle(m *wire.Msg) bool {
	switch m.Type {
	case wire.TypeWelcome:
		w, err := wire.DecodeWelcome(m.Payload, nil)
		if err != nil {
			l.die(fmt.Errorf("dist: shard %d: %w: %w", l.idx, ErrConnLost, err))
			return false
		}
		l.mu.Lock()
		l.workerID, l.rank, l.nw, l.resume = w.WorkerID, int(w.Rank), int(w.NumWorkers), w.ResumeKey
		l.hb = time.Duration(w.Heartbeat) * time.Millisecond
		l.state = linkReady
		// Resend every unanswered request, oldest first.
		clear(l.queue)
		l.queue, l.qhead = l.queue[:0], 0
		seqs := make([]uint64, 0, len(l.pending))
		for s := range l.pending {
			seqs = append(seqs, s)
		}
		sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
		for _, s := range seqs {
			l.queue = append(l.queue, qent{l.pending[s], s})
		}
		ev := Event{Kind: EventConnection, Conn: ConnConnected, Shard: l.idx}
		if l.rejoin {
			ev.Conn = ConnReconnected
		} else if l.welcomed {
			ev.Conn = 0 // a repeated Welcome on the same connection
		}
		l.rejoin = false
		if !l.welcomed {
			l.welcomed = true
			close(l.welcome)
		}
		l.cond.Signal()
		l.mu.Unlock()
		if ev.Conn != 0 {
			l.r.ev.emit(ev)
		}
	case wire.TypePong:
	case wire.TypeAck, wire.TypeError:
		if wire.IsMembers(m) {
			if l.idx == 0 { // one shard's membership is the job's
				l.members(m)
			}
			return true
		}
		if m.Seq == 0 {
			if m.Type == wire.TypeError && m.Code != wire.CodeClosed {
				// CodeClosed: the server hangs up this connection (it shuts
				// down, or the worker resumed elsewhere); a reconnecting
				// transport carries on, another one reports its end.
				l.die(fmt.Errorf("dist: shard %d closed the connection: %w", l.idx, serverErr(wire.ErrorOf(m))))
				return false
			}
			return true
		}
		l.mu.Lock()
		q := l.pending[m.Seq]
		if q == nil {
			l.mu.Unlock()
			return true // a duplicate answer, or one nobody waits for
		}
		if m.Type == wire.TypeError && m.Code == wire.CodeNotJoined {
			// Sent on a new connection before the Hello: it is resent at
			// the Welcome (or now, if that came already).
			if l.state == linkReady {
				l.queue = append(l.queue, qent{q, q.h.Seq})
				l.cond.Signal()
			}
			l.mu.Unlock()
			return true
		}
		delete(l.pending, m.Seq)
		// An answer can arrive while a resend of the request is still
		// being written (after a reconnect); the caller's data must stay
		// untouched until that write is over.
		for l.sending == q {
			l.sent.Wait()
		}
		l.mu.Unlock()
		l.r.finish(q, l.answer(q, m))
	default:
		l.die(fmt.Errorf("dist: shard %d sent an unexpected %v: %w", l.idx, m.Type, ErrConnLost))
		return false
	}
	return true
}

// answer applies an Ack to q (rounds, values, states) or returns the error
// an Error carries.
func (l *link) answer(q *req, m *wire.Msg) error {
	if m.Type == wire.TypeError {
		return serverErr(wire.ErrorOf(m))
	}
	switch q.h.Type {
	case wire.TypeInit:
		q.k.mu.Lock()
		q.k.next[q.part] = m.Round
		q.k.mu.Unlock()
	case wire.TypePush, wire.TypePushPull:
		q.k.mu.Lock()
		q.k.next[q.part] = m.Round + 1
		q.k.mu.Unlock()
		if q.part == 0 && l.r.mode == wire.ModeSync && l.r.ev != nil {
			l.r.ev.emit(Event{Kind: EventRound, Key: q.k.key, Round: m.Round,
				Late: m.Flags&wire.FlagLate != 0, Rescaled: m.Flags&wire.FlagRescaled != 0})
		}
	case wire.TypeBarrier:
		q.c.mu.Lock()
		q.c.nw = int(m.Count)
		q.c.mu.Unlock()
		l.mu.Lock()
		l.nw = int(m.Count)
		l.mu.Unlock()
	case wire.TypeSaveStates:
		st, err := wire.DecodeStates(m.Payload, nil)
		if err != nil {
			return fmt.Errorf("dist: shard %d: bad states answer: %w", l.idx, err)
		}
		q.c.mu.Lock()
		q.c.states[l.idx] = st
		q.c.mu.Unlock()
	}
	if q.out != nil {
		if m.DType != wire.DTypeF32 || int(m.Count) != len(q.out) {
			return fmt.Errorf("dist: shard %d answered key %d with %d %v values, want %d float32: %w",
				l.idx, q.h.Key, m.Count, m.DType, len(q.out), ErrServer)
		}
		wire.DecodeFloat32s(m.Data(), q.out)
	}
	return nil
}

// finish completes q with err and, when it was the call's last part, the
// call.
func (r *distRemote) finish(q *req, err error) {
	c := q.c
	if q.pooled {
		*q = req{}
		r.reqPool.Put(q)
	}
	c.mu.Lock()
	if err != nil && c.err == nil {
		c.err = err
	}
	c.left--
	last := c.left == 0
	c.mu.Unlock()
	if !last {
		return
	}
	if c.done != nil {
		done, err := c.done, c.err
		r.putCall(c)
		done(err)
		return
	}
	c.ch <- c.err
}

func (r *distRemote) newCall(parts int, done func(error)) *call {
	c := r.callPool.Get().(*call)
	c.left, c.err, c.done = parts, nil, done
	return c
}

func (r *distRemote) putCall(c *call) {
	c.done, c.err, c.states = nil, nil, nil
	select {
	case <-c.ch:
	default:
	}
	r.callPool.Put(c)
}

// newReq returns a request of an asynchronous operation (pooled).
func (r *distRemote) newReq(c *call, typ wire.Type) *req {
	q := r.reqPool.Get().(*req)
	q.c, q.h.Type, q.pooled = c, typ, true
	return q
}

// syncReq returns a request of a synchronous call (see req.pooled).
func (r *distRemote) syncReq(c *call, typ wire.Type) *req {
	return &req{c: c, h: wire.Header{Type: typ}}
}

// wait waits for a synchronous call; on ctx's end it abandons its requests.
func (r *distRemote) wait(ctx context.Context, c *call, qs []*req) error {
	select {
	case err := <-c.ch:
		r.putCall(c)
		return err
	case <-ctx.Done():
		for _, q := range qs {
			if q.l != nil {
				q.l.abandon(q)
			}
		}
		// The call is not reused: an answer may still arrive for a part.
		return ctx.Err()
	}
}

func (r *distRemote) heartbeat() {
	defer r.wg.Done()
	// Until a Welcome gives the server's heartbeat interval, look often:
	// a first ping a whole second after joining would be late for a
	// server whose silence timeout is that short.
	const unknown = 20 * time.Millisecond
	period := unknown
	t := time.NewTimer(period)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		period = time.Second
		known := false
		for _, l := range r.links {
			l.mu.Lock()
			if l.hb > 0 {
				known = true
				period = min(period, l.hb)
			}
			if l.state == linkReady {
				l.pings++
				l.cond.Signal()
			}
			l.mu.Unlock()
		}
		if !known {
			period = unknown
		}
		t.Reset(period)
	}
}

// ---- keys ----

func keyID(k Key) (uint64, uint16) {
	if k.isStr {
		return wire.StrKeyID(k.s), wire.FlagStrKey
	}
	return wire.IntKeyID(k.i), 0
}

func (r *distRemote) key(k Key) (*rkey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	rk := r.keys[k]
	if rk == nil {
		return nil, ErrUnknownKey
	}
	return rk, nil
}

func (r *distRemote) init(ctx context.Context, k Key, shape []int, data []float32) error {
	id, flags := keyID(k)
	rk := &rkey{key: k, id: id, str: k.isStr, name: k.s, n: len(data)}
	for _, d := range shape {
		rk.shape = append(rk.shape, int64(d))
	}
	if uint64(len(data)) > math.MaxUint32 {
		return fmt.Errorf("dist: key %v: %d values exceed the wire's 2^32-1: %w", k, len(data), ErrShapeMismatch)
	}
	parts, err := wire.Place(nil, id, len(data), len(r.links), r.bound)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if 4*uint64(p.Len)+1<<16 > math.MaxUint32 {
			return fmt.Errorf("dist: key %v: a part of %d values does not fit one wire message (4 GiB): use more shards: %w", k, p.Len, ErrShapeMismatch)
		}
	}
	rk.parts, rk.next = parts, make([]uint64, len(parts))
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if old := r.keys[k]; old != nil {
		r.mu.Unlock()
		return ErrDuplicateInit
	}
	r.keys[k] = rk
	r.mu.Unlock()
	meta := wire.AppendInitMeta(nil, &wire.InitMeta{Name: rk.name, Shape: rk.shape})
	c := r.newCall(len(parts), nil)
	qs := make([]*req, 0, len(parts))
	for i, p := range parts {
		q := r.syncReq(c, wire.TypeInit)
		q.h.Flags, q.h.Key, q.h.DType = flags, id, wire.DTypeF32
		q.h.Count, q.h.Offset, q.h.Total = uint32(p.Len), uint32(p.Offset), uint32(len(data))
		q.meta, q.k, q.part = meta, rk, i
		q.data = r.dataBytes(data[p.Offset : p.Offset+p.Len])
		qs = append(qs, q)
		if err := r.links[p.Shard].start(q); err != nil {
			r.finish(q, err)
		}
	}
	err = r.wait(ctx, c, qs)
	if err != nil {
		r.mu.Lock()
		if r.keys[k] == rk && !errors.Is(err, ErrDuplicateInit) {
			delete(r.keys, k)
		}
		r.mu.Unlock()
	}
	return err
}

// dataBytes returns the wire bytes of f: a view where the machine's byte
// order allows, a copy otherwise.
func (r *distRemote) dataBytes(f []float32) []byte {
	if b, ok := wire.Float32Bytes(f); ok {
		return b
	}
	return wire.AppendFloat32s(nil, f)
}

func (r *distRemote) push(k Key, data []float32, n int, c compute.Compression, done func(error)) {
	r.pushPull(k, data, n, c, nil, done)
}

func (r *distRemote) pull(k Key, out []float32, done func(error)) {
	rk, err := r.key(k)
	if err != nil {
		done(err)
		return
	}
	cl := r.newCall(len(rk.parts), done)
	for i, p := range rk.parts {
		q := r.newReq(cl, wire.TypePull)
		q.h.Key, q.k, q.part = rk.id, rk, i
		if rk.str {
			q.h.Flags = wire.FlagStrKey
		}
		q.h.Offset, q.h.Total = uint32(p.Offset), uint32(rk.n)
		q.out = out[p.Offset : p.Offset+p.Len]
		if err := r.links[p.Shard].start(q); err != nil {
			r.finish(q, err)
		}
	}
}

func (r *distRemote) pushPull(k Key, data []float32, n int, c compute.Compression, out []float32, done func(error)) {
	rk, err := r.key(k)
	if err != nil {
		done(err)
		return
	}
	if n != rk.n {
		done(fmt.Errorf("dist: push of %d values to key %v of %d: %w", n, k, rk.n, ErrShapeMismatch))
		return
	}
	dt := wire.DTypeF32
	switch c.Kind {
	case compute.Compress2Bit:
		dt = wire.DType2Bit
	case compute.Compress1Bit:
		dt = wire.DType1Bit
	}
	typ := wire.TypePush
	if out != nil {
		typ = wire.TypePushPull
	}
	cl := r.newCall(len(rk.parts), done)
	for i, p := range rk.parts {
		q := r.newReq(cl, typ)
		q.h.Key, q.h.DType, q.k, q.part = rk.id, dt, rk, i
		if rk.str {
			q.h.Flags = wire.FlagStrKey
		}
		q.h.Count, q.h.Offset, q.h.Total = uint32(p.Len), uint32(p.Offset), uint32(rk.n)
		rk.mu.Lock()
		q.h.Round = rk.next[i]
		rk.mu.Unlock()
		if dt == wire.DTypeF32 {
			q.data = r.dataBytes(data[p.Offset : p.Offset+p.Len])
		} else {
			// The words that hold the part's values (see wire.PackedSpan).
			w0, nw := wire.PackedSpan(dt, p.Offset, p.Len)
			q.data = r.dataBytes(data[w0 : w0+nw])
		}
		if out != nil {
			q.out = out[p.Offset : p.Offset+p.Len]
		}
		if err := r.links[p.Shard].start(q); err != nil {
			r.finish(q, err)
		}
	}
}

// all sends one request built by mk to every shard and waits for all.
func (r *distRemote) all(ctx context.Context, c *call, mk func(q *req, shard int)) error {
	qs := make([]*req, 0, len(r.links))
	for i, l := range r.links {
		q := r.syncReq(c, 0)
		mk(q, i)
		qs = append(qs, q)
		if err := l.start(q); err != nil {
			r.finish(q, err)
		}
	}
	return r.wait(ctx, c, qs)
}

func (r *distRemote) checkOpen() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	return nil
}

// barrierWait is the barrier this worker entered last; it outlives a
// Barrier call whose context ended, because the server counts the arrival
// anyway: the next Barrier call waits for that same barrier instead of
// entering a new one, so the workers' barriers stay aligned.
type barrierWait struct {
	done chan struct{}
	err  error
}

func (r *distRemote) barrier(ctx context.Context) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	r.mu.Lock()
	b := r.bar
	if b == nil {
		b = &barrierWait{done: make(chan struct{})}
		r.bar = b
		// One barrier, on shard 0: every worker talks to every shard, so
		// one shard's membership is the job's.
		c := r.newCall(1, func(err error) {
			b.err = err
			close(b.done)
		})
		q := r.syncReq(c, wire.TypeBarrier)
		r.mu.Unlock()
		if err := r.links[0].start(q); err != nil {
			r.finish(q, err)
		}
	} else {
		r.mu.Unlock()
	}
	select {
	case <-b.done:
		r.mu.Lock()
		if r.bar == b {
			r.bar = nil
		}
		r.mu.Unlock()
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *distRemote) command(ctx context.Context, head int, body []byte) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	c := r.newCall(len(r.links), nil)
	return r.all(ctx, c, func(q *req, _ int) {
		q.h.Type, q.h.Key, q.meta = wire.TypeCommand, wire.IntKeyID(head), body
	})
}

// Command heads the servers understand (MXNet's CommandType).
const (
	cmdController  = 0
	cmdCompression = 4
)

func (r *distRemote) setOptimizer(ctx context.Context, spec []byte) error {
	return r.command(ctx, cmdController, spec)
}

func (r *distRemote) setCompression(ctx context.Context, c compute.Compression) error {
	body := fmt.Appendf(nil, "%v,%s", c.Kind, formatFloat32(c.Threshold))
	return r.command(ctx, cmdCompression, body)
}

func (r *distRemote) saveStates(ctx context.Context) (*stateSnapshot, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	c := r.newCall(len(r.links), nil)
	states := make([]*wire.States, len(r.links))
	c.states = states
	if err := r.all(ctx, c, func(q *req, _ int) { q.h.Type = wire.TypeSaveStates }); err != nil {
		return nil, err
	}
	return r.mergeStates(states)
}

// mergeStates assembles the shards' tables into one snapshot: parts of a
// split key are put together by offset.
func (r *distRemote) mergeStates(states []*wire.States) (*stateSnapshot, error) {
	snap := &stateSnapshot{}
	type acc struct {
		ks  keyStates
		got int
	}
	byKey := map[Key]*acc{}
	var order []Key
	for si, st := range states {
		if st == nil {
			return nil, fmt.Errorf("dist: shard %d sent no states: %w", si, ErrServer)
		}
		if si == 0 {
			snap.Optimizer = st.Optimizer
		}
		snap.NumUpdate = max(snap.NumUpdate, st.NumUpdate)
		for _, ks := range st.Keys {
			var k Key
			if ks.Str {
				k = StrKey(ks.Name)
			} else {
				k = IntKey(int(int64(ks.Key)))
			}
			a := byKey[k]
			if a == nil {
				a = &acc{ks: keyStates{Key: k, T: ks.T, N: int(ks.Total)}}
				for range ks.States {
					a.ks.States = append(a.ks.States, make([]float32, ks.Total))
				}
				byKey[k] = a
				order = append(order, k)
			}
			if len(ks.States) != len(a.ks.States) || int(ks.Total) != a.ks.N {
				return nil, fmt.Errorf("dist: key %v: shards disagree on its states: %w", k, ErrBadStates)
			}
			a.ks.T = max(a.ks.T, ks.T)
			for i, s := range ks.States {
				copy(a.ks.States[i][ks.Offset:], s)
			}
			a.got += int(ks.N)
		}
	}
	r.mu.Lock()
	sort.Slice(order, func(a, b int) bool { return r.keyLess(order[a], order[b]) })
	r.mu.Unlock()
	for _, k := range order {
		a := byKey[k]
		if a.got != a.ks.N {
			return nil, fmt.Errorf("dist: key %v: shards sent %d of its %d state values: %w", k, a.got, a.ks.N, ErrBadStates)
		}
		snap.Keys = append(snap.Keys, a.ks)
	}
	return snap, nil
}

// keyLess orders int keys numerically and string keys by name.
func (r *distRemote) keyLess(a, b Key) bool {
	if a.isStr != b.isStr {
		return !a.isStr
	}
	if a.isStr {
		return a.s < b.s
	}
	return a.i < b.i
}

func (r *distRemote) loadStates(ctx context.Context, s *stateSnapshot) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	per := make([]wire.States, len(r.links))
	for i := range per {
		per[i] = wire.States{Optimizer: s.Optimizer, NumUpdate: s.NumUpdate}
	}
	for _, ks := range s.Keys {
		rk, err := r.key(ks.Key)
		if err != nil {
			return fmt.Errorf("key %v: %w", ks.Key, err)
		}
		if ks.N != rk.n {
			return fmt.Errorf("key %v has %d values in the file, %d stored: %w", ks.Key, ks.N, rk.n, ErrBadStates)
		}
		for _, p := range rk.parts {
			e := wire.KeyStates{Key: rk.id, Str: rk.str, Name: rk.name, T: ks.T,
				Offset: uint32(p.Offset), Total: uint32(rk.n), N: uint32(p.Len)}
			for _, st := range ks.States {
				e.States = append(e.States, st[p.Offset:p.Offset+p.Len])
			}
			per[p.Shard].Keys = append(per[p.Shard].Keys, e)
		}
	}
	c := r.newCall(len(r.links), nil)
	return r.all(ctx, c, func(q *req, shard int) {
		q.h.Type = wire.TypeLoadStates
		q.meta = wire.AppendStates(nil, &per[shard])
	})
}

func (r *distRemote) close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	// Leave cleanly, so the servers drop this worker from rounds and
	// barriers now instead of after the silence timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	c := r.newCall(len(r.links), nil)
	lerr := r.all(ctx, c, func(q *req, _ int) { q.h.Type = wire.TypeLeave })
	cancel()
	r.shutdown(ErrClosed)
	if lerr != nil && !errors.Is(lerr, ErrConnLost) && !errors.Is(lerr, ErrClosed) && !errors.Is(lerr, context.DeadlineExceeded) {
		return fmt.Errorf("dist: leave: %w", lerr)
	}
	return nil
}

// shutdown stops the goroutines, closes the transports and fails whatever
// is still pending with err.
func (r *distRemote) shutdown(err error) {
	r.cancel()
	for _, l := range r.links {
		l.mu.Lock()
		l.cond.Broadcast()
		l.mu.Unlock()
		l.t.Close()
	}
	r.wg.Wait()
	for _, l := range r.links {
		l.die(fmt.Errorf("dist: shard %d: %w", l.idx, err))
	}
	r.ev.close()
}

func formatFloat32(f float32) string {
	return strconv.FormatFloat(float64(f), 'g', -1, 32)
}
