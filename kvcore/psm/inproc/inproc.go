// Package inproc runs psm parameter-server jobs in the same process, over
// kvcore.Pipe transports: a relay without sockets, for tests and
// single-process demos.
//
//	srv := inproc.New(psm.Config{Heartbeat: 50 * time.Millisecond})
//	defer srv.Close()
//	st, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("job", 4)})
//
// Each connection has a goroutine that feeds its messages to the job; one
// more goroutine drives the jobs' timers. All calls into the jobs are
// serialized by one mutex, as psm requires. Conn.Break simulates a lost
// connection followed by a reconnect, for exactly-once tests.
package inproc

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/wire"
)

// Server serves psm jobs (one per job id) over pipes.
type Server struct {
	cfg   psm.Config
	start time.Time

	mu     sync.Mutex
	jobs   map[string]*psm.Job
	conns  map[psm.ConnID]*serverConn
	nextID psm.ConnID
	closed bool
	buf    []byte

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type serverConn struct {
	id  psm.ConnID
	t   kvcore.Transport
	job *psm.Job
}

// New starts a server; cfg is the template of every job's configuration
// (its Job field is set to the job id).
func New(cfg psm.Config) *Server {
	s := &Server{cfg: cfg, start: time.Now(), jobs: map[string]*psm.Job{}, conns: map[psm.ConnID]*serverConn{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.ticker()
	return s
}

func (s *Server) now() time.Duration { return time.Since(s.start) }

func (s *Server) ticker() {
	defer s.wg.Done()
	period := s.cfg.Heartbeat / 4
	if period <= 0 {
		period = 250 * time.Millisecond
	}
	period = max(period, 2*time.Millisecond)
	if d := s.cfg.RoundDeadline / 4; d > 0 && d < period {
		period = max(d, time.Millisecond)
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		for _, j := range s.jobs {
			rd := j.Tick(s.now())
			s.carryOut(rd)
		}
		s.mu.Unlock()
	}
}

// serve feeds one connection's messages to its job.
func (s *Server) serve(c *serverConn) {
	defer s.wg.Done()
	for {
		frame, err := c.t.Recv(s.ctx)
		s.mu.Lock()
		if err != nil {
			if c.job != nil && !s.closed {
				s.carryOut(c.job.Disconnect(s.now(), c.id))
			}
			delete(s.conns, c.id)
			s.mu.Unlock()
			c.t.Close()
			return
		}
		if c.job == nil {
			if !s.route(c, frame) {
				s.mu.Unlock()
				continue
			}
		}
		s.carryOut(c.job.Step(s.now(), c.id, frame))
		s.mu.Unlock()
	}
}

// route binds a new connection to the job its Hello names.
func (s *Server) route(c *serverConn, frame []byte) bool {
	var m wire.Msg
	err := wire.Decode(frame, s.cfg.Limits, &m)
	if err == nil && m.Type != wire.TypeHello {
		err = wire.Errorf(wire.CodeNotJoined, "%v before the handshake: send Hello first", m.Type)
	}
	var h *wire.Hello
	if err == nil {
		h, err = wire.DecodeHello(m.Payload, s.cfg.Limits)
	}
	if err != nil {
		var we *wire.Error
		if !errors.As(err, &we) {
			we = wire.Errorf(wire.CodeBadFrame, "%v", err)
		}
		s.buf = wire.AppendError(s.buf[:0], m.Seq, we.Code, we.Msg)
		c.t.Send(context.Background(), s.buf)
		if we.Code != wire.CodeNotJoined {
			c.t.Close()
		}
		return false
	}
	j := s.jobs[h.Job]
	if j == nil {
		cfg := s.cfg
		cfg.Job = h.Job
		if j, err = psm.New(cfg); err != nil {
			s.buf = wire.AppendError(s.buf[:0], 0, wire.CodeInternal, err.Error())
			c.t.Send(context.Background(), s.buf)
			c.t.Close()
			return false
		}
		s.jobs[h.Job] = j
	}
	c.job = j
	return true
}

// carryOut sends and closes what a job asked for (under s.mu).
func (s *Server) carryOut(rd psm.Ready) {
	for i := range rd.Msgs {
		e := &rd.Msgs[i]
		c := s.conns[e.To]
		if c == nil {
			continue
		}
		// Header and payload go out as one message without being copied
		// together first; a closed pipe drops it, like a lost connection.
		s.buf = wire.AppendHeader(s.buf[:0], &e.Msg.Header)
		c.t.(kvcore.PartSender).SendParts(context.Background(), s.buf, e.Msg.Payload)
	}
	for _, id := range rd.Close {
		if c := s.conns[id]; c != nil {
			c.t.Close()
		}
	}
}

// Do runs fn with the job named id (nil if it does not exist) while no
// message is being handled: for tests that inspect Stats or snapshots.
func (s *Server) Do(id string, fn func(j *psm.Job)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.jobs[id])
}

// Restore replaces job id with one restored from snap (as a restarted
// relay would): every connection of the old job is dropped, so its workers
// reconnect (Conn does that by itself) and resume.
func (s *Server) Restore(id string, snap []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.cfg
	cfg.Job = id
	j, err := psm.Restore(cfg, snap, s.now())
	if err != nil {
		return err
	}
	old := s.jobs[id]
	s.jobs[id] = j
	for _, c := range s.conns {
		if c.job == old && old != nil {
			c.job = nil
			c.t.Close()
		}
	}
	if old != nil {
		old.Close()
	}
	return nil
}

// accept starts serving the server end of a new pipe.
func (s *Server) accept(t kvcore.Transport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		t.Close()
		return
	}
	s.nextID++
	c := &serverConn{id: s.nextID, t: t}
	s.conns[c.id] = c
	s.wg.Add(1)
	go s.serve(c)
}

// Connect returns a client transport to job id; workers > 0 makes the first
// joins wait until that many workers joined (JoinInfo.Workers).
func (s *Server) Connect(id string, workers int) *Conn {
	return s.ConnectInfo(kvcore.JoinInfo{Job: id, Workers: workers})
}

// ConnectInfo is Connect with a full JoinInfo.
func (s *Server) ConnectInfo(info kvcore.JoinInfo) *Conn {
	c := &Conn{srv: s, info: info}
	c.dial()
	c.recvGen = c.gen
	return c
}

// Close stops the server: every connection closes, the jobs are freed.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, c := range s.conns {
		c.t.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	for _, j := range s.jobs {
		j.Close()
	}
	s.jobs = map[string]*psm.Job{}
	s.mu.Unlock()
}

