// Package inproc runs psm parameter-server jobs in the same process, over
// in-memory connections (a transport.Listener): a relay without sockets,
// for tests and single-process demos.
//
//	srv := inproc.New(psm.Config{Heartbeat: 50 * time.Millisecond})
//	defer srv.Close()
//	st, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("job", 4)})
//
// A client connection is a *transport.Conn: it reconnects by itself when
// the server drops it (a restart, a bad frame) and gates messages by
// connection epoch exactly as package relay's websocket client does, so
// tests over it meet the same ordering rules; Conn.Break simulates a lost
// connection, for exactly-once tests. The server side is as strict as the
// relay: a connection's first message must be a Hello. Each connection has
// a goroutine that feeds its messages to the job; one more goroutine
// drives the jobs' timers. All calls into the jobs are serialized by one
// mutex, as psm requires.
package inproc

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// Server serves psm jobs (one per job id) over in-memory connections.
type Server struct {
	cfg   psm.Config
	start time.Time
	l     *transport.Listener

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
	t   transport.Transport // a server end: one shard, one epoch
	job *psm.Job
}

// New starts a server; cfg is the template of every job's configuration
// (its Job field is set to the job id).
func New(cfg psm.Config) *Server { return newServer(cfg, true) }

// newServer is New; without accept, nothing serves the connections (the
// conformance test does, as a raw peer).
func newServer(cfg psm.Config, accept bool) *Server {
	s := &Server{cfg: cfg, start: time.Now(), l: transport.NewListener(), jobs: map[string]*psm.Job{}, conns: map[psm.ConnID]*serverConn{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.ticker()
	if accept {
		s.wg.Add(1)
		go s.acceptLoop()
	}
	return s
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		t, err := s.l.Accept(s.ctx)
		if err != nil {
			return
		}
		s.accept(t)
	}
}

// send sends head then body on c (a server end never blocks).
func (c *serverConn) send(head, body []byte) {
	c.t.Send(context.Background(), 0, transport.FirstEpoch, head, body)
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
		frame, _, err := c.t.Recv(s.ctx, 0)
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

// route binds a new connection to the job its Hello names. Anything but a
// Hello first closes the connection, as the relay does.
func (s *Server) route(c *serverConn, frame []byte) bool {
	var m wire.Msg
	err := wire.Decode(frame, s.cfg.Limits, &m)
	if err == nil && m.Type != wire.TypeHello {
		err = wire.Errorf(wire.CodeBadRequest, "%v before the handshake: the first message must be a Hello", m.Type)
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
		c.send(s.buf, nil)
		c.t.Close()
		return false
	}
	j := s.jobs[h.Job]
	if j == nil {
		cfg := s.cfg
		cfg.Job = h.Job
		if j, err = psm.New(cfg); err != nil {
			s.buf = wire.AppendError(s.buf[:0], 0, wire.CodeInternal, err.Error())
			c.send(s.buf, nil)
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
		c.send(s.buf, e.Msg.Payload)
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
// reconnect (their transport.Conn does that by itself) and resume.
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

// accept starts serving the server end of a new connection.
func (s *Server) accept(t transport.Transport) {
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
// joins wait until that many workers joined (transport.Join.Workers).
func (s *Server) Connect(id string, workers int) *transport.Conn {
	return s.ConnectJoin(transport.Join{Job: id, Workers: workers})
}

// ConnectJoin is Connect with a full Join (a token, the big-array bound).
// On a closed server the connection fails at once.
func (s *Server) ConnectJoin(join transport.Join) *transport.Conn {
	return s.l.Dial(join)
}

// Close stops the server: every connection closes, the jobs are freed.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.l.Close()
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
