// Package transporttest is the conformance suite of kvcore/transport: every
// Transport implementation runs it (in-memory Pipe and Listener, package
// relay's websocket client natively and in the browser build, the
// in-process server's connections).
//
// The suite drives the transport under test against a raw peer: the server
// ends of its connections, which read and write whole messages and can drop
// a connection (as a lost network or a restarting server would). It checks
// the package transport contract: message order and integrity both ways,
// head and body as one message, epochs (a Send for any epoch but the
// current connection's writes nothing; after a connection is replaced, Recv
// announces it exactly once and the first message the new connection
// carries is the first one sent for its epoch, however Sends race the
// announcement), Close unblocking everything, and back-pressure (Send
// blocks while the peer does not read; nothing is lost or torn).
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, transporttest.Harness{New: ..., Reconnects: true, MaxBuffered: 64 << 20})
//	}
package transporttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/transport"
)

// Harness makes the transports under test.
type Harness struct {
	// New returns a fresh client Transport of one shard (or more: the
	// suite uses shard 0) and the peer serving its connections. The suite
	// closes the transport; t.Cleanup is the place to stop the peer.
	New func(t *testing.T) (transport.Transport, Peer)
	// Reconnects says the transport replaces a connection the peer drops
	// (a new epoch). Without it, a dropped connection ends the transport.
	Reconnects bool
	// MaxBuffered bounds the bytes the transport (with the operating
	// system's buffers underneath) takes from Send while the peer reads
	// nothing; Send must block before that many bytes are sent.
	MaxBuffered int
	// Reconnections is how many drop-and-reconnect rounds the racing
	// Hello-first case runs (default 50).
	Reconnections int
}

// Peer is the server side of a transport under test.
type Peer interface {
	// Accept returns the server end of the transport's next connection.
	Accept(ctx context.Context) (Conn, error)
}

// Conn is the server end of one connection.
type Conn interface {
	Send(ctx context.Context, msg []byte) error
	// Recv returns the next message; the slice may be reused by the next
	// Recv.
	Recv(ctx context.Context) ([]byte, error)
	// Close drops the connection, as a lost network would.
	Close() error
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	if h.New == nil {
		t.Fatal("transporttest: Harness.New is nil")
	}
	if h.Reconnections <= 0 {
		h.Reconnections = 50
	}
	if h.MaxBuffered <= 0 {
		t.Fatal("transporttest: Harness.MaxBuffered must be set: every transport bounds what it buffers")
	}
	for _, c := range cases {
		if c.reconnect && !h.Reconnects {
			continue
		}
		t.Run(c.name, func(t *testing.T) { c.fn(newFixture(t, h), h) })
	}
}

// deadline bounds every case: a transport that hangs fails instead of
// stalling the test binary.
const deadline = 2 * time.Minute

// tb is the part of testing.TB the checks use; the suite's own tests run
// them on a recorder to see that broken transports fail.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

type fixture struct {
	t    tb
	ctx  context.Context
	tr   transport.Transport
	peer Peer
	// closers are the accepted connections, closed at the end.
	closers []Conn
}

// group holds a test's goroutines: wait, deferred, lets them end before
// the test does (the fixture's cleanup closes the peer, and a Send still
// returning then, its message already read, would fail with "closed"); if
// the test did not reach passed, their context is cancelled first.
type group struct {
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
	ok     bool
}

func (f *fixture) group() *group {
	g := &group{}
	g.ctx, g.cancel = context.WithCancel(f.ctx)
	return g
}

func (g *group) run(fn func(ctx context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn(g.ctx)
	}()
}

func (g *group) passed() { g.ok = true }

func (g *group) wait() {
	if !g.ok {
		g.cancel()
	}
	g.wg.Wait()
	g.cancel()
}

func newFixture(t *testing.T, h Harness) *fixture {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	tr, peer := h.New(t)
	if tr == nil || peer == nil {
		t.Fatal("Harness.New returned nil")
	}
	f := &fixture{t: t, ctx: ctx, tr: tr, peer: peer}
	t.Cleanup(func() {
		// The peer's ends close while the transport closes: a transport
		// that closes politely waits for its peer's answer, and the
		// accepted connections are not read any more.
		done := make(chan struct{})
		go func() {
			defer close(done)
			tr.Close()
		}()
		for _, c := range f.closers {
			c.Close()
		}
		<-done
	})
	return f
}

