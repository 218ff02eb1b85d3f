//go:build !js && !wasip1

package relay_test

// The attack suite (issue 8): each test runs honest workers through the
// relay alongside an attack and asserts their exact, bit-for-bit sums and
// that none of them had to reconnect. The memory-bounded attacks run
// against a relay process in tests/relay_attack_test.go, where its RSS can
// be measured apart from the test's own.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
	"github.com/webkv/webkv/relay"
	"github.com/webkv/webkv/relay/relaytest"
	"go.uber.org/goleak"
	"nhooyr.io/websocket"
)

// reconnectCounter is a logger that counts the client's reconnections.
type reconnectCounter struct{ n atomic.Int64 }

func (c *reconnectCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *reconnectCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "connection lost") {
		c.n.Add(1)
	}
	return nil
}
func (c *reconnectCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *reconnectCounter) WithGroup(string) slog.Handler      { return c }

// honest runs w's workers on job in the background; wait returns when
// they are done, having checked their values against the single-process
// reference and that none reconnected.
type honest struct {
	t    *testing.T
	job  string
	want [][]float32
	rc   reconnectCounter
	errc chan error
	res  chan *relaytest.Result
	n    int
}

func startHonest(t *testing.T, ctx context.Context, url, job, token string, w relaytest.Workload) *honest {
	t.Helper()
	if w.Seed == 0 {
		w.Seed = rand.Uint64()
	}
	t.Logf("honest job %s: seed %d", job, w.Seed)
	want, err := w.Reference()
	if err != nil {
		t.Fatal(err)
	}
	h := &honest{t: t, job: job, want: want, errc: make(chan error, w.Workers), res: make(chan *relaytest.Result, w.Workers), n: w.Workers}
	for range w.Workers {
		go func() {
			r, err := relaytest.RunWorker(ctx, url, "dist_sync", &w, relay.DialOptions{Job: job, Token: token, Logger: slog.New(&h.rc)})
			if err != nil {
				h.errc <- err
				return
			}
			h.res <- r
		}()
	}
	return h
}

func (h *honest) wait() {
	h.t.Helper()
	for range h.n {
		select {
		case err := <-h.errc:
			h.t.Fatalf("honest worker of %s: %v", h.job, err)
		case r := <-h.res:
			if err := relaytest.Compare(r.Values, h.want); err != nil {
				h.t.Fatalf("honest worker rank %d of %s: %v", r.Rank, h.job, err)
			}
		}
	}
	if n := h.rc.n.Load(); n != 0 {
		h.t.Fatalf("honest workers of %s reconnected %d times", h.job, n)
	}
}

// dialFrom opens a raw websocket to the relay from local address ip (the
// loopback has all of 127/8: an attacker at another address than the
// honest workers), with the token at the upgrade when given.
func dialFrom(ctx context.Context, ip, base, job, token string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	protos := []string{relay.Subprotocol}
	if token != "" {
		protos = append(protos, "webkv.token."+token)
	}
	u := strings.TrimRight(base, "/") + "/ws?job=" + job
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}, Subprotocols: protos, HTTPHeader: hdr})
	if err == nil {
		c.SetReadLimit(-1)
	}
	return c, resp, err
}

// readError reads until the connection ends and returns the last Error
// frame seen (nil if none).
func readError(ctx context.Context, c *websocket.Conn) *wire.Error {
	var werr *wire.Error
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return werr
		}
		var m wire.Msg
		if wire.Decode(b, nil, &m) == nil && m.Type == wire.TypeError {
			werr = wire.ErrorOf(&m)
		}
	}
}

