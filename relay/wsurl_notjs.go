//go:build !js

package relay

import (
	"fmt"
	"net/url"
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
