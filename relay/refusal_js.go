//go:build js

package relay

import "net/http"

// refusal: a browser never sees an HTTP refusal (the relay refuses pages
// inside the websocket), so this only keeps client.go's call compiling.
func refusal(resp *http.Response, err error) error { return refusalOf(resp.StatusCode, "", err) }
