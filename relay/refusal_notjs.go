//go:build !js

package relay

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/wire"
)

// refusal classifies a failed upgrade's response (see refusalOf); the
// websocket library kept (at most) the first KiB of its body.
func refusal(resp *http.Response, err error) error {
	reason := ""
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		reason = printable(strings.TrimSpace(string(b)))
	}
	return refusalOf(resp.StatusCode, reason, err)
}

// refusalOf classifies a failed upgrade: HTTP status and the relay's
// reason (its response body; "" where the client cannot read it). A 403
// (wrong or missing token, unknown job) is kvcore.ErrAuth with the same
// words a browser reads in the relay's Error frame (the relay writes them
// in the body); 4xx are final, 5xx retried on reconnection.
func refusalOf(status int, reason string, err error) error {
	if reason == "" {
		reason = fmt.Sprintf("HTTP status %d", status)
	}
	e := &refusedError{status: status, reason: reason, err: err}
	if status == statusForbidden {
		e.err = fmt.Errorf("%w: %w", kvcore.ErrAuth, &wire.Error{Code: wire.CodeAuth, Msg: reason})
	}
	if status < 500 {
		return &finalError{e}
	}
	return e
}

// printable cuts s to valid UTF-8 without control characters.
func printable(s string) string {
	s = strings.ToValidUTF8(s, "?")
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}
