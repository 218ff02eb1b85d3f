//go:build !js && !wasip1

package relay_test

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
	"github.com/webkv/webkv/relay"
	"github.com/webkv/webkv/relay/relaytest"
	"nhooyr.io/websocket"
)

// TestAttackLists: a token holder of one job sends list requests that are
// wrong (unknown key, a wrong element count, a NaN), then one whose header
// names more keys than any list may carry. Each gets a clear error code
// (the last one closes its connection); honest workers of another job on
// the same relay, training with list requests, stay exact.
func TestAttackLists(t *testing.T) {
	_, u := start(t, relay.Config{Tokens: map[string]string{"job": "tok", "atk": "atk"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h := startHonest(t, ctx, u, "job", "tok", relaytest.Workload{Workers: 2, Rounds: 8, Sizes: []int{16, 1, 300, 5000, 7}, Lists: true,
		Optimizer: json.RawMessage(`{"name":"adam","learning_rate":0.01}`)})
	c, _, err := dialFrom(ctx, "127.0.0.2", u, "atk", "atk", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, &wire.Hello{Job: "atk", Mode: wire.ModeSync}))
	expect := func(want wire.Code, frame []byte, seq uint64) *wire.Msg {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageBinary, frame); err != nil {
			t.Fatal(err)
		}
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var r wire.Msg
			if wire.Decode(b, nil, &r) != nil || r.Seq != seq {
				continue
			}
			if r.Type != wire.TypeError && want != wire.CodeOK || r.Type == wire.TypeError && r.Code != want {
				t.Fatalf("request %d: %v %v (%s), want code %v", seq, r.Type, r.Code, r.Payload, want)
			}
			return &r
		}
	}
	meta := wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{4}})
	expect(wire.CodeOK, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeInit, Seq: 1, Key: 1, DType: wire.DTypeF32, Count: 4, Total: 4},
		Payload: append(meta, make([]byte, 16)...)}), 1)
	round := uint64(0)
	list := func(typ wire.Type, seq uint64, keys []uint64, total int, vals []float32) []byte {
		var b wire.ListBuilder
		b.Reset(typ, len(keys))
		for _, k := range keys {
			b.Add(k, round)
		}
		hd := b.ListHeader(seq, seq, 0, total)
		f := append(wire.AppendHeader(nil, &hd), b.Table()...)
		return wire.AppendFloat32s(f, vals)
	}
	expect(wire.CodeShape, list(wire.TypePullList, 2, []uint64{1}, 5, nil), 2)
	expect(wire.CodeUnknownKey, list(wire.TypePushList, 3, []uint64{1, 9}, 5, make([]float32, 5)), 3)
	if m := expect(wire.CodeOK, list(wire.TypePushList, 4, []uint64{1}, 4, []float32{1, 2, 3, 4}), 4); m.Flags&wire.FlagList == 0 {
		t.Fatalf("push list answered without FlagList: %+v", m.Header)
	}
	// A NaN: the list is answered, its key refused in the answer's table.
	nan := float32(math.NaN())
	round = 1
	m := expect(wire.CodeOK, list(wire.TypePushList, 5, []uint64{1}, 4, []float32{nan, 0, 0, 0}), 5)
	if rs, text, err := wire.DecodeListAnswer(m, 1, nil); err != nil || rs[0].Code != wire.CodeBadRequest || text == "" {
		t.Fatalf("NaN push list answered %v %q %v", rs, text, err)
	}
	// More keys than a list may have: refused at the header, connection closed.
	hd := wire.Header{Type: wire.TypePushList, DType: wire.DTypeF32, Seq: 6, Count: wire.MaxListKeys + 1, Total: wire.MaxListKeys + 1, PLen: 4}
	if err := c.Write(ctx, websocket.MessageBinary, append(wire.AppendHeader(nil, &hd), 0, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if werr := readError(ctx, c); werr == nil || werr.Code != wire.CodeLimit {
		t.Fatalf("oversized list: %v, want a limit error", werr)
	}
	h.wait()
}
