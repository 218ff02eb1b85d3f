package relay

import (
	"fmt"
	"net/url"
	"strings"
)

// Subprotocol is the websocket subprotocol of webkv's wire protocol. The
// server always selects it; a client may also offer "webkv.token.<token>"
// to authenticate without headers (browsers cannot set them), and the server
// never echoes that one back.
const (
	Subprotocol   = "webkv.1"
	tokenProtoPfx = "webkv.token."
)

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
