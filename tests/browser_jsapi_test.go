//go:build !js && !wasip1

package tests

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/relay"
)

// TestBrowserJSAPI checks issue 11's item 8 in Chromium: webkv.js leaves no
// global behind (wasm, Go, fs, __webkv*), rejects with a real WebKVError
// class (instanceof) carrying a code, accepts optimizer names as strings,
// delivers 'connection' and the first 'membership' event to each of two
// stores created by one Promise.all (and the membership change a store saw
// before the page listened), and writes nothing to the console
// unless asked to (load({debug: true})).
func TestBrowserJSAPI(t *testing.T) {
	integration(t)
	rs, err := relay.NewServer(relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := brServer(t, map[string]http.Handler{"/ws": rs})
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	// A relay on another origin that allows only example.com.
	strict, err := relay.NewServer(relay.Config{Origins: []string{"example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	strictSrv := httptest.NewServer(strict)
	t.Cleanup(strictSrv.Close)
	strictURL := "ws" + strings.TrimPrefix(strictSrv.URL, "http") + "/ws"
	type rej struct {
		OK               bool
		Name, Code       string
		Message          string
		IsError, IsWebKV bool
	}
	type result struct {
		Fatal                 string
		UnknownKey, BadArg    rej
		SGD, Adam, JSON, Nope rej
		BadRule               rej
		Traffic               struct{ Sent, Received int64 }
		After, Sum            []float64
		Events                []struct {
			Connection []string
			Membership []int
		}
		Ranks               []int
		Late                []int
		Leaked              []string
		Unreachable, Origin struct {
			rej
			MS float64
		}
	}
	for _, debug := range []bool{false, true} {
		t.Run(fmt.Sprintf("debug=%v", debug), func(t *testing.T) {
			ctx := brBrowser(t)
			var mu sync.Mutex
			var console []string
			cctx, stop := context.WithCancel(ctx)
			defer stop()
			go func() {
				for m, err := range chromedp.Console(cctx) {
					if err != nil {
						return
					}
					// Calls of the console API and exceptions: what a page's
					// code writes (the browser's own log has a Source).
					if m.Source == "" {
						mu.Lock()
						console = append(console, string(m.Type)+": "+m.Text)
						mu.Unlock()
					}
				}
			}()
			d := "0"
			if debug {
				d = "1"
			}
			var res result
			brRunPage(t, ctx, fmt.Sprintf("%s/jsapi.html?url=%s&strict=%s&job=jsapi%s&debug=%s", srv.URL, wsURL, strictURL, d, d), 2*time.Minute, &res)
			if res.Fatal != "" {
				t.Fatalf("page failed: %s", res.Fatal)
			}
			for name, r := range map[string]rej{"pull of an unknown key": res.UnknownKey, "push of a string": res.BadArg, "setOptimizer('nope')": res.Nope} {
				if r.OK || !r.IsError || !r.IsWebKV || r.Name != "WebKVError" || r.Code == "" || r.Code == "ERROR" {
					t.Errorf("%s: %+v, want a rejection that is instanceof Error and WebKVError with a code", name, r)
				}
			}
			if res.UnknownKey.Code != "UNKNOWN_KEY" || res.BadArg.Code != "BAD_ARGUMENT" || res.Nope.Code != "BAD_OPTIMIZER" {
				t.Errorf("codes %q %q %q, want UNKNOWN_KEY BAD_ARGUMENT BAD_OPTIMIZER", res.UnknownKey.Code, res.BadArg.Code, res.Nope.Code)
			}
			for name, r := range map[string]rej{"'sgd'": res.SGD, "'adam'": res.Adam, "JSON string": res.JSON} {
				if !r.OK {
					t.Errorf("setOptimizer(%s) rejected: %+v", name, r)
				}
			}
			// nag (momentum 0.9, lr 0.01 by default) from zeros with grad g: w = -lr*(g + 0.9*g)... only the sign matters here.
			if len(res.After) != 4 || res.After[0] >= 0 || res.After[3] >= res.After[0] {
				t.Errorf("after an update with the named optimizer: %v", res.After)
			}
			for _, w := range res.Sum {
				if w != 1.5 {
					t.Errorf("dist_sync of two stores pushing 1 and 2 after setAggregate('mean'): %v, want 1.5 everywhere", res.Sum)
					break
				}
			}
			// a's pushes (2 x 32 bytes of values with their headers) and
			// its pull's answer, each in a masked or plain frame.
			if tr := res.Traffic; tr.Sent < 2*(32+6) || tr.Received < 32+2 {
				t.Errorf("traffic of a store after init, push and pull of 8 floats: %+v", tr)
			}
			if r := res.BadRule; r.OK || !r.IsWebKV || !strings.Contains(r.Message, "nope") {
				t.Errorf("setAggregate('nope'): %+v, want a WebKVError naming the rule", r)
			}
			if len(res.Ranks) != 2 || res.Ranks[0] != 0 || res.Ranks[1] != 1 {
				t.Errorf("ranks %v", res.Ranks)
			}
			for i, ev := range res.Events {
				if len(ev.Connection) == 0 || ev.Connection[0] != "connected" || len(ev.Membership) == 0 {
					t.Errorf("store %d of Promise.all: events %+v, want 'connected' and a membership event", i, ev)
				}
			}
			if len(res.Late) == 0 || res.Late[len(res.Late)-1] != 2 {
				t.Errorf("membership events of a store whose listener came after a worker joined: %v, want the last to say 2 workers", res.Late)
			}
			if len(res.Events) != 2 {
				t.Errorf("events of %d stores", len(res.Events))
			}
			if u := res.Unreachable; u.OK || u.Code != "UNREACHABLE" || !u.IsWebKV || !strings.Contains(u.Message, "127.0.0.1:9") || u.MS > 10000 {
				t.Errorf("create against nothing: %+v, want code UNREACHABLE naming 127.0.0.1:9 well within 10 s", u)
			}
			if o := res.Origin; o.OK || o.Code != "ORIGIN" || !o.IsWebKV || !strings.Contains(o.Message, "-origins") || !strings.Contains(o.Message, "127.0.0.1") {
				t.Errorf("create against a relay refusing the origin: %+v, want code ORIGIN with the relay's reason", o)
			}
			t.Logf("UNREACHABLE after %.0f ms: %s", res.Unreachable.MS, res.Unreachable.Message)
			t.Logf("ORIGIN after %.0f ms: %s", res.Origin.MS, res.Origin.Message)
			if len(res.Leaked) != 0 {
				t.Errorf("globals left on the page: %q", res.Leaked)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !debug && len(console) != 0:
				t.Errorf("webkv wrote to the console without debug: %q", console)
			case debug && !strings.Contains(strings.Join(console, "\n"), "webkv: relay shard"):
				t.Errorf("with debug, no relay connection line on the console: %q", console)
			}
		})
	}
}

// TestJSCommandHeads checks that webkv.js's command heads are the relay's.
func TestJSCommandHeads(t *testing.T) {
	src, err := os.ReadFile("../wasm/js/webkv.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`const CMD_AGGREGATE = (\d+);`).FindSubmatch(src)
	if m == nil {
		t.Fatal("webkv.js defines no CMD_AGGREGATE")
	}
	if n, _ := strconv.Atoi(string(m[1])); n != psm.CmdAggregate {
		t.Errorf("webkv.js CMD_AGGREGATE = %d, psm.CmdAggregate = %d", n, psm.CmdAggregate)
	}
}