func adminStatus(t *testing.T, u, tok string) relay.Status {
	t.Helper()
	req, _ := http.NewRequest("GET", "http"+strings.TrimPrefix(u, "ws")+"/status", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st relay.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestAttackTakeover: a client that knows only the job token sends Hellos
// with the honest workers' ids (sequential: job/1, job/2) and the largest
// Attempt. Issue 8: the relay resumed it, closed the real worker's
// connection and treated its later Hellos as stale (~950 reconnects in 20 s,
// then removed). Now every such Hello is refused (CodeAuth, only its own
// connection closed) and the honest workers never notice.
func TestAttackTakeover(t *testing.T) {
	_, u := start(t, relay.Config{Tokens: map[string]string{"job": "tok"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h := startHonest(t, ctx, u, "job", "tok", relaytest.Workload{Workers: 2, Rounds: 50, Sizes: []int{64, 3},
		Optimizer: json.RawMessage(`{"name":"sgd","learning_rate":0.1,"momentum":0.9}`), Pause: 10 * time.Millisecond})
	var refused atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, _, err := dialFrom(ctx, "127.0.0.1", u, "job", "tok", nil)
			if err != nil {
				continue
			}
			key := ""
			if i%2 == 1 {
				key = fmt.Sprintf("%032x", rand.Uint64())
			}
			c.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, &wire.Hello{Job: "job", Mode: wire.ModeSync,
				WorkerID: fmt.Sprintf("job/%d", 1+i%2), Attempt: math.MaxUint32, ResumeKey: key}))
			_, b, err := c.Read(ctx)
			var m wire.Msg
			switch {
			case err != nil || wire.Decode(b, nil, &m) != nil:
				t.Errorf("takeover Hello %d: %v, want an error frame", i, err)
			case m.Type == wire.TypeError && m.Code == wire.CodeAuth:
				refused.Add(1)
			case m.Type == wire.TypeError && m.Code == wire.CodeRemoved:
				// The honest workers finished and left.
			default:
				t.Errorf("takeover Hello %d: %v %v (%s): the takeover succeeded", i, m.Type, m.Code, m.Payload)
			}
			c.CloseNow()
		}
	}()
	h.wait()
	close(stop)
	wg.Wait()
	if refused.Load() < 10 {
		t.Fatalf("only %d takeover attempts ran during training", refused.Load())
	}
	t.Logf("%d takeover attempts refused", refused.Load())
}

// TestAttackPreAuthFlood: from another address, hundreds of upgrades
// without a token that ping first or say nothing, and 1,100 "browser"
// upgrades (Origin: the relay's own host) for an unknown job, while honest
// workers join and train. Issue 8: ~300 such connections filled the
// per-job limit (honest workers got HTTP 503) and 1,100 refused browsers
// filled the global one. Now they hold only the unauthenticated budget,
// get closed at their first frame or their Hello deadline, and the honest
// workers (token at the upgrade) are never refused.
func TestAttackPreAuthFlood(t *testing.T) {
	s, u := start(t, relay.Config{Tokens: map[string]string{"job": "tok"}, HelloTimeout: 500 * time.Millisecond,
		MaxConns: 8, MaxConnsPerJob: 4, AdminToken: "adm"})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var closedFirst, closedSilent, refused503, browsers atomic.Int64
	sem := make(chan struct{}, 48) // dials in flight (the listen backlog is finite)
	attack := func(i int) {
		defer wg.Done()
		sem <- struct{}{}
		defer func() { <-sem }()
		c, resp, err := dialFrom(ctx, "127.0.0.2", u, "job", "", nil)
		if err != nil {
			if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
				refused503.Add(1)
			}
			return
		}
		defer c.CloseNow()
		if i%2 == 0 {
			c.Write(ctx, websocket.MessageBinary, wire.AppendHeader(nil, &wire.Header{Type: wire.TypePing}))
			if werr := readError(ctx, c); werr != nil && werr.Code == wire.CodeNotJoined {
				closedFirst.Add(1)
			}
			return
		}
		readError(ctx, c) // says nothing: closed at the Hello deadline
		closedSilent.Add(1)
	}
	host := strings.TrimPrefix(u, "ws://")
	browser := func() {
		defer wg.Done()
		sem <- struct{}{}
		defer func() { <-sem }()
		c, _, err := dialFrom(ctx, "127.0.0.3", u, "nojob", "", http.Header{"Origin": {"http://" + host}})
		if err != nil {
			return // over the unauthenticated budget: HTTP 503
		}
		defer c.CloseNow()
		if werr := readError(ctx, c); werr != nil && werr.Code == wire.CodeAuth {
			browsers.Add(1)
		}
	}
	for i := range 300 {
		wg.Add(1)
		go attack(i)
	}
	for range 1100 {
		wg.Add(1)
		go browser()
	}
	// The honest workers join in the middle of it.
	h := startHonest(t, ctx, u, "job", "tok", relaytest.Workload{Workers: 4, Rounds: 10, Sizes: []int{100}})
	h.wait()
	wg.Wait()
	t.Logf("attackers: %d closed at their ping, %d at the Hello deadline, %d refused (503); browsers refused in-band: %d",
		closedFirst.Load(), closedSilent.Load(), refused503.Load(), browsers.Load())
	if closedFirst.Load() == 0 || closedSilent.Load() == 0 || browsers.Load() == 0 {
		t.Fatal("the attack did not run")
	}
	if st, err := relay.WaitStatus(ctx, s, func(st relay.Status) bool { return st.PreAuth == 0 }); err != nil {
		t.Fatalf("%d unauthenticated connections left after the attack: %v", st.PreAuth, err)
	}
}

