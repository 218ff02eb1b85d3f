//go:build !js

package relay

import (
	"context"
	"errors"
	"io"

	"nhooyr.io/websocket"
)

// batcher coalesces writes during one message (see batchConn).
type batcher interface {
	begin()
	end() error
}

// link is one websocket connection from a client to a relay.
type link struct {
	ws  *websocket.Conn
	bc  batcher
	buf []byte // receive buffer, reused: recv's result is valid until the next recv
}

// send writes head then body as one message (two frames when body is not
// empty: they are never copied together). The socket's buffers bound what
// it takes: a peer that does not read blocks it (back-pressure).
func (l *link) send(ctx context.Context, head, body []byte, _ *DialOptions) error {
	if l.bc != nil {
		l.bc.begin()
	}
	var err error
	if len(body) == 0 {
		err = l.ws.Write(ctx, websocket.MessageBinary, head)
	} else {
		err = writeParts(ctx, l.ws, head, body)
	}
	if l.bc != nil {
		if ferr := l.bc.end(); err == nil {
			err = ferr
		}
	}
	return err
}

// writeParts writes head and body as one websocket message (two frames),
// so a big payload shared by several messages is never copied behind a
// per-message header.
func writeParts(ctx context.Context, ws *websocket.Conn, head, body []byte) error {
	w, err := ws.Writer(ctx, websocket.MessageBinary)
	if err != nil {
		return err
	}
	if _, err := w.Write(head); err != nil {
		w.Close()
		return err
	}
	if _, err := w.Write(body); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// recv reads one binary message into l.buf (grown as needed, never shrunk),
// so the steady state of a training loop allocates nothing per message.
func (l *link) recv(ctx context.Context) ([]byte, error) {
	typ, r, err := l.ws.Reader(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageBinary {
		return nil, errors.New("relay sent a text message; the protocol is binary")
	}
	return readAllInto(r, &l.buf)
}

func (l *link) closeNow() { l.ws.CloseNow() }

// closePolite sends a close frame and waits (the library bounds it: 5 s)
// for the answer: CloseNow could lose what the socket still holds.
func (l *link) closePolite() {
	l.ws.Close(websocket.StatusNormalClosure, "")
}

// readAllInto reads r to EOF into *buf, growing it geometrically.
func readAllInto(r io.Reader, buf *[]byte) ([]byte, error) {
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), 2*cap(b)+64<<10)
			copy(nb, b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*buf = b
			return b, nil
		}
		if err != nil {
			*buf = b
			return nil, err
		}
	}
}
