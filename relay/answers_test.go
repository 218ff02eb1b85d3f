//go:build !js && !wasip1

package relay

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
)

// TestAnswersLeaveBeforeTheRest: without a durable checkpoint to wait
// for, the job goroutine hands each request's answer to the writer before
// it steps the next request that is already queued (a list call's many
// requests arrive together; the worker acts on the first answers while
// the relay steps through the rest). With Durable they are held for the
// group commit (TestDurable*). The hooks stop the job goroutine before it
// steps the second of two pulls, which is queued before the first is
// stepped, until the worker has read the first one's answer.
func TestAnswersLeaveBeforeTheRest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const first, second = 100, 101
	queued, answered := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var fail string
	wait := func(c <-chan struct{}, why string) {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			mu.Lock()
			fail = why
			mu.Unlock()
		}
	}
	_, u := startHooked(t, Config{}, &testHooks{
		posted: func(h wire.Header) {
			if h.Seq == second {
				once.Do(func() { close(queued) })
			}
		},
		step: func(h wire.Header) {
			switch h.Seq {
			case first:
				wait(queued, "the second pull was not queued")
			case second:
				wait(answered, "the first pull's answer did not leave before the second pull was stepped")
			}
		},
	})
	c := joinRaw(t, ctx, u, "j")
	meta := wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{4}})
	sendMsg(t, ctx, c, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeInit, Seq: 1, Ack: 1, Key: 7, DType: wire.DTypeF32, Count: 4, Total: 4}, Payload: append(meta, make([]byte, 16)...)}))
	if m := recvMsg(t, ctx, c); m.Type != wire.TypeAck || m.Seq != 1 {
		t.Fatalf("init: %v %v", m.Type, wire.ErrorOf(m))
	}
	for _, seq := range []uint64{first, second} {
		sendMsg(t, ctx, c, wire.AppendHeader(nil, &wire.Header{Type: wire.TypePull, Seq: seq, Ack: 1, Key: 7}))
	}
	for _, seq := range []uint64{first, second} {
		m := recvMsg(t, ctx, c)
		if m.Seq != seq || m.Type == wire.TypeError {
			t.Fatalf("answer %d: %v %v (seq %d)", seq, m.Type, wire.ErrorOf(m), m.Seq)
		}
		if seq == first {
			close(answered)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fail != "" {
		t.Fatal(fail)
	}
}
