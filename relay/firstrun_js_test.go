//go:build js && webkvpeer

package relay

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
)

// TestConformanceJSUnreachable (named to run with TestConformanceJS in
// node and in Chromium, tests/relayconn_browser_test.go): in a page, a
// first dial to a relay that is not there fails at once with
// kvcore.ErrUnreachable naming the address (issue 11: it used to retry
// 30 s and say "use of closed network connection").
func TestConformanceJSUnreachable(t *testing.T) {
	const addr = "127.0.0.1:9" // the discard port: nothing listens on it here
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Dial(ctx, "ws://"+addr, DialOptions{Job: "j"})
	if !errors.Is(err, kvcore.ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("dial to %s: %v; want kvcore.ErrUnreachable naming it", addr, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the first dial was retried until the context ended")
	}
	t.Logf("%v", err)
}
