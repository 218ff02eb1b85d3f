//go:build !js && !wasip1

package tests

import (
	"net/http"
	"testing"
	"time"

	"github.com/webkv/webkv/relay"
)

// TestBrowserRowSparse runs row-sparse values ({rows, rowIds}) through the
// JS API in Chromium, on a local store and on a dist_sync store through a
// relay (tests/browser/rowsparse.js holds the checks and MXNet's numbers).
func TestBrowserRowSparse(t *testing.T) {
	integration(t)
	rs, err := relay.NewServer(relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := brServer(t, map[string]http.Handler{"/ws": rs})
	ctx := brBrowser(t)
	var res struct {
		Checks [][3]any `json:"checks"`
	}
	brRunPage(t, ctx, srv.URL+"/rowsparse.html", 2*time.Minute, &res)
	if len(res.Checks) < 14 {
		t.Errorf("%d checks ran, want 14", len(res.Checks))
	}
	for _, c := range res.Checks {
		if ok, _ := c[1].(bool); !ok {
			t.Errorf("%v: %v", c[0], c[2])
		} else {
			t.Logf("ok %v", c[0])
		}
	}
}
