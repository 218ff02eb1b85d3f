//go:build !js && !wasip1

package relay

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/wire"
	"nhooyr.io/websocket"
)

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Issue 11, problem 2: a relay that is not running. The first dial fails
// at once with ErrUnreachable naming the address (it used to retry for
// GiveUp, 2 minutes, then say "connection refused"); the context here is
// far shorter than GiveUp, so a retrying Dial fails the test.
func TestFirstDialUnreachable(t *testing.T) {
	addr := closedAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Dial(ctx, "ws://"+addr, DialOptions{Job: "j", Logger: quietLogger()})
	if !errors.Is(err, kvcore.ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("dial to a closed port: %v; want kvcore.ErrUnreachable naming %s", err, addr)
	}
	if ctx.Err() != nil {
		t.Fatal("the first dial was retried until the context ended")
	}
	_, err = Create(ctx, "dist_sync", "ws://"+addr, DialOptions{Job: "j", Logger: quietLogger()}, nil)
	if !errors.Is(err, kvcore.ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("create on a closed port: %v", err)
	}
	t.Logf("%v", err)
	// Asked to wait, it keeps trying until the context ends.
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer wcancel()
	_, err = Dial(wctx, "ws://"+addr, DialOptions{Job: "j", WaitForRelay: true, Logger: quietLogger()})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForRelay: %v; want the context's end", err)
	}
}

// Issue 11: relay.Create of a type that is not dist is an error, not a
// local store that silently ignores the relay.
func TestCreateNotDist(t *testing.T) {
	for _, typ := range []string{"local", "device", "nonsense"} {
		s, err := Create(context.Background(), typ, "ws://127.0.0.1:1", DialOptions{Job: "j"}, nil)
		if err == nil {
			s.Close()
			t.Fatalf("relay.Create(%q) succeeded", typ)
		}
		if !strings.Contains(err.Error(), typ) || !strings.Contains(err.Error(), "dist") {
			t.Errorf("relay.Create(%q): %v; want an error naming the type and the dist types", typ, err)
		}
		if errors.Is(err, kvcore.ErrUnreachable) {
			t.Errorf("relay.Create(%q) dialed: %v", typ, err)
		}
	}
}

// Issue 11, problem 6: a wrong token or an unknown job from Go is
// kvcore.ErrAuth with the relay's reason, the same words a browser reads
// (it used to be "expected handshake response status code 101 but got
// 403", not ErrAuth).
func TestNativeRefusalIsErrAuth(t *testing.T) {
	_, u := startServer(t, Config{Tokens: map[string]string{"a": "ta"}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	origin := http.Header{"Origin": {strings.Replace(u, "ws://", "http://", 1)}}
	for _, tc := range []struct{ job, token, want string }{
		{"a", "wrong", `webkv relay refused the connection: wrong or missing token for job "a"`},
		{"zzz", "ta", `webkv relay refused the connection: unknown job "zzz"`},
	} {
		_, err := Create(ctx, "dist_sync", u, DialOptions{Job: tc.job, Token: tc.token, Logger: quietLogger()}, nil)
		if !errors.Is(err, kvcore.ErrAuth) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "status code 101") {
			t.Fatalf("native %+v: %v; want kvcore.ErrAuth saying %q", tc, err, tc.want)
		}
		// The browser path (an Origin: the refusal inside the websocket).
		tr, derr := Dial(ctx, u, DialOptions{Job: tc.job, Token: tc.token, Header: origin, Logger: quietLogger()})
		if derr != nil {
			t.Fatal(derr)
		}
		_, berr := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: tr})
		if !errors.Is(berr, kvcore.ErrAuth) || !strings.Contains(berr.Error(), tc.want) {
			t.Fatalf("browser %+v: %v", tc, berr)
		}
		// The same words from the wire error on.
		tail := func(e error) string {
			s := e.Error()
			return s[max(0, strings.Index(s, "wire: auth: ")):]
		}
		if tail(err) != tail(berr) {
			t.Errorf("native and browser texts differ:\n %s\n %s", tail(err), tail(berr))
		}
	}
}

