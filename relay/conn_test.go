//go:build !js && !wasip1

package relay

import (
	"context"

	"github.com/webkv/webkv/kvcore/transport"
)

// sendMsg and recvMsg use a Conn as a plain message pipe on the epoch Recv
// announced last (what a user of the Transport knows).
func (c *Conn) sendMsg(ctx context.Context, msg []byte) error {
	c.mu.Lock()
	e := c.announced
	c.mu.Unlock()
	return c.Send(ctx, 0, e, msg, nil)
}

func (c *Conn) recvMsg(ctx context.Context) ([]byte, error) {
	m, _, err := c.Recv(ctx, 0)
	return m, err
}

var (
	errReconnected = transport.ErrReconnected
	errClosed      = transport.ErrClosed
)
