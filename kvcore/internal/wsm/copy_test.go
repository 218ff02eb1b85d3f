package wsm

import (
	"testing"

	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// A big answer's values are left to the driver (Ready.Copies) and its
// operation completes only at Copied, also when the key is split over two
// shards that answer in turn.
func TestBigAnswersCopiedByDriver(t *testing.T) {
	m, err := New(Config{Shards: 2, Mode: wire.ModeSync, Join: transport.Join{BigArrayBound: 8}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(s int) []byte {
		t.Helper()
		out, ok := m.Next(s)
		if !ok {
			t.Fatalf("shard %d has nothing to send", s)
		}
		frame := append(append([]byte(nil), out.Head...), out.Body...)
		m.Written(s)
		return frame
	}
	m.Start()
	send(0)
	m.Recv(0, 1, wire.AppendWelcome(nil, &wire.Welcome{WorkerID: "w", NumWorkers: 1}))
	send(1)
	m.Recv(1, 1, wire.AppendWelcome(nil, &wire.Welcome{WorkerID: "w", NumWorkers: 1}))
	m.Clear()
	const n = 2 * bigCopy
	k, err := m.InitKey("init", KeySpec{ID: 1, Shape: []int64{n}, N: n}, make([]float32, n))
	if err != nil {
		t.Fatal(err)
	}
	var msg wire.Msg
	for s := range 2 {
		wire.Decode(send(s), nil, &msg)
		m.Recv(s, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeAck, Seq: msg.Seq}}))
	}
	m.Clear()
	out := make([]float32, n)
	if err := m.Pull("pull", k, out); err != nil {
		t.Fatal(err)
	}
	answer := func(s int) {
		wire.Decode(send(s), nil, &msg)
		p := k.Parts()[s]
		vals := make([]float32, p.Len)
		for i := range vals {
			vals[i] = float32(p.Offset + i)
		}
		m.Recv(s, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeAck, Seq: msg.Seq, DType: wire.DTypeF32,
			Count: uint32(p.Len), Offset: uint32(p.Offset), Total: n}, Payload: wire.AppendFloat32s(nil, vals)}))
	}
	for s := range 2 {
		answer(s)
		rd := m.Ready()
		if len(rd.Copies) != 1 || len(rd.Done) != 0 {
			t.Fatalf("shard %d answered: %d copies, %d done; want 1 copy and no completion before Copied", s, len(rd.Copies), len(rd.Done))
		}
		wire.DecodeFloat32s(rd.Copies[0].Src, rd.Copies[0].Dst)
		m.Clear()
		m.Copied(s)
		rd = m.Ready()
		if done := len(rd.Done); done != s {
			t.Fatalf("after shard %d's copy: %d done, want %d", s, done, s)
		}
		m.Clear()
	}
	for i, v := range out {
		if v != float32(i) {
			t.Fatalf("element %d is %v", i, v)
		}
	}
}