// Issue 11, problem 1: a page from an origin the relay does not allow
// learns why: the upgrade is accepted, a seq-0 Error with CodeOrigin says
// which origin and how to allow it, and the close code is 4403 with that
// reason (a page without webkv's runtime reads CloseEvent.code/.reason).
// It used to be an HTTP 403, which browsers hide: the page retried 30 s
// and said "use of closed network connection".
func TestOriginRefusalReachesPage(t *testing.T) {
	_, u := startServer(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bad := http.Header{"Origin": {"http://127.0.0.1:8000"}}
	c, _, err := rawDial(t, ctx, u, "j", "", bad)
	if err != nil {
		t.Fatalf("the refusal should come inside the websocket: %v", err)
	}
	m := recvMsg(t, ctx, c)
	want := `request Origin "http://127.0.0.1:8000" is not allowed (start the relay with -origins 127.0.0.1:8000, or -origins 127.0.0.1 for any port)`
	if m.Type != wire.TypeError || m.Code != wire.CodeOrigin || m.Seq != 0 || !strings.Contains(string(m.Payload), want) {
		t.Fatalf("got %v %v %q; want a seq-0 origin error saying %q", m.Type, m.Code, m.Payload, want)
	}
	// Without a client close, the relay closes with 4403 after its linger.
	_, _, err = c.Read(ctx)
	if st := websocket.CloseStatus(err); st != closeOrigin {
		t.Fatalf("close: %v (status %d); want %d", err, st, closeOrigin)
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || !strings.HasPrefix(ce.Reason, "origin: request Origin") {
		t.Fatalf("close reason %q", ce.Reason)
	}
	// A dist store on such a link fails at once with kvcore.ErrOrigin.
	tr, err := Dial(ctx, u, DialOptions{Job: "j", Header: bad, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: tr})
	if !errors.Is(err, kvcore.ErrOrigin) || !strings.Contains(err.Error(), want) {
		t.Fatalf("create from a refused origin: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the refusal was retried until the context ended")
	}
}

// Issue 11, problem 1: -origins with a host and no port allows every port
// of that host (the help text's style, "-origins 127.0.0.1", used to
// refuse 127.0.0.1:8000); with a port, only that port.
func TestOriginsHostWithoutPort(t *testing.T) {
	_, u := startServer(t, Config{Origins: []string{"127.0.0.1", "localhost:8000", "*.example.com", "[::1]"}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for origin, ok := range map[string]bool{
		"http://127.0.0.1:8000":        true,
		"http://127.0.0.1":             true,
		"https://127.0.0.1:9443":       true,
		"http://localhost:8000":        true,
		"http://localhost:8001":        false,
		"https://a.example.com:444":    true,
		"https://example.com":          false,
		"http://[::1]:8000":            true,
		"http://127.0.0.2:8000":        false,
		"http://127.0.0.1.evil.com:80": false,
	} {
		c, _, err := rawDial(t, ctx, u, "j", "", http.Header{"Origin": {origin}})
		if err != nil {
			t.Fatalf("%s: %v", origin, err)
		}
		sendMsg(t, ctx, c, hello("j", ""))
		m := recvMsg(t, ctx, c)
		switch {
		case ok && m.Type != wire.TypeWelcome:
			t.Errorf("%s: got %v %v %q, want a welcome", origin, m.Type, m.Code, m.Payload)
		case !ok && (m.Type != wire.TypeError || m.Code != wire.CodeOrigin):
			t.Errorf("%s: got %v %v, want an origin refusal", origin, m.Type, m.Code)
		}
		c.CloseNow()
	}
}

// Issue 11, problem 3: the README's recipe, three workers of one job.
// With a count, every worker says "of 3" (they used to say 1, 2 and 3);
// a worker asking for another count is refused, saying the job's.
func TestWorkerCount(t *testing.T) {
	for _, relayCount := range []int{0, 3} {
		_, u := startServer(t, Config{MinWorkers: relayCount})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		type res struct {
			s   *kvcore.Store
			err error
		}
		ch := make(chan res, 3)
		for i := range 3 {
			want := 3
			if relayCount > 0 && i > 0 {
				want = 0 // takes the relay's
			}
			go func() {
				s, err := Create(ctx, "dist_sync", u, DialOptions{Job: "mnist", Workers: want, Logger: quietLogger()}, nil)
				ch <- res{s, err}
			}()
		}
		var stores []*kvcore.Store
		for range 3 {
			r := <-ch
			if r.err != nil {
				t.Fatal(r.err)
			}
			stores = append(stores, r.s)
		}
		for _, s := range stores {
			if s.NumWorkers() != 3 {
				t.Errorf("relay -workers %d: rank %d of %d, want of 3", relayCount, s.Rank(), s.NumWorkers())
			}
		}
		_, err := Create(ctx, "dist_sync", u, DialOptions{Job: "mnist", Workers: 2, Logger: quietLogger()}, nil)
		if !errors.Is(err, kvcore.ErrWorkerCount) || !strings.Contains(err.Error(), "has 3 workers") {
			t.Errorf("relay -workers %d: a worker asking for 2: %v", relayCount, err)
		}
		// One leaves: the others agree on 2 (an elastic job averages over
		// who is there).
		stores[0].Close()
		errc := make(chan error, 2)
		for _, s := range stores[1:] {
			go func() { errc <- s.Barrier(ctx) }()
		}
		for range 2 {
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range stores[1:] {
			if n := s.NumWorkers(); n != 2 {
				t.Errorf("after a leave: rank %d sees %d workers, want 2", s.Rank(), n)
			}
		}
		for _, s := range stores[1:] {
			s.Close()
		}
	}
}
