//go:build js && webkvpeer

package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/transport/transporttest"
)

// TestConformanceJS runs the transport conformance suite on the GOOS=js
// Conn (the page's WebSocket) in node or a browser. Built with the
// webkvpeer tag by tests/relayconn_browser_test.go, which serves the raw peer the
// suite talks to: WEBKV_PEER_WS is where Conns dial, WEBKV_PEER_CTL a
// control websocket through which this test drives the peer's side of
// each connection (accept, send, receive, drop).
func TestConformanceJS(t *testing.T) {
	wsURL, ctlURL := os.Getenv("WEBKV_PEER_WS"), os.Getenv("WEBKV_PEER_CTL")
	if wsURL == "" || ctlURL == "" {
		t.Fatal("WEBKV_PEER_WS and WEBKV_PEER_CTL must name the peer (tests/relayconn_browser_test.go sets them)")
	}
	ctx := context.Background()
	ctl, err := dialCtl(ctx, ctlURL)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.close()
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) (transport.Transport, transporttest.Peer) {
			ctl.call(ctx, ctlReset, 0, nil) // forget connections of earlier cases
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := Dial(dctx, wsURL, DialOptions{Job: "conformance", ReconnectMin: time.Millisecond, ReconnectMax: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			return c, remotePeer{ctl}
		},
		Reconnects: true,
		// The browser's send buffer (DialOptions.MaxBuffered, 16 MiB) and
		// the sockets' buffers underneath.
		MaxBuffered:   64 << 20,
		Reconnections: 20,
	})
}

// The control protocol: a request is id (u32), op (u8), conn (u32) and a
// payload; its answer is id, status (0 ok, 1 error), conn and a payload
// (data, or the error text).
const (
	ctlAccept = 1 + iota
	ctlSend
	ctlRecv
	ctlClose
	ctlReset
)

type ctlClient struct {
	l      *link
	o      DialOptions
	sendMu sync.Mutex
	mu     sync.Mutex
	next   uint32
	calls  map[uint32]chan ctlAnswer
	err    error
}

type ctlAnswer struct {
	conn uint32
	data []byte
	err  error
}

func dialCtl(ctx context.Context, url string) (*ctlClient, error) {
	o := DialOptions{MaxMessage: 1<<30 + 4096}.withDefaults()
	l, _, err := dialLink(ctx, url, []string{Subprotocol}, &o)
	if err != nil {
		return nil, fmt.Errorf("control connection: %w", err)
	}
	c := &ctlClient{l: l, o: o, calls: map[uint32]chan ctlAnswer{}}
	go c.read()
	return c, nil
}

func (c *ctlClient) read() {
	for {
		m, err := c.l.recv(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			for _, ch := range c.calls {
				ch <- ctlAnswer{err: fmt.Errorf("control connection: %w", err)}
			}
			c.calls = nil
			c.mu.Unlock()
			return
		}
		if len(m) < 9 {
			continue
		}
		id, status, conn := binary.LittleEndian.Uint32(m), m[4], binary.LittleEndian.Uint32(m[5:])
		a := ctlAnswer{conn: conn, data: append([]byte(nil), m[9:]...)}
		if status != 0 {
			a.err, a.data = errors.New(string(m[9:])), nil
		}
		c.mu.Lock()
		ch := c.calls[id]
		delete(c.calls, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- a
		}
	}
}

func (c *ctlClient) call(ctx context.Context, op byte, conn uint32, data []byte) ctlAnswer {
	ch := make(chan ctlAnswer, 1)
	c.mu.Lock()
	if c.calls == nil {
		err := c.err
		c.mu.Unlock()
		return ctlAnswer{err: err}
	}
	c.next++
	id := c.next
	c.calls[id] = ch
	c.mu.Unlock()
	head := binary.LittleEndian.AppendUint32(nil, id)
	head = append(head, op)
	head = binary.LittleEndian.AppendUint32(head, conn)
	c.sendMu.Lock()
	err := c.l.send(ctx, head, data, &c.o)
	c.sendMu.Unlock()
	if err != nil {
		return ctlAnswer{err: err}
	}
	select {
	case a := <-ch:
		return a
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.calls, id)
		c.mu.Unlock()
		return ctlAnswer{err: ctx.Err()}
	}
}

func (c *ctlClient) close() { c.l.closeNow() }

type remotePeer struct{ c *ctlClient }

func (p remotePeer) Accept(ctx context.Context) (transporttest.Conn, error) {
	a := p.c.call(ctx, ctlAccept, 0, nil)
	if a.err != nil {
		return nil, a.err
	}
	return remoteConn{p.c, a.conn}, nil
}

type remoteConn struct {
	c  *ctlClient
	id uint32
}

func (r remoteConn) Send(ctx context.Context, msg []byte) error {
	return r.c.call(ctx, ctlSend, r.id, msg).err
}

func (r remoteConn) Recv(ctx context.Context) ([]byte, error) {
	a := r.c.call(ctx, ctlRecv, r.id, nil)
	return a.data, a.err
}

func (r remoteConn) Close() error {
	return r.c.call(context.Background(), ctlClose, r.id, nil).err
}