// TestAttackOpenRelay: on a relay without tokens, everyone is
// unauthenticated until their Hello; a flood from one address holds at
// most its per-address share, so honest workers elsewhere still join.
func TestAttackOpenRelay(t *testing.T) {
	_, u := start(t, relay.Config{HelloTimeout: time.Second, MaxPreAuth: 64, MaxPreAuthPerAddr: 16})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var held, refused atomic.Int64
	sem := make(chan struct{}, 48)
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, resp, err := dialFrom(ctx, "127.0.0.2", u, "job", "", nil)
			if err != nil {
				if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
					refused.Add(1)
				}
				return
			}
			held.Add(1)
			readError(ctx, c)
			c.CloseNow()
		}()
	}
	t0 := time.Now()
	h := startHonest(t, ctx, u, "job", "", relaytest.Workload{Workers: 3, Rounds: 5, Sizes: []int{10}})
	h.wait()
	t.Logf("honest done after %v", time.Since(t0))
	wg.Wait()
	t.Logf("attack done after %v", time.Since(t0))
	t.Logf("flood: %d held until their Hello deadline, %d refused", held.Load(), refused.Load())
	if refused.Load() == 0 {
		t.Fatal("the per-address budget refused nothing")
	}
}

// TestAttackWant: a Hello asking the job to wait for 2^32-1 workers.
// Issue 8: nobody was ever welcomed, and the value was checkpointed, so
// the job stayed dead after a restart. Now it is refused (CodeLimit) and
// changes nothing.
func TestAttackWant(t *testing.T) {
	dir := t.TempDir()
	s, u := start(t, relay.Config{Tokens: map[string]string{"job": "tok"}, DataDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _, err := dialFrom(ctx, "127.0.0.1", u, "job", "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, &wire.Hello{Job: "job", Mode: wire.ModeSync, Want: math.MaxUint32}))
	if werr := readError(ctx, c); werr == nil || werr.Code != wire.CodeLimit || !strings.Contains(werr.Msg, "want 4294967295") {
		t.Fatalf("Want 2^32-1: %v, want a limit error", werr)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_, u2 := start(t, relay.Config{Tokens: map[string]string{"job": "tok"}, DataDir: dir})
	startHonest(t, ctx, u2, "job", "tok", relaytest.Workload{Workers: 2, Rounds: 3, Sizes: []int{10}}).wait()
}

// TestAttackBudgets: a token holder of one job sends keys over the element
// limit, over its job's byte budget, with 0 values, with long names, and
// an optimizer whose states would not fit. Issue 8: MaxElems was never
// checked (8 keys x 64 MiB took 4.5 GiB) and nothing bounded a job. Each
// gets a clear error code; the honest job on the same relay is exact.
func TestAttackBudgets(t *testing.T) {
	_, u := start(t, relay.Config{Tokens: map[string]string{"job": "tok", "atk": "atk"}, MaxElems: 1 << 20, MaxJobBytes: 6 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h := startHonest(t, ctx, u, "job", "tok", relaytest.Workload{Workers: 2, Rounds: 10, Sizes: []int{1000, 3},
		Optimizer: json.RawMessage(`{"name":"adam","learning_rate":0.01}`)})
	c, _, err := dialFrom(ctx, "127.0.0.2", u, "atk", "atk", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, &wire.Hello{Job: "atk", Mode: wire.ModeSync}))
	expect := func(want wire.Code, m *wire.Msg) {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageBinary, wire.Append(nil, m)); err != nil {
			t.Fatal(err)
		}
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var r wire.Msg
			if wire.Decode(b, nil, &r) != nil || r.Seq != m.Seq {
				continue
			}
			if r.Type != wire.TypeError && want != wire.CodeOK || r.Type == wire.TypeError && r.Code != want {
				t.Fatalf("request %d: %v %v (%s), want code %v", m.Seq, r.Type, r.Code, r.Payload, want)
			}
			return
		}
	}
	init := func(seq, key uint64, n int, name string) *wire.Msg {
		h := wire.Header{Type: wire.TypeInit, Seq: seq, Key: key, DType: wire.DTypeF32, Count: uint32(n), Total: uint32(max(n, 1))}
		if name != "" {
			h.Flags, h.Key = wire.FlagStrKey, wire.StrKeyID(name)
		}
		meta := wire.AppendInitMeta(nil, &wire.InitMeta{Name: name, Shape: []int64{int64(max(n, 1))}})
		return &wire.Msg{Header: h, Payload: append(meta, make([]byte, 4*n)...)}
	}
	expect(wire.CodeLimit, init(1, 1, 1<<20+1, ""))                    // over MaxElems
	expect(wire.CodeBadRequest, init(2, 2, 0, ""))                     // 0 values
	expect(wire.CodeLimit, init(3, 0, 1, strings.Repeat("k", 60<<10))) // a 60 KiB name
	expect(wire.CodeOK, init(4, 3, 1<<20, ""))                         // 4 MiB of 6
	expect(wire.CodeLimit, init(5, 4, 1<<19+1, ""))                    // 2 MiB and 4 bytes more: over
	expect(wire.CodeLimit, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: 6, Key: 0}, Payload: []byte(`{"name":"adam"}`)})
	expect(wire.CodeOK, init(7, 5, 1<<18, "")) // 1 MiB: fits
	h.wait()
}

// TestAttackJobSlots: on an open relay anyone creates jobs. Issue 8: 256
// one-Hello jobs used up -max-jobs for good (never expiring, restored
// after a restart). Now a job holding nothing goes as soon as its last
// worker does, and one holding keys expires after JobExpiry without
// workers, also after a restart; honest jobs get the slots back.
func TestAttackJobSlots(t *testing.T) {
	dir := t.TempDir()
	cfg := relay.Config{MaxJobs: 4, Timeout: 300 * time.Millisecond, Heartbeat: 100 * time.Millisecond, JobExpiry: time.Second, DataDir: dir, AdminToken: "adm"}
	s, u := start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	oneHello := func(job string, withKey bool) {
		c, _, err := dialFrom(ctx, "127.0.0.2", u, job, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		c.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, &wire.Hello{Job: job, Mode: wire.ModeSync}))
		if withKey {
			meta := wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{1}})
			c.Write(ctx, websocket.MessageBinary, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeInit, Seq: 1, Key: 1, DType: wire.DTypeF32, Count: 1, Total: 1}, Payload: append(meta, 0, 0, 0, 0)}))
		}
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var m wire.Msg
			if wire.Decode(b, nil, &m) == nil && (m.Type == wire.TypeWelcome && !withKey || m.Type == wire.TypeAck && m.Seq == 1) {
				return
			}
		}
	}
	waitJobs := func(n int) {
		t.Helper()
		if st, err := relay.WaitStatus(ctx, s, func(st relay.Status) bool { return st.NumJobs == n }); err != nil {
			t.Fatalf("jobs: %d, want %d: %v", st.NumJobs, n, err)
		}
	}
	for i := range 4 {
		oneHello(fmt.Sprintf("empty%d", i), false)
	}
	waitJobs(0) // nothing in them: gone when their workers are
	for i := range 4 {
		oneHello(fmt.Sprintf("keyed%d", i), true)
	}
	waitJobs(4)
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s, u = start(t, cfg)
	if n := adminStatus(t, u, "adm").NumJobs; n != 4 {
		t.Fatalf("%d jobs restored, want 4", n)
	}
	waitJobs(0) // expired: no worker for JobExpiry
	startHonest(t, ctx, u, "job", "", relaytest.Workload{Workers: 2, Rounds: 3, Sizes: []int{10}}).wait()
}

