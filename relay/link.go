package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"nhooyr.io/websocket"
)

// Subprotocol is the websocket subprotocol of webkv's wire protocol. The
// server always selects it; a client may also offer "webkv.token.<token>"
// to authenticate without headers (browsers cannot set them), and the server
// never echoes that one back.
const (
	Subprotocol   = "webkv.1"
	tokenProtoPfx = "webkv.token."
)

// batcher coalesces writes during one message (native only; nil on js).
type batcher interface {
	begin()
	end() error
}

// link is one websocket connection from a client to a relay.
type link struct {
	ws  *websocket.Conn
	bc  batcher
	buf []byte // receive buffer, reused: Recv's result is valid until the next Recv
}

func (l *link) send(ctx context.Context, msg []byte) error {
	if l.bc != nil {
		l.bc.begin()
		err := l.ws.Write(ctx, websocket.MessageBinary, msg)
		if ferr := l.bc.end(); err == nil {
			err = ferr
		}
		return err
	}
	return l.ws.Write(ctx, websocket.MessageBinary, msg)
}

// sendParts writes head and body as one message of two frames.
func (l *link) sendParts(ctx context.Context, head, body []byte) error {
	if l.bc == nil {
		return l.writeParts(ctx, head, body)
	}
	l.bc.begin()
	err := l.writeParts(ctx, head, body)
	if ferr := l.bc.end(); err == nil {
		err = ferr
	}
	return err
}

func (l *link) writeParts(ctx context.Context, head, body []byte) error {
	return writeParts(ctx, l.ws, head, body)
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

// wsURL normalises a relay address for job: http(s) becomes ws(s), an empty
// path becomes /ws, and job is added as a query parameter; the token is
// offered as a subprotocol, or put in the query when it cannot be one.
func wsURL(raw, job, token string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("relay url %q: %w", raw, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("relay url %q: scheme must be ws, wss, http or https", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
	}
	q := u.Query()
	if job != "" {
		q.Set("job", job)
	}
	if token != "" && !validProtoToken(token) {
		// A token that cannot be a subprotocol travels in the query
		// (which may end up in proxy logs: prefer token-safe tokens).
		q.Set("token", token)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// subprotocols returns the client's offer.
func subprotocols(token string) []string {
	p := []string{Subprotocol}
	if token != "" && validProtoToken(token) {
		p = append(p, tokenProtoPfx+token)
	}
	return p
}

// validProtoToken reports whether s can travel in Sec-WebSocket-Protocol
// (an RFC 7230 token).
func validProtoToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// tokenFrom returns the token a request presents in its subprotocol offer
// or query.
func tokenFrom(r *http.Request) string {
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			p = strings.TrimSpace(p)
			if strings.HasPrefix(p, tokenProtoPfx) {
				return p[len(tokenProtoPfx):]
			}
		}
	}
	return r.URL.Query().Get("token")
}
