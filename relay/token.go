//go:build !js && !wasip1

package relay

import (
	"net/http"
	"strings"
)

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
