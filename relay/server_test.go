//go:build !js && !wasip1

package relay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
	"nhooyr.io/websocket"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startServer runs a relay on 127.0.0.1:0 until the test ends.
func startServer(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	return startHooked(t, cfg, nil)
}

// startHooked is startServer with test hooks set before it serves.
func startHooked(t testing.TB, cfg Config, hooks *testHooks) (*Server, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.hooks = hooks
	u, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s, u
}

// rawDial opens a websocket to the relay without the Conn wrapper.
func rawDial(t testing.TB, ctx context.Context, base, job, token string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	u, err := wsURL(base, job, "")
	if err != nil {
		t.Fatal(err)
	}
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: subprotocols(token), HTTPHeader: hdr})
	if err == nil {
		c.SetReadLimit(-1)
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

func sendMsg(t testing.TB, ctx context.Context, c *websocket.Conn, b []byte) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageBinary, b); err != nil {
		t.Fatal(err)
	}
}

// recvMsg reads the next message, skipping membership notices (sent
// whenever workers join or leave; TestMembershipNotices checks them).
func recvMsg(t testing.TB, ctx context.Context, c *websocket.Conn) *wire.Msg {
	t.Helper()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m wire.Msg
		if err := wire.Decode(b, nil, &m); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !wire.IsMembers(&m) {
			return &m
		}
	}
}

func hello(job, token string) []byte {
	return wire.AppendHello(nil, &wire.Hello{Job: job, Role: "worker", Token: token, Mode: wire.ModeSync})
}

// joinRaw dials job as a raw websocket and joins it (Hello, Welcome).
func joinRaw(t testing.TB, ctx context.Context, u, job string) *websocket.Conn {
	t.Helper()
	c, _, err := rawDial(t, ctx, u, job, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sendMsg(t, ctx, c, hello(job, ""))
	if m := recvMsg(t, ctx, c); m.Type != wire.TypeWelcome {
		t.Fatalf("join %s: %v %v", job, m.Type, wire.ErrorOf(m))
	}
	return c
}

// expectClosed reads until the connection ends and returns the error frame
// seen before the close (nil if none).
func expectClosed(t testing.TB, ctx context.Context, c *websocket.Conn) *wire.Error {
	t.Helper()
	var werr *wire.Error
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal("connection not closed by the relay")
			}
			return werr
		}
		var m wire.Msg
		if wire.Decode(b, nil, &m) == nil && m.Type == wire.TypeError {
			werr = wire.ErrorOf(&m)
		}
	}
}

