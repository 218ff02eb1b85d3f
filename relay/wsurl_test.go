package relay

import "testing"

// TestWSURL runs natively (net/url) and in node (wsurl_js.go, the URL
// class): both must give the same URLs.
func TestWSURL(t *testing.T) {
	for _, tc := range []struct{ in, job, tok, want string }{
		{"ws://h:1", "a", "", "ws://h:1/ws?job=a"},
		{"http://h:1/", "a b", "tok", "ws://h:1/ws?job=a+b"},
		{"https://h/x/ws", "a", "has space", "wss://h/x/ws?job=a&token=has+space"},
		{"ws://h:1/ws?z=1", "j", "", "ws://h:1/ws?job=j&z=1"},
	} {
		got, err := wsURL(tc.in, tc.job, tc.tok)
		if err != nil || got != tc.want {
			t.Errorf("wsURL(%q,%q,%q) = %q, %v; want %q", tc.in, tc.job, tc.tok, got, err, tc.want)
		}
	}
	if p := subprotocols("a/b"); len(p) != 1 {
		t.Errorf("a token with '/' was offered as a subprotocol: %q", p)
	}
}

func TestWSURLErrors(t *testing.T) {
	for _, in := range []string{"ftp://h/", "not a url"} {
		if _, err := wsURL(in, "j", ""); err == nil {
			t.Errorf("wsURL(%q) = nil error", in)
		}
	}
}
