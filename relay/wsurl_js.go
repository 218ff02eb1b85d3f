//go:build js

package relay

import (
	"fmt"
	"syscall/js"
)

// wsURL is wsurl_notjs.go's, with the browser's URL class instead of
// net/url (which would add ~50 KB gzipped to the browser runtime):
// http(s) becomes ws(s), an empty path becomes /ws, job (and a token that
// cannot be a subprotocol) become query parameters, sorted as url.Values
// encodes them.
func wsURL(raw, job, token string) (s string, err error) {
	ctor := js.Global().Get("URL")
	if ctor.Type() != js.TypeFunction {
		return "", fmt.Errorf("relay url %q: this JavaScript host has no URL class", raw)
	}
	var u js.Value
	if err := catch(func() { u = ctor.New(raw) }); err != nil {
		return "", fmt.Errorf("relay url %q: %v", raw, err)
	}
	switch u.Get("protocol").String() {
	case "ws:", "wss:":
	case "http:":
		u.Set("protocol", "ws:")
	case "https:":
		u.Set("protocol", "wss:")
	default:
		return "", fmt.Errorf("relay url %q: scheme must be ws, wss, http or https", raw)
	}
	if p := u.Get("pathname").String(); p == "" || p == "/" {
		u.Set("pathname", "/ws")
	}
	q := u.Get("searchParams")
	if job != "" {
		q.Call("set", "job", job)
	}
	if token != "" && !validProtoToken(token) {
		q.Call("set", "token", token)
	}
	q.Call("sort")
	return u.Get("href").String(), nil
}