// cases are the suite's checks, in order.
var cases = []struct {
	name      string
	reconnect bool // only for transports that reconnect
	fn        func(f *fixture, h Harness)
}{
	{"Shards", false, testShards},
	{"Order", false, testOrder},
	{"HeadBody", false, testHeadBody},
	{"StaleEpoch", false, testStaleEpoch},
	{"Concurrent", false, testConcurrent},
	{"PeerDrops", false, testPeerDrops},
	{"HelloFirstAfterReconnect", true, testHelloFirst},
	{"Close", false, testClose},
	{"Backpressure", false, testBackpressure},
}

func (f *fixture) accept() Conn {
	f.t.Helper()
	c, err := f.peer.Accept(f.ctx)
	if err != nil {
		f.t.Fatalf("peer: accept: %v", err)
	}
	f.closers = append(f.closers, c)
	return c
}

func (f *fixture) send(e transport.Epoch, head, body []byte) {
	f.t.Helper()
	if err := f.tr.Send(f.ctx, 0, e, head, body); err != nil {
		f.t.Fatalf("Send(epoch %d, %d+%d bytes): %v", e, len(head), len(body), err)
	}
}

// recv receives a message from shard 0 and checks its epoch.
func (f *fixture) recv(want transport.Epoch) []byte {
	f.t.Helper()
	m, e, err := f.tr.Recv(f.ctx, 0)
	if err != nil {
		f.t.Fatalf("Recv: %v", err)
	}
	if e != want {
		f.t.Fatalf("Recv: message on epoch %d, want %d", e, want)
	}
	return m
}

// payload is a deterministic message: its index and length, then bytes
// derived from both, so a torn, reordered or mixed-up message shows.
func payload(i, n int) []byte {
	if n < 8 {
		n = 8
	}
	b := make([]byte, n)
	binary.LittleEndian.PutUint32(b, uint32(i))
	binary.LittleEndian.PutUint32(b[4:], uint32(n))
	for j := 8; j < n; j++ {
		b[j] = byte(i*31 + j*7)
	}
	return b
}

func checkPayload(got []byte, i, n int) error {
	want := payload(i, n)
	if !bytes.Equal(got, want) {
		gi, gn := -1, -1
		if len(got) >= 8 {
			gi, gn = int(binary.LittleEndian.Uint32(got)), int(binary.LittleEndian.Uint32(got[4:]))
		}
		return fmt.Errorf("message %d: got %d bytes (index %d, length %d), want %d bytes", i, len(got), gi, gn, len(want))
	}
	return nil
}

func sizes(r *rand.Rand, k int) []int {
	s := make([]int, k)
	for i := range s {
		switch r.IntN(4) {
		case 0:
			s[i] = 8 + r.IntN(64)
		case 1:
			s[i] = 56 + r.IntN(4096)
		case 2:
			s[i] = 64<<10 + r.IntN(64<<10)
		default:
			s[i] = 256<<10 + r.IntN(256<<10)
		}
	}
	return s
}

func testShards(f *fixture, h Harness) {
	t := f.t
	n := f.tr.Shards()
	if n < 1 {
		t.Fatalf("Shards() = %d, want >= 1", n)
	}
	if f.tr.Shards() != n {
		t.Fatalf("Shards() changed")
	}
	if j1, j2 := f.tr.Join(), f.tr.Join(); j1 != j2 {
		t.Fatalf("Join() differs between calls")
	}
	for _, s := range []int{-1, n} {
		if err := f.tr.Send(f.ctx, s, transport.FirstEpoch, []byte("x"), nil); !errors.Is(err, transport.ErrNoShard) {
			t.Errorf("Send to shard %d of %d: %v, want ErrNoShard", s, n, err)
		}
		if _, _, err := f.tr.Recv(f.ctx, s); !errors.Is(err, transport.ErrNoShard) {
			t.Errorf("Recv from shard %d of %d: %v, want ErrNoShard", s, n, err)
		}
	}
}

