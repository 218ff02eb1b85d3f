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

// refusal classifies a failed upgrade's response. A 403 (wrong or missing
// token, unknown job) is kvcore.ErrAuth with the same words a browser
// reads in the relay's Error frame (the relay writes them in the body).
func refusal(resp *http.Response, err error) error {
	reason := ""
	if resp.Body != nil {
		// The websocket library kept (at most) the first KiB of the body.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		reason = printable(strings.TrimSpace(string(b)))
	}
	if reason == "" {
		reason = http.StatusText(resp.StatusCode)
	}
	e := &refusedError{status: resp.StatusCode, reason: reason, err: err}
	if resp.StatusCode == http.StatusForbidden {
		e.err = fmt.Errorf("%w: %w", kvcore.ErrAuth, &wire.Error{Code: wire.CodeAuth, Msg: reason})
	}
	if resp.StatusCode < 500 {
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
