//go:build !js && !wasip1

package relay

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
	"nhooyr.io/websocket"
)

// gatedConn lets the first limit bytes through; later writes wait until
// open is closed (a slow uplink frozen in the middle of a frame).
type gatedConn struct {
	net.Conn
	mu    sync.Mutex
	limit int
	open  chan struct{}
}

func (c *gatedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	n := min(len(b), c.limit)
	c.limit -= n
	c.mu.Unlock()
	if n > 0 {
		if k, err := c.Conn.Write(b[:n]); err != nil {
			return k, err
		}
	}
	if n == len(b) {
		return n, nil
	}
	<-c.open
	k, err := c.Conn.Write(b[n:])
	return n + k, err
}

// TestReadProgressWithinFrame: a peer's liveness counts the bytes of a
// frame as they arrive, not only whole frames. One 4 MiB frame stops after
// 1 MiB: the reader must already have noted progress (the websocket
// library fills the whole buffer it is given, so reading the payload in
// one call noted nothing until the last byte, and an honest worker on a
// slow uplink was removed as silent).
func TestReadProgressWithinFrame(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan *websocket.Conn, 1)
	done := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ws.SetReadLimit(-1)
		accepted <- ws
		<-done
		ws.CloseNow()
	})}
	go srv.Serve(ln)
	gate := &gatedConn{limit: 1 << 20, open: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(gate.open) }) }
	defer func() {
		release()
		close(done)
		srv.Close()
	}()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		gate.Conn = c
		return gate, err
	}}}
	c, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String(), &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ws := <-accepted

	const n = 4 << 20
	msg := wire.AppendHeader(nil, &wire.Header{Type: wire.TypePush, DType: wire.DTypeF32, Count: n / 4, Total: n / 4, PLen: n})
	msg = append(msg, make([]byte, n)...)
	wrote := make(chan error, 1)
	go func() { wrote <- c.Write(ctx, websocket.MessageBinary, msg) }()

	p := newPeer(1, ws, "x", &jobMetrics{}, time.Now(), 1)
	_, rd, err := ws.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := progressReader{rd, p}
	var hdr [wire.HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatal(err)
	}
	mark := p.lastRead.Load()
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(r, make([]byte, n))
		read <- err
	}()
	// Wait for the event (progress noted inside the payload), not a time.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for p.lastRead.Load() == mark {
		select {
		case err := <-read:
			t.Fatalf("no progress noted, and the payload read ended before the gate opened: %v", err)
		case <-ctx.Done():
			t.Fatal("no progress noted while 1 MiB of a 4 MiB payload had arrived")
		case <-tick.C:
		}
	}
	release()
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}
