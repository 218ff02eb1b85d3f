//go:build !js && !wasip1

package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"nhooyr.io/websocket"
)

// echoServer echoes every binary message; it records the token each
// connection presented and can drop all connections.
type echoServer struct {
	url    string
	mu     sync.Mutex
	tokens []string
	conns  []*websocket.Conn
	n      atomic.Int32
	added  chan struct{} // a connection was registered
}

func newEchoServer(t testing.TB) *echoServer {
	e := &echoServer{added: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("job") == "refuse" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{Subprotocol}})
		if err != nil {
			return
		}
		if c.Subprotocol() != Subprotocol {
			c.Close(websocket.StatusPolicyViolation, "subprotocol")
			return
		}
		defer c.CloseNow() // a failed read leaves the connection open
		e.n.Add(1)
		e.mu.Lock()
		e.tokens = append(e.tokens, tokenFrom(r))
		e.conns = append(e.conns, c)
		e.mu.Unlock()
		select {
		case e.added <- struct{}{}:
		default:
		}
		c.SetReadLimit(-1)
		var buf []byte
		for {
			_, rd, err := c.Reader(context.Background())
			if err != nil {
				return
			}
			msg, err := readAllInto(rd, &buf)
			if err != nil {
				return
			}
			if err := c.Write(context.Background(), websocket.MessageBinary, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func (e *echoServer) dropAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.conns {
		c.CloseNow()
	}
	e.conns = nil
}

// waitConns waits until the server holds k open connections (it registers
// a connection only after its Accept returns, which can be after the client
// already uses it).
func (e *echoServer) waitConns(t testing.TB, k int) {
	t.Helper()
	e.wait(t, fmt.Sprintf("%d open connections", k), func() bool { return len(e.conns) >= k })
}

// waitAccepted waits until the server accepted k connections in all.
func (e *echoServer) waitAccepted(t testing.TB, k int) {
	t.Helper()
	e.wait(t, fmt.Sprintf("%d accepted connections", k), func() bool { return e.n.Load() == int32(k) })
}

// wait waits until cond (called under e.mu) holds, woken by each new
// connection; the minute is a bound against hanging, not a margin.
func (e *echoServer) wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	bound := time.NewTimer(time.Minute)
	defer bound.Stop()
	for {
		e.mu.Lock()
		ok := cond()
		e.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-e.added:
		case <-bound.C:
			t.Fatalf("echo server: no %s within a minute", what)
		}
	}
}

func TestDialEchoAndToken(t *testing.T) {
	e := newEchoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, e.url, DialOptions{Job: "j", Token: "s3cret-Tok", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, n := range []int{0, 1, 4095, 4096, 4097, batchSize - 1, batchSize, batchSize + 3, 3 << 20} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		if err := c.sendMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		got, err := c.recvMsg(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes differs", n)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.tokens) != 1 || e.tokens[0] != "s3cret-Tok" {
		t.Fatalf("server saw tokens %q, want the subprotocol token", e.tokens)
	}
}

func TestDialRefusedIsFinal(t *testing.T) {
	e := newEchoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, e.url, DialOptions{Job: "refuse"})
	if !errors.Is(err, kvcore.ErrAuth) || errors.Is(err, kvcore.ErrUnreachable) {
		t.Fatalf("got %v, want an HTTP 403 refusal (kvcore.ErrAuth)", err)
	}
	if ctx.Err() != nil {
		t.Fatal("a refusal was retried until the context ended")
	}
	if _, err := Dial(ctx, e.url, DialOptions{}); err == nil {
		t.Fatal("dial without a job succeeded")
	}
	if _, err := Dial(ctx, "ftp://x", DialOptions{Job: "j"}); err == nil {
		t.Fatal("dial with an ftp URL succeeded")
	}
}

// TestDialWaitsForServer: Dial retries a relay that is not serving yet.
// The first connection is cut before its upgrade (no sleep: the server
// answers only from the second attempt on).
func TestDialWaitsForServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first := &cutFirst{Listener: ln}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err == nil {
			c.Close(websocket.StatusNormalClosure, "")
		}
	})}
	go srv.Serve(first)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Dial(ctx, "ws://"+ln.Addr().String(), DialOptions{Job: "j", WaitForRelay: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !first.cut.Load() {
		t.Fatal("the first connection was not cut")
	}
}

// cutFirst closes the first connection it accepts.
type cutFirst struct {
	net.Listener
	cut atomic.Bool
}

func (l *cutFirst) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil && l.cut.CompareAndSwap(false, true) {
		c.Close()
		return l.Listener.Accept()
	}
	return c, err
}

