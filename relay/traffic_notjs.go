//go:build !js

package relay

import "net"

// countConn counts a connection's bytes into a Traffic.
type countConn struct {
	net.Conn
	t *Traffic
}

func (c countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.t.received.Add(int64(n))
	return n, err
}

func (c countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.t.sent.Add(int64(n))
	return n, err
}
