//go:build !js

package relay

import (
	"context"
	"net"
	"net/http"
	"time"

	"nhooyr.io/websocket"
)

// batchSize is the write-coalescing buffer of a client connection. 1 MiB
// measured best here (256 KiB reached ~2.5 GB/s client→server on 64 MB,
// 1 MiB the same with fewer syscalls); see BenchmarkEcho*.
const batchSize = 1 << 20

// dialLink opens one websocket connection through an http.Transport whose
// connections are wrapped in a batchConn (see batchConn for why). A refused
// upgrade returns the HTTP status (0 without a response) and refusal's error.
func dialLink(ctx context.Context, url string, protos []string, o *DialOptions) (*link, int, error) {
	var bc *batchConn
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{KeepAlive: 15 * time.Second}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if o.Traffic != nil {
				c = countConn{c, o.Traffic}
			}
			bc = newBatchConn(c, batchSize)
			return bc, nil
		},
		TLSClientConfig:   o.TLSConfig,
		ForceAttemptHTTP2: false,
		// The upgraded connection reads through this buffer.
		ReadBufferSize: 256 << 10,
	}
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: tr},
		HTTPHeader:      o.Header,
		Subprotocols:    protos,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 {
			return nil, resp.StatusCode, refusal(resp, err)
		}
		return nil, 0, err
	}
	ws.SetReadLimit(o.MaxMessage)
	l := &link{ws: ws}
	if bc != nil {
		l.bc = bc
	}
	return l, 0, nil
}
