//go:build !js && !wasip1

package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
	"nhooyr.io/websocket"
)

type connLog struct {
	mu    sync.Mutex
	got   []transport.State
	att   []int
	err   []error
	added chan struct{} // a report came (capacity 1)
}

func newConnLog() *connLog { return &connLog{added: make(chan struct{}, 1)} }

func (l *connLog) fn(st transport.Status) {
	l.mu.Lock()
	l.got, l.att, l.err = append(l.got, st.State), append(l.att, st.Attempt), append(l.err, st.Err)
	l.mu.Unlock()
	select {
	case l.added <- struct{}{}:
	default:
	}
}

func (l *connLog) waitFor(t *testing.T, st transport.State) (attempt int, err error) {
	t.Helper()
	bound := time.NewTimer(time.Minute) // against hanging, not a margin
	defer bound.Stop()
	for {
		l.mu.Lock()
		for j, s := range l.got {
			if s == st {
				a, e := l.att[j], l.err[j]
				l.mu.Unlock()
				return a, e
			}
		}
		l.mu.Unlock()
		select {
		case <-l.added:
		case <-bound.C:
			t.Fatalf("no %v report within a minute", st)
		}
	}
}

// The client reports a lost connection, each failed reconnection attempt
// and giving up to its Watch callback (what kvcore turns into events).
func TestWatchConn(t *testing.T) {
	e := newEchoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, e.url, DialOptions{Job: "j", ReconnectMin: time.Millisecond, ReconnectMax: 10 * time.Millisecond, GiveUp: 300 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var _ transport.Watcher = c
	log := newConnLog()
	c.Watch(log.fn)
	if err := c.sendMsg(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.recvMsg(ctx); err != nil {
		t.Fatal(err)
	}
	e.dropAll()
	if _, err := c.recvMsg(ctx); !errors.Is(err, errReconnected) {
		t.Fatalf("Recv after a drop: %v", err)
	}
	if a, err := log.waitFor(t, transport.Reconnecting); a != 0 || err == nil {
		t.Errorf("first report: attempt %d, err %v; want attempt 0 with the read error", a, err)
	}
	// Now the relay is gone for good: failed attempts, then the end.
	c.mu.Lock()
	c.url = "ws://127.0.0.1:1/ws?job=j"
	c.mu.Unlock()
	e.waitConns(t, 1) // the replacement connection, or dropAll misses it
	e.dropAll()
	if _, err := c.recvMsg(ctx); err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("Recv: %v, want a give-up error", err)
	}
	_, lost := log.waitFor(t, transport.Lost)
	if lost == nil || !strings.Contains(lost.Error(), "gave up") {
		t.Errorf("lost report error %v", lost)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	n := 0
	for i, s := range log.got {
		if s == transport.Reconnecting && log.att[i] > 0 {
			n++
			if log.err[i] == nil {
				t.Errorf("attempt %d reported without its error", log.att[i])
			}
		}
	}
	if n == 0 {
		t.Errorf("no failed attempt reported: %v %v", log.got, log.att)
	}
}

// A browser (a request with an Origin) with a wrong or missing token gets a
// websocket carrying an auth Error instead of an HTTP 403, which browsers
// hide from pages; a dist store on such a link fails at once with the
// relay's reason instead of retrying until its timeout.
func TestBrowserRefusal(t *testing.T) {
	_, u := startServer(t, Config{Tokens: map[string]string{"a": "ta"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	origin := http.Header{"Origin": {strings.Replace(u, "ws://", "http://", 1)}}
	for _, tc := range []struct{ job, token, want string }{
		{"a", "wrong", "wrong or missing token"},
		{"a", "", "missing token"},
		{"zzz", "ta", "unknown job"},
	} {
		c, _, err := rawDial(t, ctx, u, tc.job, tc.token, origin)
		if err != nil {
			t.Fatalf("%+v: the refusal should come inside the websocket: %v", tc, err)
		}
		m := recvMsg(t, ctx, c)
		if m.Type != wire.TypeError || m.Code != wire.CodeAuth || m.Seq != 0 || !strings.Contains(string(m.Payload), tc.want) {
			t.Fatalf("%+v: got %v %v %q, want a seq-0 auth error saying %q", tc, m.Type, m.Code, m.Payload, tc.want)
		}
		c.CloseNow()
	}
	// Native clients (no Origin) still get the HTTP refusal.
	if _, resp, err := rawDial(t, ctx, u, "a", "wrong", nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("native wrong token: err %v; want HTTP 403", err)
	}
	// A store on a refused browser-like link fails fast, saying why.
	start := time.Now()
	tr, err := Dial(ctx, u, DialOptions{Job: "a", Token: "wrong", Header: origin, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: tr})
	if !errors.Is(err, kvcore.ErrAuth) || !strings.Contains(err.Error(), "wrong or missing token") {
		t.Fatalf("create with a wrong token: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("refusal took %v: the client retried instead of failing at once", d)
	}
	t.Logf("refused in %v: %v", time.Since(start), err)
}

// The relay passes psm's membership notices on: a worker hears of joins
// and leaves as they happen.
func TestMembershipNotices(t *testing.T) {
	_, u := startServer(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	notice := func(c *websocket.Conn) []int {
		t.Helper()
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			var m wire.Msg
			if err := wire.Decode(b, nil, &m); err != nil {
				t.Fatal(err)
			}
			if wire.IsMembers(&m) {
				r, err := wire.DecodeMembers(&m, nil)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
		}
	}
	join := func() *websocket.Conn {
		c, _, err := rawDial(t, ctx, u, "m", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		sendMsg(t, ctx, c, hello("m", ""))
		return c
	}
	a := join()
	if r := notice(a); fmt.Sprint(r) != "[0]" {
		t.Fatalf("first worker: members %v", r)
	}
	b := join()
	if r := notice(a); fmt.Sprint(r) != "[0 1]" {
		t.Fatalf("after a join: members %v", r)
	}
	if r := notice(b); fmt.Sprint(r) != "[0 1]" {
		t.Fatalf("joiner: members %v", r)
	}
	sendMsg(t, ctx, b, wire.AppendHeader(nil, &wire.Header{Type: wire.TypeLeave, Seq: 1}))
	if r := notice(a); fmt.Sprint(r) != "[0]" {
		t.Fatalf("after a leave: members %v", r)
	}
}
