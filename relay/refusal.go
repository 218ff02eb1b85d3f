package relay

import (
	"errors"
	"fmt"

	"github.com/webkv/webkv/kvcore"
)

// How a client tells a refusal from a relay that is not there (issue 11:
// the first run must fail fast and say why).

// refusedError is an HTTP refusal of the upgrade: the relay is there and
// said no. 4xx are final; 5xx (slots full) are retried on reconnection.
type refusedError struct {
	status int
	reason string // the relay's text, from the response body
	err    error  // kvcore.ErrAuth for a 403, else the websocket library's
}

func (e *refusedError) Error() string {
	if e.status == statusForbidden {
		return e.err.Error()
	}
	return fmt.Sprintf("relay refused the connection (HTTP %d): %s", e.status, e.reason)
}

func (e *refusedError) Unwrap() error { return e.err }

// statusForbidden is http.StatusForbidden (net/http stays out of the js
// build).
const statusForbidden = 403

// firstDialErr is the error of a first connection attempt that failed:
// a refusal as it is, anything else (nothing listens, no route, no name,
// a timeout) kvcore.ErrUnreachable naming the address.
func firstDialErr(url string, err error) error {
	var re *refusedError
	if errors.As(err, &re) {
		return fmt.Errorf("relay: dial %s: %w", url, err)
	}
	return fmt.Errorf("relay: dial %s: %w: %w (is the relay running? DialOptions.WaitForRelay waits for it)", url, kvcore.ErrUnreachable, err)
}
