package relay

import (
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

// wsURL (wsurl_notjs.go, wsurl_js.go) normalises a relay address.

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