func TestReconnect(t *testing.T) {
	e := newEchoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, e.url, DialOptions{Job: "j", ReconnectMin: time.Millisecond, ReconnectMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for round := 0; round < 3; round++ {
		if err := c.sendMsg(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.recvMsg(ctx); err != nil { // the server has registered the conn
			t.Fatal(err)
		}
		e.dropAll()
		// Recv notices the loss, reconnects and reports it once.
		_, err := c.recvMsg(ctx)
		if !errors.Is(err, errReconnected) {
			t.Fatalf("round %d: Recv after a drop: %v, want ErrReconnected", round, err)
		}
		if err := c.sendMsg(ctx, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		got, err := c.recvMsg(ctx)
		if err != nil || string(got) != "hi" {
			t.Fatalf("after reconnect: %q, %v", got, err)
		}
	}
	c.Kill()
	if _, err := c.recvMsg(ctx); !errors.Is(err, errReconnected) {
		t.Fatalf("after Kill: %v", err)
	}
	e.waitAccepted(t, 5) // the server counts after its Accept returns
	c.Close()
	if err := c.sendMsg(ctx, []byte("x")); !errors.Is(err, errClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if _, err := c.recvMsg(ctx); !errors.Is(err, errClosed) {
		t.Fatalf("Recv after Close: %v", err)
	}
}

func TestReconnectGivesUp(t *testing.T) {
	e := newEchoServer(t)
	srvURL := e.url
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, srvURL, DialOptions{Job: "j", ReconnectMin: time.Millisecond, ReconnectMax: 10 * time.Millisecond, GiveUp: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.sendMsg(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.recvMsg(ctx); err != nil { // the server has registered the conn
		t.Fatal(err)
	}
	// Point the client at a dead address, then drop it.
	c.mu.Lock()
	c.url = "ws://127.0.0.1:1/ws?job=j"
	c.mu.Unlock()
	e.dropAll()
	_, err = c.recvMsg(ctx)
	if err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("got %v, want a give-up error", err)
	}
}

// TestBatchConnOrder checks that coalesced writes keep their order and that
// writes outside begin/end are not held back.
func TestBatchConnOrder(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	bc := newBatchConn(a, 64)
	var got bytes.Buffer
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 1000)
		for {
			n, err := b.Read(buf)
			got.Write(buf[:n])
			if err != nil || got.Len() >= 1+200+10+3 {
				close(done)
				return
			}
		}
	}()
	var want bytes.Buffer
	w := func(p []byte) {
		if _, err := bc.Write(p); err != nil {
			t.Error(err)
		}
		want.Write(p)
	}
	w([]byte{1}) // outside a batch: goes through at once
	bc.begin()
	for i := 0; i < 20; i++ {
		w(bytes.Repeat([]byte{byte(i + 2)}, 10))
	}
	w(bytes.Repeat([]byte{99}, 10))
	if err := bc.end(); err != nil {
		t.Fatal(err)
	}
	w([]byte{7, 8, 9})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("bytes held back")
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("coalesced bytes differ from the written bytes")
	}
}

// TestIdleTimeoutReconnects: a connection on which nothing arrives for
// IdleTimeout is deemed dead (a half-open TCP connection looks like this)
// and replaced.
func TestIdleTimeoutReconnects(t *testing.T) {
	e := newEchoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, e.url, DialOptions{Job: "j", IdleTimeout: 200 * time.Millisecond, ReconnectMin: time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t0 := time.Now()
	if _, err := c.recvMsg(ctx); !errors.Is(err, errReconnected) {
		t.Fatalf("Recv on a silent connection: %v, want ErrReconnected", err)
	}
	if d := time.Since(t0); d < 200*time.Millisecond {
		t.Fatalf("reconnected after %v, before the idle timeout", d)
	}
	e.waitAccepted(t, 2) // the server counts after its Accept returns
}