func testOrder(f *fixture, h Harness) {
	t := f.t
	e := transport.FirstEpoch
	f.send(e, payload(-1, 8), nil) // the connection exists once something was sent
	c := f.accept()
	if m, err := c.Recv(f.ctx); err != nil || checkPayload(m, -1, 8) != nil {
		t.Fatalf("first message: %v", err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	k := 200
	if testing.Short() {
		k = 40
	}
	g := f.group()
	defer g.wait()
	up := sizes(r, k)
	g.run(func(ctx context.Context) {
		for i, n := range up {
			p := payload(i, n)
			k := r.IntN(len(p) + 1) // any split into head and body
			if err := f.tr.Send(ctx, 0, e, p[:k], p[k:]); err != nil {
				t.Errorf("Send %d: %v", i, err)
				return
			}
		}
	})
	for i, n := range up {
		m, err := c.Recv(f.ctx)
		if err != nil {
			t.Fatalf("peer: Recv %d: %v", i, err)
		}
		if err := checkPayload(m, i, n); err != nil {
			t.Fatalf("client to server: %v", err)
		}
	}
	down := sizes(r, k)
	g.run(func(ctx context.Context) {
		for i, n := range down {
			if err := c.Send(ctx, payload(i, n)); err != nil {
				t.Errorf("peer: Send %d: %v", i, err)
				return
			}
		}
	})
	for i, n := range down {
		if err := checkPayload(f.recv(e), i, n); err != nil {
			t.Fatalf("server to client: %v", err)
		}
	}
	g.passed()
}

func testHeadBody(f *fixture, h Harness) {
	t := f.t
	e := transport.FirstEpoch
	head, body := []byte("head:"), []byte("body")
	f.send(e, head, body)
	// The caller may reuse both once Send returned.
	copy(head, "XXXXX")
	copy(body, "YYYY")
	f.send(e, []byte("only-head"), nil)
	f.send(e, nil, []byte("only-body"))
	f.send(e, []byte("empty-body"), []byte{})
	c := f.accept()
	for _, want := range []string{"head:body", "only-head", "only-body", "empty-body"} {
		m, err := c.Recv(f.ctx)
		if err != nil {
			t.Fatalf("peer: Recv: %v", err)
		}
		if string(m) != want {
			t.Fatalf("peer got %q, want %q", m, want)
		}
	}
}

func testStaleEpoch(f *fixture, h Harness) {
	t := f.t
	e := transport.FirstEpoch
	for _, bad := range []transport.Epoch{0, e + 1, e + 1000} {
		if err := f.tr.Send(f.ctx, 0, bad, []byte("stale"), nil); !errors.Is(err, transport.ErrStale) {
			t.Errorf("Send for epoch %d on epoch %d: %v, want ErrStale", bad, e, err)
		}
	}
	f.send(e, []byte("first"), nil)
	c := f.accept()
	m, err := c.Recv(f.ctx)
	if err != nil {
		t.Fatalf("peer: Recv: %v", err)
	}
	if string(m) != "first" {
		t.Fatalf("peer got %q first: a Send for a wrong epoch went out", m)
	}
}

// testConcurrent runs an echo at full speed: Send and Recv on different
// goroutines (the race detector watches).
func testConcurrent(f *fixture, h Harness) {
	t := f.t
	e := transport.FirstEpoch
	k := 2000
	if testing.Short() {
		k = 300
	}
	f.send(e, payload(0, 100), nil)
	c := f.accept()
	g := f.group()
	defer g.wait()
	g.run(func(ctx context.Context) {
		for i := range k {
			m, err := c.Recv(ctx)
			if err != nil {
				t.Errorf("peer: Recv %d: %v", i, err)
				return
			}
			if err := c.Send(ctx, m); err != nil {
				t.Errorf("peer: Send %d: %v", i, err)
				return
			}
		}
	})
	g.run(func(ctx context.Context) {
		for i := 1; i < k; i++ {
			if err := f.tr.Send(ctx, 0, e, payload(i, 100+i%300), nil); err != nil {
				t.Errorf("Send %d: %v", i, err)
				return
			}
		}
	})
	for i := range k {
		if err := checkPayload(f.recv(e), i, 100+i%300); err != nil && i > 0 {
			t.Fatalf("echo: %v", err)
		}
	}
	g.passed()
}

// testPeerDrops: the peer drops the connection. A reconnecting transport
// announces a new epoch exactly once and carries on there; another one
// delivers what was sent before the drop, then fails for good.
func testPeerDrops(f *fixture, h Harness) {
	t := f.t
	e := transport.FirstEpoch
	f.send(e, []byte("hello 1"), nil)
	c := f.accept()
	if _, err := c.Recv(f.ctx); err != nil {
		t.Fatalf("peer: Recv: %v", err)
	}
	if err := c.Send(f.ctx, []byte("before the drop")); err != nil {
		t.Fatalf("peer: Send: %v", err)
	}
	// Read the message sent before the drop, so a transport that loses
	// unread messages at a drop is not told apart here.
	if m := f.recv(e); string(m) != "before the drop" {
		t.Fatalf("got %q", m)
	}
	c.Close()
	if !h.Reconnects {
		if _, _, err := f.tr.Recv(f.ctx, 0); err == nil || errors.Is(err, transport.ErrReconnected) {
			t.Fatalf("Recv after the peer closed a transport that does not reconnect: %v, want a permanent error", err)
		}
		if _, _, err := f.tr.Recv(f.ctx, 0); err == nil || errors.Is(err, transport.ErrReconnected) {
			t.Fatalf("second Recv after the peer closed: %v, want a permanent error", err)
		}
		return
	}
	m, e2, err := f.tr.Recv(f.ctx, 0)
	if !errors.Is(err, transport.ErrReconnected) {
		t.Fatalf("Recv after the drop: %q, %v; want ErrReconnected", m, err)
	}
	if e2 <= e {
		t.Fatalf("new connection has epoch %d, not above %d", e2, e)
	}
	if err := f.tr.Send(f.ctx, 0, e, []byte("old epoch"), nil); !errors.Is(err, transport.ErrStale) {
		t.Fatalf("Send for the replaced epoch: %v, want ErrStale", err)
	}
	f.send(e2, []byte("hello 2"), nil)
	c2 := f.accept()
	m, err = c2.Recv(f.ctx)
	if err != nil || string(m) != "hello 2" {
		t.Fatalf("peer's first message on the new connection: %q, %v; want hello 2", m, err)
	}
	if err := c2.Send(f.ctx, []byte("welcome 2")); err != nil {
		t.Fatalf("%v", err)
	}
	// Exactly one announcement: the next Recv is the message.
	if m := f.recv(e2); string(m) != "welcome 2" {
		t.Fatalf("got %q, want welcome 2", m)
	}
}

// testHelloFirst is the Hello-first rule under racing goroutines: a sender
// keeps sending for the epoch it knows while the peer drops connections;
// the receiver, at each announcement, sends a "hello" for the new epoch
// and only then lets the sender use it. On every new connection the peer
// must read that hello first.
func testHelloFirst(f *fixture, h Harness) {
	t := f.t
	var mu sync.Mutex
	cur := transport.FirstEpoch
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the racing sender
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			e := cur
			mu.Unlock()
			err := f.tr.Send(f.ctx, 0, e, fmt.Appendf(nil, "data %d", e), nil)
			if err != nil && f.ctx.Err() != nil {
				return
			}
			if i%16 == 15 {
				// Let the others run: on a small machine, and in a
				// browser, whose event loop (which delivers the
				// connection's events) runs only when Go waits.
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	hellos := make(chan transport.Epoch, 1)
	wg.Add(1)
	go func() { // the receiver
		defer wg.Done()
		for {
			_, e, err := f.tr.Recv(f.ctx, 0)
			if errors.Is(err, transport.ErrReconnected) {
				if err := f.tr.Send(f.ctx, 0, e, fmt.Appendf(nil, "hello %d", e), nil); err != nil && !errors.Is(err, transport.ErrStale) {
					t.Errorf("Send hello for epoch %d: %v", e, err)
				}
				mu.Lock()
				cur = e
				mu.Unlock()
				hellos <- e
				continue
			}
			if err != nil {
				return
			}
		}
	}()
	f.send(transport.FirstEpoch, []byte("hello 1"), nil)
	c := f.accept()
	for round := range h.Reconnections {
		// Let some data through on this connection, then drop it.
		for range 1 + round%4 {
			if _, err := c.Recv(f.ctx); err != nil {
				t.Fatalf("round %d: peer: Recv: %v", round, err)
			}
		}
		c.Close()
		c = f.accept()
		var e transport.Epoch
		select {
		case e = <-hellos:
		case <-f.ctx.Done():
			t.Fatalf("round %d: no reconnect announced", round)
		}
		m, err := c.Recv(f.ctx)
		if err != nil {
			// The transport may have replaced this connection again
			// before the hello went out (a stale hello is refused):
			// then the next one carries it.
			continue
		}
		if want := fmt.Sprintf("hello %d", e); string(m) != want {
			t.Fatalf("round %d: the new connection's first message is %q, want %q", round, m, want)
		}
	}
	close(stop)
	f.tr.Close()
	wg.Wait()
}

func testClose(f *fixture, h Harness) {
	t := f.t
	e := transport.FirstEpoch
	f.send(e, []byte("hello"), nil)
	c := f.accept()
	if _, err := c.Recv(f.ctx); err != nil {
		t.Fatalf("%v", err)
	}
	recvErr := make(chan error, 1)
	go func() {
		_, _, err := f.tr.Recv(f.ctx, 0)
		recvErr <- err
	}()
	// A Send blocked by back-pressure must end too: fill the connection
	// (the peer does not read) from another goroutine.
	sendErr := make(chan error, 1)
	go func() {
		big := make([]byte, 1<<20)
		for {
			if err := f.tr.Send(f.ctx, 0, e, big, nil); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	if err := f.tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-recvErr; !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Recv blocked at Close returned %v, want ErrClosed", err)
	}
	if err := <-sendErr; !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Send running at Close returned %v, want ErrClosed", err)
	}
	if err := f.tr.Send(f.ctx, 0, e, []byte("x"), nil); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	if _, _, err := f.tr.Recv(f.ctx, 0); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Recv after Close: %v, want ErrClosed", err)
	}
	if err := f.tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// testBackpressure: while the peer reads nothing, Send blocks before
// MaxBuffered bytes (a Send that has not returned after a while is taken
// as blocked: a slow machine can only make this pass, never fail); once
// the peer reads, everything sent arrives whole and in order.
func testBackpressure(f *fixture, h Harness) {
	t := f.t
	e := transport.FirstEpoch
	f.send(e, payload(0, 64), nil)
	c := f.accept()
	if _, err := c.Recv(f.ctx); err != nil {
		t.Fatalf("%v", err)
	}
	const size = 1 << 20
	limit := h.MaxBuffered + 32<<20
	sent, blocked := 0, false
	for i := 1; sent < limit; i++ {
		ctx, cancel := context.WithTimeout(f.ctx, 2*time.Second)
		err := f.tr.Send(ctx, 0, e, payload(i, size), nil)
		cancel()
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Send %d after %d bytes: %v, want it to block until its context ends", i, sent, err)
			}
			blocked = true
			break
		}
		sent += size
	}
	if !blocked {
		t.Fatalf("Send never blocked: %d bytes taken while the peer read nothing (MaxBuffered %d)", sent, h.MaxBuffered)
	}
	t.Logf("Send blocked after %d MiB unread", sent>>20)
	// Everything Send took arrives whole and in order; the message whose
	// Send was cut may follow whole, or the connection ends there.
	for i := 1; i <= sent/size; i++ {
		m, err := c.Recv(f.ctx)
		if err != nil {
			t.Fatalf("peer: Recv %d of %d: %v", i, sent/size, err)
		}
		if err := checkPayload(m, i, size); err != nil {
			t.Fatalf("%v", err)
		}
	}
}
