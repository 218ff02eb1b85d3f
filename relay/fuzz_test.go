//go:build !js && !wasip1

package relay

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
	"nhooyr.io/websocket"
)

// FuzzRelayFrames sends arbitrary frames after a Hello, on a real
// connection, and checks that the relay neither crashes nor hangs: each
// frame is answered or its connection closed, and the job keeps welcoming
// the next iteration's worker. (go test -fuzz FuzzRelayFrames ./relay/)
func FuzzRelayFrames(f *testing.F) {
	f.Add([]byte("garbage"))
	f.Add(wire.AppendHeader(nil, &wire.Header{Type: wire.TypePing}))
	f.Add(wire.AppendHeader(nil, &wire.Header{Type: wire.TypePull, Seq: 1, Key: 3}))
	f.Add(wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypePush, Seq: 1, Key: 1, DType: wire.DTypeF32, Count: 2, Total: 2}, Payload: make([]byte, 8)}))
	init := wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{2}})
	f.Add(wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeInit, Seq: 1, Key: 1, DType: wire.DTypeF32, Count: 2, Total: 2}, Payload: append(init, make([]byte, 8)...)}))
	f.Add(wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: 2, Key: 0}, Payload: []byte(`{"name":"sgd"}`)}))
	f.Add(wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeLoadStates, Seq: 2}, Payload: []byte{1, 2, 3}}))
	f.Add(hello("fz", ""))
	// A short silence timeout removes the workers of closed connections
	// quickly; an iteration waits for the job to be below its worker
	// limit (the fuzzer runs thousands a second, faster than that).
	gone := &leaveSignal{c: make(chan struct{}, 1)}
	s, u := startServer(f, Config{MaxMessage: 1 << 16, Heartbeat: 50 * time.Millisecond, Timeout: 300 * time.Millisecond, MaxWorkers: fuzzWorkers, Logger: slog.New(gone)})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, frame []byte) {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		waitWorkersBelow(t, tctx, s, "fz", fuzzWorkers, gone.c)
		c, _, err := rawDial(t, tctx, u, "fz", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		sendMsg(t, tctx, c, hello("fz", ""))
		if m := recvMsg(t, tctx, c); m.Type != wire.TypeWelcome {
			t.Fatalf("hello: %v %v", m.Type, wire.ErrorOf(m))
		}
		if err := c.Write(tctx, websocket.MessageBinary, frame); err != nil {
			return // closed already: fine
		}
		// An answer or a close must come; a request that waits for
		// others (a barrier, a round) is also fine once the connection
		// stays healthy: a ping behind it is answered.
		if err := c.Write(tctx, websocket.MessageBinary, wire.AppendHeader(nil, &wire.Header{Type: wire.TypePing})); err != nil {
			return
		}
		for {
			_, b, err := c.Read(tctx)
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatal("no answer and no close within 10s")
				}
				break
			}
			var m wire.Msg
			if wire.Decode(b, nil, &m) == nil && m.Type == wire.TypePong {
				break
			}
		}
		// Leave (the connection may be closed already; then the
		// silence timeout removes the worker).
		c.Write(tctx, websocket.MessageBinary, wire.AppendHeader(nil, &wire.Header{Type: wire.TypeLeave, Seq: 1 << 40}))
	})
}

// fuzzWorkers is FuzzRelayFrames' job's worker limit.
const fuzzWorkers = 64

// leaveSignal is a log handler that signals c (capacity 1) when the
// relay logs a worker's leave or removal.
type leaveSignal struct{ c chan struct{} }

func (l *leaveSignal) Enabled(context.Context, slog.Level) bool { return true }
func (l *leaveSignal) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "worker removed" || r.Message == "worker left" {
		select {
		case l.c <- struct{}{}:
		default:
		}
	}
	return nil
}
func (l *leaveSignal) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *leaveSignal) WithGroup(string) slog.Handler      { return l }

// waitWorkersBelow waits until job has fewer than n workers (the relay's
// Status, asked again at each leave or removal the relay logs: gone), or
// fails t when ctx ends first.
func waitWorkersBelow(t *testing.T, ctx context.Context, s *Server, job string, n int, gone <-chan struct{}) {
	t.Helper()
	for {
		workers := 0
		for _, j := range s.Status().Jobs {
			if j.Job == job {
				workers = int(j.LiveWorkers)
			}
		}
		if workers < n {
			return
		}
		select {
		case <-gone:
		case <-ctx.Done():
			t.Fatalf("job %q still has %d workers (limit %d) at the iteration's deadline", job, workers, n)
		}
	}
}