// Conn is a client transport to a Server. It implements kvcore.Transport,
// kvcore.PartSender and kvcore.Joiner. Break drops the connection and
// reconnects, as a reconnecting websocket client does: Recv then returns
// kvcore.ErrReconnected once.
type Conn struct {
	srv  *Server
	info kvcore.JoinInfo

	mu        sync.Mutex
	cur       kvcore.Transport
	gen       uint64
	recvGen   uint64
	closed    bool
	breakSend int // Break after this many more sends (0: off)
}

func (c *Conn) dial() {
	a, b := kvcore.Pipe()
	c.cur = a
	c.gen++
	c.srv.accept(b)
}

// JoinInfo implements kvcore.Joiner.
func (c *Conn) JoinInfo() kvcore.JoinInfo { return c.info }

// Break drops the current connection (messages in flight in either
// direction may be lost) and connects again.
func (c *Conn) Break() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.cur.Close()
	c.dial()
}

// BreakAfter makes the connection Break right after the n-th next Send
// (n >= 1), so that a request reaches the server but its answer is lost.
func (c *Conn) BreakAfter(n int) {
	c.mu.Lock()
	c.breakSend = n
	c.mu.Unlock()
}

func (c *Conn) get() (kvcore.Transport, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, 0, kvcore.ErrPipeClosed
	}
	return c.cur, c.gen, nil
}

func (c *Conn) afterSend() {
	c.mu.Lock()
	brk := false
	if c.breakSend > 0 {
		c.breakSend--
		brk = c.breakSend == 0
	}
	c.mu.Unlock()
	if brk {
		c.Break()
	}
}

// Send implements kvcore.Transport.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	t, _, err := c.get()
	if err != nil {
		return err
	}
	err = t.Send(ctx, msg)
	c.afterSend()
	return err
}

// SendParts implements kvcore.PartSender.
func (c *Conn) SendParts(ctx context.Context, head, body []byte) error {
	t, _, err := c.get()
	if err != nil {
		return err
	}
	err = t.(kvcore.PartSender).SendParts(ctx, head, body)
	c.afterSend()
	return err
}

// Recv implements kvcore.Transport.
func (c *Conn) Recv(ctx context.Context) ([]byte, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, kvcore.ErrPipeClosed
		}
		t, gen := c.cur, c.gen
		if gen != c.recvGen {
			c.recvGen = gen
			c.mu.Unlock()
			return nil, kvcore.ErrReconnected
		}
		c.mu.Unlock()
		// Break closes the old pipe, which ends this Recv.
		msg, err := t.Recv(ctx)
		if err == nil {
			return msg, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.srv.mu.Lock()
		down := c.srv.closed
		c.srv.mu.Unlock()
		c.mu.Lock()
		if c.gen == gen && !c.closed {
			if down {
				c.mu.Unlock()
				return nil, err // the server is gone for good
			}
			// The server hung up (a restart, a removal): reconnect, as
			// the relay client does; the store then says Hello again.
			c.dial()
		}
		c.mu.Unlock()
	}
}

// Close implements kvcore.Transport.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.cur.Close()
	return nil
}
