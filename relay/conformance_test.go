//go:build !js && !wasip1

package relay

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/transport/transporttest"
	"nhooyr.io/websocket"
)

// The transport conformance suite on Conn, natively, against a raw
// websocket peer (the browser build runs it in tests/, see
// TestRelayConnConformanceJS there).
func TestConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) (transport.Transport, transporttest.Peer) {
			p := NewRawPeer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := Dial(ctx, p.URL, DialOptions{Job: "conformance", ReconnectMin: time.Millisecond,
				ReconnectMax: 20 * time.Millisecond, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			return c, p
		},
		Reconnects: true,
		// The coalescing buffer, the sockets' buffers on loopback and the
		// library's read buffer take some MiB.
		MaxBuffered: 64 << 20,
	})
}

// RawPeer is a websocket server that hands out the connections made to it
// as transporttest.Conns.
type RawPeer struct {
	URL   string
	conns chan *websocket.Conn
}

// NewRawPeer starts one on 127.0.0.1 for the test's lifetime.
func NewRawPeer(t testing.TB) *RawPeer {
	p := &RawPeer{conns: make(chan *websocket.Conn, 64)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{Subprotocol}})
		if err != nil {
			return
		}
		c.SetReadLimit(1 << 30)
		p.conns <- c
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		for {
			select {
			case c := <-p.conns:
				c.CloseNow()
			default:
				return
			}
		}
	})
	p.URL = "ws" + strings.TrimPrefix(srv.URL, "http")
	return p
}

// Accept implements transporttest.Peer.
func (p *RawPeer) Accept(ctx context.Context) (transporttest.Conn, error) {
	select {
	case c := <-p.conns:
		return &rawPeerConn{ws: c}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type rawPeerConn struct {
	ws  *websocket.Conn
	buf []byte
}

func (c *rawPeerConn) Send(ctx context.Context, msg []byte) error {
	return c.ws.Write(ctx, websocket.MessageBinary, msg)
}

func (c *rawPeerConn) Recv(ctx context.Context) ([]byte, error) {
	_, r, err := c.ws.Reader(ctx)
	if err != nil {
		return nil, err
	}
	return readAllInto(r, &c.buf)
}

func (c *rawPeerConn) Close() error { return c.ws.CloseNow() }
