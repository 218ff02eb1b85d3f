package wsm

import (
	"errors"
	"testing"

	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// A list request built key by key (StartList, ListAdd, SendList): a key of
// another shard or one already in the list does not join, the keys that
// joined are held until the answer, a list of no keys sends nothing, and a
// list sent on a closed Machine fails as its Done and frees its keys.
func TestListReq(t *testing.T) {
	m, err := New(Config{Shards: 2, Mode: wire.ModeSync, Join: transport.Join{}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(s int) wire.Msg {
		t.Helper()
		out, ok := m.Next(s)
		if !ok {
			t.Fatalf("shard %d has nothing to send", s)
		}
		var msg wire.Msg
		if err := wire.Decode(append(append([]byte(nil), out.Head...), out.Body...), nil, &msg); err != nil {
			t.Fatal(err)
		}
		m.Written(s)
		return msg
	}
	m.Start()
	for s := range 2 {
		send(s)
		m.Recv(s, 1, wire.AppendWelcome(nil, &wire.Welcome{WorkerID: "w", NumWorkers: 1}))
	}
	m.Clear()
	var keys [2][]*Key // by shard
	for id := range 8 {
		k, err := m.InitKey(id, KeySpec{ID: wire.IntKeyID(id), Shape: []int64{2}, N: 2}, []float32{1, 2})
		if err != nil {
			t.Fatal(err)
		}
		s := k.ListShard()
		msg := send(s)
		m.Recv(s, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeAck, Seq: msg.Seq}}))
		keys[s] = append(keys[s], k)
	}
	m.Clear()
	if len(keys[0]) < 2 || len(keys[1]) < 1 {
		t.Fatalf("keys per shard %d and %d: want 2 and 1 at least", len(keys[0]), len(keys[1]))
	}

	var l ListReq
	l.StartList("empty", false, 4, nil)
	if err := m.SendList(&l, nil); !errors.Is(err, ErrArg) {
		t.Fatalf("a list of no keys: %v, want ErrArg", err)
	}
	if rd := m.Ready(); len(rd.Done) != 0 || len(rd.Wake) != 0 {
		t.Fatalf("a list of no keys: %d done, %d shards woken; want nothing", len(rd.Done), len(rd.Wake))
	}

	l.StartList("pull", false, 4, nil)
	for _, k := range keys[0] {
		if !m.ListAdd(&l, k) {
			t.Fatalf("key %d did not join", k.ID())
		}
	}
	if m.ListAdd(&l, keys[0][0]) {
		t.Fatal("a key joined its list twice")
	}
	if m.ListAdd(&l, keys[1][0]) {
		t.Fatal("a key of shard 1 joined a list of shard 0")
	}
	if m.Listable(keys[0][1]) {
		t.Fatal("a key in a list is listable before its answer")
	}
	out := make([]float32, 2*len(keys[0]))
	if err := m.SendList(&l, out); err != nil {
		t.Fatal(err)
	}
	msg := send(0)
	if msg.Type != wire.TypePullList || int(msg.Count) != len(keys[0]) {
		t.Fatalf("sent %v of %d keys, want a pull list of %d", msg.Type, msg.Count, len(keys[0]))
	}
	ids, _, _, err := wire.DecodeList(&msg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys[0] {
		if ids[i] != k.ID() {
			t.Fatalf("key %d of the list is %d, want %d", i, ids[i], k.ID())
		}
	}
	vals := make([]float32, len(out))
	for i := range vals {
		vals[i] = float32(10 + i)
	}
	m.Recv(0, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeAck, Seq: msg.Seq, DType: wire.DTypeF32,
		Count: uint32(len(vals)), Total: uint32(len(vals))}, Payload: wire.AppendFloat32s(nil, vals)}))
	if rd := m.Ready(); len(rd.Done) != 1 || rd.Done[0].Tok != "pull" || rd.Done[0].Err != nil {
		t.Fatalf("after the answer: %+v, want the pull list done", rd.Done)
	}
	m.Clear()
	for i, v := range out {
		if v != vals[i] {
			t.Fatalf("value %d is %v, want %v", i, v, vals[i])
		}
	}
	if !m.Listable(keys[0][0]) {
		t.Fatal("a key is not listable after its list's answer")
	}

	l.StartList("closed", true, 4, nil)
	if !m.ListAdd(&l, keys[1][0]) {
		t.Fatal("key did not join")
	}
	m.Close()
	m.Clear()
	if err := m.SendList(&l, []float32{1, 2}); err != nil {
		t.Fatal(err)
	}
	if rd := m.Ready(); len(rd.Done) != 1 || rd.Done[0].Tok != "closed" || !errors.Is(rd.Done[0].Err, ErrClosed) {
		t.Fatalf("a list sent on a closed Machine: %+v, want its Done with ErrClosed", rd.Done)
	}
	if !m.Listable(keys[1][0]) {
		t.Fatal("the key of a failed list is still held")
	}
}