func TestHelloWelcome(t *testing.T) {
	_, u := startServer(t, Config{Tokens: map[string]string{"a": "ta"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := rawDial(t, ctx, u, "a", "ta", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subprotocol() != Subprotocol {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	sendMsg(t, ctx, c, hello("a", "ta"))
	m := recvMsg(t, ctx, c)
	if m.Type != wire.TypeWelcome {
		t.Fatalf("got %v (%v), want welcome", m.Type, wire.ErrorOf(m))
	}
	w, err := wire.DecodeWelcome(m.Payload, nil)
	if err != nil || w.Rank != 0 || w.NumWorkers != 1 {
		t.Fatalf("welcome %+v, %v", w, err)
	}
}

func TestAuth(t *testing.T) {
	_, u := startServer(t, Config{Tokens: map[string]string{"a": "ta", "b": "tb"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Wrong token at upgrade: refused before the websocket exists.
	if _, resp, err := rawDial(t, ctx, u, "a", "tb", nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("wrong token: err %v, resp %v; want HTTP 403", err, resp)
	}
	// Unknown job.
	if _, resp, err := rawDial(t, ctx, u, "zzz", "", nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unknown job: err %v; want HTTP 403", err)
	}
	// Token in the query.
	c, _, err := websocket.Dial(ctx, strings.Replace(u, "ws://", "ws://", 1)+"/ws?job=b&token=tb", nil)
	if err != nil {
		t.Fatalf("query token: %v", err)
	}
	c.CloseNow()
	// No token at upgrade: the Hello must carry it.
	c, _, err = rawDial(t, ctx, u, "a", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sendMsg(t, ctx, c, hello("a", "wrong"))
	if werr := expectClosed(t, ctx, c); werr == nil || werr.Code != wire.CodeAuth {
		t.Fatalf("hello with a wrong token: %v, want an auth error then close", werr)
	}
	// A Hello for another job than the URL's.
	c, _, err = rawDial(t, ctx, u, "a", "ta", nil)
	if err != nil {
		t.Fatal(err)
	}
	sendMsg(t, ctx, c, hello("b", "tb"))
	if werr := expectClosed(t, ctx, c); werr == nil || werr.Code != wire.CodeBadRequest {
		t.Fatalf("hello for another job: %v", werr)
	}
	// Anything but a Hello first closes the connection.
	for _, first := range [][]byte{
		wire.AppendHeader(nil, &wire.Header{Type: wire.TypePull, Seq: 1, Key: 3}),
		wire.AppendHeader(nil, &wire.Header{Type: wire.TypePing}),
	} {
		c, _, err = rawDial(t, ctx, u, "a", "ta", nil)
		if err != nil {
			t.Fatal(err)
		}
		sendMsg(t, ctx, c, first)
		if werr := expectClosed(t, ctx, c); werr == nil || werr.Code != wire.CodeNotJoined {
			t.Fatalf("%v before the hello: %v, want a not-joined error and a close", first[3], werr)
		}
	}
}

func TestOrigin(t *testing.T) {
	_, u := startServer(t, Config{Origins: []string{"good.example"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := rawDial(t, ctx, u, "j", "", http.Header{"Origin": {"https://evil.example"}})
	if err != nil {
		t.Fatalf("bad origin: %v; want the refusal inside the websocket (TestOriginRefusalReachesPage)", err)
	}
	if m := recvMsg(t, ctx, c); m.Type != wire.TypeError || m.Code != wire.CodeOrigin {
		t.Fatalf("bad origin: got %v %v, want an origin refusal", m.Type, m.Code)
	}
	if _, _, err := rawDial(t, ctx, u, "j", "", http.Header{"Origin": {"https://good.example"}}); err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	if _, _, err := rawDial(t, ctx, u, "j", "", nil); err != nil {
		t.Fatalf("no origin (native client): %v", err)
	}
}

func TestBadFrames(t *testing.T) {
	_, u := startServer(t, Config{MaxMessage: 1 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A healthy worker of the same job must not notice the others' trouble.
	good := joinRaw(t, ctx, u, "j")
	big := wire.AppendHeader(nil, &wire.Header{Type: wire.TypePush, DType: wire.DTypeF32, Count: 1, Total: 1, PLen: 1<<30 - 8})
	cases := []struct {
		name string
		msg  []byte
		typ  websocket.MessageType
		code wire.Code
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n and then some more bytes to pass 56 bytes of header"), websocket.MessageBinary, wire.CodeBadFrame},
		{"short", []byte{0x77, 0x6b, 1}, websocket.MessageBinary, wire.CodeBadFrame},
		{"text", []byte("hello"), websocket.MessageText, wire.CodeBadFrame},
		{"version", append([]byte{0x77, 0x6b, 9}, make([]byte, 53)...), websocket.MessageBinary, wire.CodeVersion},
		{"announced-too-big", big, websocket.MessageBinary, wire.CodeLimit},
		{"truncated", wire.AppendHeader(nil, &wire.Header{Type: wire.TypePush, DType: wire.DTypeF32, Count: 4, Total: 4, PLen: 16}), websocket.MessageBinary, wire.CodeBadFrame},
		{"trailing", append(wire.AppendHeader(nil, &wire.Header{Type: wire.TypePing}), 1, 2, 3), websocket.MessageBinary, wire.CodeBadFrame},
		{"bad-hello", append(wire.AppendHeader(nil, &wire.Header{Type: wire.TypeHello, PLen: 4}), 0xff, 0xff, 0xff, 0xff), websocket.MessageBinary, wire.CodeBadFrame},
	}
	for _, tc := range cases {
		c, _, err := rawDial(t, ctx, u, "j", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Write(ctx, tc.typ, tc.msg); err != nil {
			t.Fatal(err)
		}
		werr := expectClosed(t, ctx, c)
		if werr == nil || werr.Code != tc.code {
			t.Errorf("%s: got error frame %v, want code %v", tc.name, werr, tc.code)
		}
	}
	// A real message over the limit, honestly announced: refused from its
	// header, before the relay buffers its payload.
	c, _, err := rawDial(t, ctx, u, "j", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	over := make([]byte, 2<<20)
	copy(over, wire.AppendHeader(nil, &wire.Header{Type: wire.TypePing, PLen: 2<<20 - wire.HeaderSize}))
	_ = c.Write(ctx, websocket.MessageBinary, over)
	if werr := expectClosed(t, ctx, c); werr == nil || werr.Code != wire.CodeLimit {
		t.Errorf("oversized message: %v, want a limit error", werr)
	}
	// The good worker still works.
	sendMsg(t, ctx, good, wire.AppendHeader(nil, &wire.Header{Type: wire.TypePing}))
	if m := recvMsg(t, ctx, good); m.Type != wire.TypePong {
		t.Fatalf("good worker after the bad ones: %v", m.Type)
	}
}

func TestMetricsStatus(t *testing.T) {
	s, u := startServer(t, Config{AdminToken: "adm"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := rawDial(t, ctx, u, "job-x", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sendMsg(t, ctx, c, hello("job-x", ""))
	recvMsg(t, ctx, c)
	httpURL := "http" + strings.TrimPrefix(u, "ws")
	get := func(path, tok string) string {
		req, _ := http.NewRequest("GET", httpURL+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body)
	}
	body := get("/metrics", "adm")
	for _, want := range []string{`webkv_live_workers{job="job-x"} 1`, `webkv_messages_in_total{job="job-x"} 0`, "# TYPE webkv_round_seconds histogram", "webkv_relay_connections 1", `webkv_keys{job="job-x"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	var st Status
	if err := json.Unmarshal([]byte(get("/status", "adm")), &st); err != nil || len(st.Jobs) != 1 || st.Jobs[0].Job != "job-x" || st.Jobs[0].LiveWorkers != 1 || st.Jobs[0].Mode != "sync" {
		t.Fatalf("/status: %+v, %v", st, err)
	}
	// Without the admin token (or with a wrong one): relay-wide figures,
	// no job names.
	for _, tok := range []string{"", "wrong"} {
		if body := get("/metrics", tok); strings.Contains(body, "job-x") || !strings.Contains(body, "webkv_relay_connections 1") || !strings.Contains(body, "webkv_relay_jobs 1") {
			t.Errorf("/metrics with token %q shows job names or lacks the relay's figures:\n%s", tok, body)
		}
		if body := get("/status", tok); strings.Contains(body, "job-x") || !strings.Contains(body, `"num_jobs": 1`) {
			t.Errorf("/status with token %q shows job names or lacks the count:\n%s", tok, body)
		}
	}
	// Mounting the browser app.
	s.Handle("/app/", http.StripPrefix("/app", http.FileServerFS(fstestFS())))
	if body := get("/app/index.html", ""); body != "hi" {
		t.Fatalf("mounted handler served %q", body)
	}
}

// TestConnectionLimits: authenticated connections (a token at the
// upgrade) take the global and per-job slots; jobs are created only by a
// well-formed Hello and capped by MaxJobs.
func TestConnectionLimits(t *testing.T) {
	s, u := startServer(t, Config{Tokens: map[string]string{"a": "ta", "b": "tb", "c": "tc"}, MaxConnsPerJob: 2, MaxConns: 4, MaxJobs: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(job, tok string) *websocket.Conn {
		c, _, err := rawDial(t, ctx, u, job, tok, nil)
		if err != nil {
			t.Fatalf("job %s: %v", job, err)
		}
		return c
	}
	for i := 0; i < 2; i++ {
		c := dial("a", "ta")
		sendMsg(t, ctx, c, hello("a", ""))
		if m := recvMsg(t, ctx, c); m.Type != wire.TypeWelcome {
			t.Fatalf("join a: %v", m.Type)
		}
	}
	if _, resp, err := rawDial(t, ctx, u, "a", "ta", nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection of a job: %v; want HTTP 503", err)
	}
	b := dial("b", "tb")
	sendMsg(t, ctx, b, hello("b", ""))
	if m := recvMsg(t, ctx, b); m.Type != wire.TypeWelcome {
		t.Fatalf("join b: %v", m.Type)
	}
	c := dial("c", "tc") // the fourth connection
	sendMsg(t, ctx, c, hello("c", ""))
	if werr := expectClosed(t, ctx, c); werr == nil || werr.Code != wire.CodeLimit || !strings.Contains(werr.Msg, "too many jobs") {
		t.Fatalf("a third job: %v; want a limit error", werr)
	}
	// The refused connection's slot comes back when its handler returns,
	// which may be after its close frame reached c.
	if st, err := WaitStatus(ctx, s, func(st Status) bool { return st.Connections == 3 }); err != nil {
		t.Fatalf("the refused job's connection still holds its slot: %d connections: %v", st.Connections, err)
	}
	dial("b", "tb")
	if _, resp, err := rawDial(t, ctx, u, "b", "tb", nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("fifth connection in all: %v; want HTTP 503", err)
	}
}

// TestPreAuthSlots: connections without a token at the upgrade hold
// slots of their own budget (in total and per address) until their Hello
// is accepted, then move to the job's.
func TestPreAuthSlots(t *testing.T) {
	s, u := startServer(t, Config{MaxPreAuth: 3, MaxPreAuthPerAddr: 2, HelloTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cs []*websocket.Conn
	for i := 0; i < 2; i++ {
		c, _, err := rawDial(t, ctx, u, "j", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	if _, resp, err := rawDial(t, ctx, u, "j", "", nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third unauthenticated connection from one address: %v; want HTTP 503", err)
	}
	if _, pre := s.connCounts(); pre != 2 {
		t.Fatalf("%d unauthenticated connections, want 2", pre)
	}
	sendMsg(t, ctx, cs[0], hello("j", ""))
	if m := recvMsg(t, ctx, cs[0]); m.Type != wire.TypeWelcome {
		t.Fatalf("join: %v", m.Type)
	}
	if authed, pre := s.connCounts(); authed != 1 || pre != 1 {
		t.Fatalf("after a Hello: %d authenticated, %d not; want 1 and 1", authed, pre)
	}
	if _, _, err := rawDial(t, ctx, u, "j", "", nil); err != nil {
		t.Fatalf("the joined connection's slot came back: %v", err)
	}
}

// TestDurableHoldsAnswers: in Durable mode an answer that follows a state
// change leaves only after a checkpoint succeeded; while checkpoints fail,
// nothing is acknowledged.
func TestDurableHoldsAnswers(t *testing.T) {
	s, u := startServer(t, Config{DataDir: t.TempDir(), Durable: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	diskFull := errors.New("disk full")
	s.db.failSave.Store(&diskFull)
	c, _, err := rawDial(t, ctx, u, "j", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sendMsg(t, ctx, c, hello("j", "")) // a join changes durable state
	got := make(chan *wire.Msg, 1)
	go func() {
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		var m wire.Msg
		if wire.Decode(b, nil, &m) == nil {
			got <- &m
		}
	}()
	select {
	case m := <-got:
		t.Fatalf("answered %v while checkpoints fail", m.Type)
	case <-time.After(1500 * time.Millisecond):
	}
	s.db.failSave.Store(nil)
	select {
	case m := <-got:
		if m.Type != wire.TypeWelcome {
			t.Fatalf("got %v, want the held welcome", m.Type)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the welcome was not released after the checkpoint succeeded")
	}
	if st := s.Status(); st.Jobs[0].Checkpoints == 0 {
		t.Fatal("no checkpoint counted")
	}
}

func TestInboundCredit(t *testing.T) {
	p := newPeer(1, nil, "x", &jobMetrics{}, time.Now(), 1)
	if !p.acquire(inboundLimit + 10) { // one frame over the limit passes alone
		t.Fatal("first frame refused")
	}
	got := make(chan bool)
	go func() { got <- p.acquire(1) }()
	select {
	case <-got:
		t.Fatal("a second frame passed while the first one is over the limit")
	case <-time.After(50 * time.Millisecond):
	}
	p.release(inboundLimit + 10)
	if !<-got {
		t.Fatal("credit not returned")
	}
	go func() { got <- p.acquire(inboundLimit) }()
	for p.held.Load() == 0 { // until it waits for credit
		runtime.Gosched()
	}
	p.close(websocket.StatusNormalClosure, nil)
	if <-got {
		t.Fatal("acquire succeeded on a closed peer")
	}
}

// TestSlowPeerDoesNotStall: a worker that asks for big values and never
// reads them is held back (flow control: its requests wait while its
// answers exceed the send buffer) and, once a write made no progress for
// the write timeout, closed; another worker of the same job keeps getting
// answers meanwhile.
func TestSlowPeerDoesNotStall(t *testing.T) {
	s, u := startServer(t, Config{WriteTimeout: 300 * time.Millisecond, SendBuffer: 8 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	good := joinRaw(t, ctx, u, "j")
	slow := joinRaw(t, ctx, u, "j")
	// The good worker creates a 4 MB key.
	const n = 1 << 20
	meta := wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{n}})
	payload := append(meta, make([]byte, 4*n)...)
	init := wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeInit, Seq: 1, Ack: 1, Key: 7, DType: wire.DTypeF32, Count: n, Total: n}, Payload: payload})
	sendMsg(t, ctx, good, init)
	if m := recvMsg(t, ctx, good); m.Type != wire.TypeAck {
		t.Fatalf("init: %v %v", m.Type, wire.ErrorOf(m))
	}
	// The slow one inits too (answered at once: the key exists), then
	// floods pulls and never reads.
	init2 := append([]byte(nil), init...)
	sendMsg(t, ctx, slow, init2)
	for seq := uint64(2); seq < 40; seq++ {
		if err := slow.Write(ctx, websocket.MessageBinary, wire.AppendHeader(nil, &wire.Header{Type: wire.TypePull, Seq: seq, Ack: 1, Key: 7})); err != nil {
			break // already closed by the relay
		}
	}
	// Meanwhile the good worker's pings are answered promptly.
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		sendMsg(t, ctx, good, wire.AppendHeader(nil, &wire.Header{Type: wire.TypePing}))
		if m := recvMsg(t, ctx, good); m.Type != wire.TypePong {
			t.Fatalf("good worker got %v", m.Type)
		}
		if d := time.Since(t0); d > 5*time.Second {
			t.Fatalf("ping took %v while another peer stalled", d)
		}
	}
	if st, err := WaitStatus(ctx, s, func(st Status) bool { return len(st.Jobs) == 1 && st.Jobs[0].Connections == 1 }); err != nil {
		t.Fatalf("the slow peer was not disconnected: %+v: %v", st.Jobs, err)
	}
	s.mu.Lock()
	j := s.jobs["j"]
	s.mu.Unlock()
	if j.m.dropped.Load() == 0 || j.m.stalls.Load() == 0 {
		t.Fatalf("the slow peer: %d closed for a stuck write, %d stalls; want both counted", j.m.dropped.Load(), j.m.stalls.Load())
	}
}
