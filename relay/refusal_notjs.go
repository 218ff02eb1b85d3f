//go:build !js

package relay

import (
	"io"
	"net/http"
	"strings"
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