// TestAttackJobNames: job ids that are not printable UTF-8 are refused at
// the upgrade. Issue 8: an invalid-UTF-8 job name reached /metrics.
func TestAttackJobNames(t *testing.T) {
	_, u := start(t, relay.Config{OpenAdmin: true})
	base := "http" + strings.TrimPrefix(u, "ws")
	for _, job := range []string{"%ff%fe", "a%00b", "a%0Ab", strings.Repeat("x", 300)} {
		resp, err := http.Get(base + "/ws?job=" + job)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("job %q: HTTP %d, want 400", job, resp.StatusCode)
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "\xff") || strings.Contains(string(b), `job="`) {
		t.Fatalf("/metrics has a job:\n%s", b)
	}
}

// TestUpgradeTokenReplacesHello: a token given at the upgrade replaces the
// Hello's (relay/doc.go says so; issue 8: peer.authed was set, never read).
func TestUpgradeTokenReplacesHello(t *testing.T) {
	_, u := start(t, relay.Config{Tokens: map[string]string{"job": "tok"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := dialFrom(ctx, "127.0.0.1", u, "job", "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, &wire.Hello{Job: "job", Mode: wire.ModeSync, Token: "not the token"}))
	_, b, err := c.Read(ctx)
	var m wire.Msg
	if err != nil || wire.Decode(b, nil, &m) != nil || m.Type != wire.TypeWelcome {
		t.Fatalf("hello with a wrong token after a good one at the upgrade: %v %v", m.Type, err)
	}
	c.CloseNow()
	// Without one at the upgrade, the Hello's counts.
	c, _, err = dialFrom(ctx, "127.0.0.1", u, "job", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, &wire.Hello{Job: "job", Mode: wire.ModeSync, Token: "not the token"}))
	if werr := readError(ctx, c); werr == nil || werr.Code != wire.CodeAuth {
		t.Fatalf("hello with a wrong token: %v, want an auth error", werr)
	}
}

// TestAdminHandler: the admin handler (for a separate listener) shows
// every job without a token.
func TestAdminHandler(t *testing.T) {
	s, u := start(t, relay.Config{Tokens: map[string]string{"secretjob": "tok"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := dialFrom(ctx, "127.0.0.1", u, "secretjob", "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, &wire.Hello{Job: "secretjob", Mode: wire.ModeSync}))
	c.Read(ctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.AdminHandler()}
	go hs.Serve(ln)
	defer hs.Close()
	for _, path := range []string{"/status", "/metrics"} {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "secretjob") {
			t.Fatalf("admin %s lacks the job:\n%s", path, b)
		}
		resp, err = http.Get("http" + strings.TrimPrefix(u, "ws") + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "secretjob") {
			t.Fatalf("public %s shows the job:\n%s", path, b)
		}
	}
}

// TestManyReconnectsLeakNothing: thousands of connections that join and
// go (with and without a Leave) leave no connection slot, job or
// goroutine behind (issue 8's 69k fast reconnects leaked nothing: keep it
// so).
func TestManyReconnectsLeakNothing(t *testing.T) {
	s, u := start(t, relay.Config{Timeout: 200 * time.Millisecond, Heartbeat: 50 * time.Millisecond, AdminToken: "adm"})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// The server's own goroutines, started before, stay; every
	// connection's must end with it.
	ignore := goleak.IgnoreCurrent()
	n := 1000
	if testing.Short() {
		n = 200
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, _, err := dialFrom(ctx, "127.0.0.1", u, fmt.Sprintf("j%d", i%4), "", nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.CloseNow()
			c.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, &wire.Hello{Job: fmt.Sprintf("j%d", i%4), Mode: wire.ModeSync}))
			c.Read(ctx)
			if i%2 == 0 {
				c.Write(ctx, websocket.MessageBinary, wire.AppendHeader(nil, &wire.Header{Type: wire.TypeLeave, Seq: 1}))
			}
		}()
	}
	wg.Wait()
	st, err := relay.WaitStatus(ctx, s, func(st relay.Status) bool { return st.Connections == 0 && st.NumJobs == 0 })
	if err != nil {
		t.Fatalf("after %d connections: %d connections and %d jobs left: %v", n, st.Connections, st.NumJobs, err)
	}
	// No goroutine has an event to wait for: goleak looks again (with
	// backoff) until the connections' last goroutines are gone, and
	// names the ones that are not.
	if err := goleak.Find(ignore); err != nil {
		t.Fatalf("after %d connections: %v", n, err)
	}
}
