package wsm

import (
	"errors"
	"slices"
	"testing"

	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// A list request built key by key (StartList, ListAdd, SendList): a key of
// another shard or one already in the list does not join, the keys that
// joined are held until the answer, a list of no keys sends nothing, and a
// list sent on a closed Machine fails as its Done and frees its keys.
func TestListReq(t *testing.T) {
	m, send, keys := listWorld(t, false, 0)
	if len(keys[0]) < 2 || len(keys[1]) < 1 {
		t.Fatalf("keys per shard %d and %d: want 2 and 1 at least", len(keys[0]), len(keys[1]))
	}

	var l ListReq
	l.StartList("empty", false, 4, 1<<20, nil)
	if err := m.SendList(&l, nil); !errors.Is(err, ErrArg) {
		t.Fatalf("a list of no keys: %v, want ErrArg", err)
	}
	if rd := m.Ready(); len(rd.Done) != 0 || len(rd.Wake) != 0 {
		t.Fatalf("a list of no keys: %d done, %d shards woken; want nothing", len(rd.Done), len(rd.Wake))
	}

	l.StartList("pull", false, 4, 1<<20, nil)
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
	ids, _ := listTable(t, &msg)
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

	// Room: a list of at most 3 values takes one key of 2, then refuses
	// the next (ListAdd is the only check a driver makes); a first key
	// bigger than the room does not open the list.
	l.StartList("room", false, 4, 3, nil)
	if !m.ListAdd(&l, keys[0][0]) || m.ListAdd(&l, keys[0][1]) {
		t.Fatal("a list of 3 values: want its first key of 2 in, the second out")
	}
	if got := l.Total(); got != 2 || len(l.Keys()) != 1 {
		t.Fatalf("a list of 3 values: %d values in %d keys, want 2 in 1", got, len(l.Keys()))
	}
	if !m.Listable(keys[0][1]) {
		t.Fatal("a key refused for room is held")
	}
	if err := m.SendList(&l, make([]float32, 2)); err != nil {
		t.Fatal(err)
	}
	if msg := send(0); msg.Type != wire.TypePullList || msg.Count != 1 {
		t.Fatalf("sent %v of %d keys, want a pull list of 1", msg.Type, msg.Count)
	}
	var small ListReq
	small.StartList("small", true, 4, 1, nil)
	if m.ListAdd(&small, keys[1][0]) || !m.Listable(keys[1][0]) {
		t.Fatal("a key of 2 values opened a list of 1 value, or is held")
	}

	l.StartList("closed", true, 4, 1<<20, nil)
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

// listWorld is a Machine of two shards, welcomed, with 8 keys of 2
// values initialized (noEvents: Config.NoRoundEvents); keys are by shard.
func listWorld(t *testing.T, noEvents bool, round uint64) (m *Machine, send func(s int) wire.Msg, keys [2][]*Key) {
	t.Helper()
	m, err := New(Config{Shards: 2, Mode: wire.ModeSync, Join: transport.Join{}, NoRoundEvents: noEvents})
	if err != nil {
		t.Fatal(err)
	}
	send = func(s int) wire.Msg {
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
	for id := range 8 {
		k, err := m.InitKey(id, KeySpec{ID: wire.IntKeyID(id), Shape: []int64{2}, N: 2}, []float32{1, 2})
		if err != nil {
			t.Fatal(err)
		}
		s := k.ListShard()
		msg := send(s)
		m.Recv(s, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeAck, Seq: msg.Seq, Round: round}}))
		keys[s] = append(keys[s], k)
	}
	m.Clear()
	if len(keys[0]) < 3 {
		t.Fatalf("%d keys on shard 0, want 3 at least", len(keys[0]))
	}
	return m, send, keys
}

// listRounds sends a push list of keys (on shard 0) and returns the
// rounds its table names, and its seq.
func listRounds(t *testing.T, m *Machine, send func(int) wire.Msg, tok string, keys []*Key) ([]uint64, uint64) {
	t.Helper()
	if err := m.PushList(tok, keys, make([]float32, 2*len(keys))); err != nil {
		t.Fatal(err)
	}
	msg := send(0)
	_, rounds := listTable(t, &msg)
	return rounds, msg.Seq
}

// A list request's keys are held until its answer, and free after it
// without a pass over them (Key.holder): a request on a listed key waits
// and goes once the list is answered; once a list ended, its keys take
// requests at once, whatever became of its request. A push list's rounds
// move on by what its answer says (taken: the round after the answered
// one; refused or failed: the same round again), as single pushes' do.
func TestListHold(t *testing.T) {
	for _, noEvents := range []bool{true, false} {
		m, send, keys := listWorld(t, noEvents, 5)
		ks := keys[0][:3]
		done := func(tok string) {
			t.Helper()
			rd := m.Ready()
			if len(rd.Done) != 1 || rd.Done[0].Tok != tok || (rd.Done[0].Err != nil) != (tok == "p3") {
				t.Fatalf("noEvents %v: done %+v, want %s (failed only if p3)", noEvents, rd.Done, tok)
			}
			m.Clear()
		}
		ack := func(seq uint64, n int, payload []byte) {
			m.Recv(0, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeAck, Flags: wire.FlagList, Seq: seq, Count: uint32(n)}, Payload: payload}))
		}

		// A uniform answer: every key's next round is the one after.
		rounds, seq := listRounds(t, m, send, "p1", ks)
		if rounds[0] != 5 || rounds[2] != 5 {
			t.Fatalf("noEvents %v: first list names rounds %v, want 5s", noEvents, rounds)
		}
		ack(seq, len(ks), nil)
		done("p1")

		// A key pushed on its own while a list holds it waits for the
		// list's answer (which frees it), then goes with its round.
		rounds, seq = listRounds(t, m, send, "p2", ks)
		if rounds[1] != 6 {
			t.Fatalf("noEvents %v: second list names rounds %v, want 6s", noEvents, rounds)
		}
		if m.Listable(ks[1]) {
			t.Fatal("a key in a list is listable before its answer")
		}
		if err := m.Push("single", ks[1], wire.DTypeF32, []float32{1, 2}, 2); err != nil {
			t.Fatal(err)
		}
		if _, ok := m.Next(0); ok {
			t.Fatal("a push on a key held by a list was sent before the list's answer")
		}
		// Key 0 taken one round late, key 1 taken, key 2 refused.
		ack(seq, len(ks), wire.AppendListAnswer(nil, []wire.ListResult{{Delta: 1}, {}, {Code: wire.CodeUpdater}}, "refused"))
		if rd := m.Ready(); len(rd.Done) != 1 || rd.Done[0].Tok != "p2" || rd.Done[0].Err == nil {
			t.Fatalf("noEvents %v: done %+v, want p2 with the refusal", noEvents, rd.Done)
		}
		m.Clear()
		msg := send(0)
		if msg.Type != wire.TypePush || msg.Key != ks[1].ID() || msg.Round != 7 {
			t.Fatalf("noEvents %v: sent %v of key %d round %d, want the waiting push of key %d round 7", noEvents, msg.Type, msg.Key, msg.Round, ks[1].ID())
		}
		m.Recv(0, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeAck, Seq: msg.Seq, Round: 7}}))
		done("single")

		// A pull list: its keys are free once it is answered (its request
		// recycled by the next list), a pull of one goes at once.
		if err := m.PullList("pl", ks, make([]float32, 2*len(ks))); err != nil {
			t.Fatal(err)
		}
		msg = send(0)
		m.Recv(0, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeAck, Flags: wire.FlagList, Seq: msg.Seq, DType: wire.DTypeF32,
			Count: 6, Total: 6}, Payload: wire.AppendFloat32s(nil, make([]float32, 6))}))
		done("pl")
		for _, k := range ks {
			if !m.Listable(k) {
				t.Fatalf("noEvents %v: key %d not listable after its pull list's answer", noEvents, k.ID())
			}
		}
		if err := m.Pull("one", ks[0], make([]float32, 2)); err != nil {
			t.Fatal(err)
		}
		if msg = send(0); msg.Type != wire.TypePull || msg.Key != ks[0].ID() {
			t.Fatalf("noEvents %v: sent %v of key %d, want the pull of key %d", noEvents, msg.Type, msg.Key, ks[0].ID())
		}
		m.Recv(0, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeAck, Seq: msg.Seq, DType: wire.DTypeF32, Count: 2, Total: 2}, Payload: wire.AppendFloat32s(nil, []float32{1, 2})}))
		done("one")

		// Rounds now: key 0 at 8 (taken for 7), key 1 at 8 (its single
		// push), key 2 at 6 (refused). A list failed by an error answer
		// leaves them; so does a list never sent (a key twice).
		rounds, seq = listRounds(t, m, send, "p3", ks)
		if want := []uint64{8, 8, 6}; !slices.Equal(rounds, want) {
			t.Fatalf("noEvents %v: third list names rounds %v, want %v", noEvents, rounds, want)
		}
		m.Recv(0, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeError, Seq: seq, Code: wire.CodeInternal}}))
		done("p3")
		if err := m.PushList("twice", []*Key{ks[0], ks[0]}, make([]float32, 4)); !errors.Is(err, ErrArg) {
			t.Fatalf("noEvents %v: a list of a key twice: %v, want ErrArg", noEvents, err)
		}
		if rounds, _ = listRounds(t, m, send, "p4", ks); !slices.Equal(rounds, []uint64{8, 8, 6}) {
			t.Fatalf("noEvents %v: after a failed list, rounds %v, want 8 8 6", noEvents, rounds)
		}
	}
}

// ListAdd repeats Listable's tests inline for the keys after a list's
// first: for a key of the list's shard and kind, with room, it takes the
// key exactly when Listable says it may, whatever the key's state (free,
// held by a list in flight, pushed alone, waiting behind that push, free
// again after the answers).
func TestListAddAgreesWithListable(t *testing.T) {
	m, send, keys := listWorld(t, false, 0)
	k0, a, b := keys[0][0], keys[0][1], keys[0][2]
	check := func(state string, k *Key, listable bool) {
		t.Helper()
		var l ListReq
		l.StartList("probe", false, 2, 1<<20, nil)
		if !m.ListAdd(&l, k0) {
			t.Fatalf("%s: the list's first key did not join", state)
		}
		want := m.Listable(k)
		if want != listable {
			t.Fatalf("%s: Listable says %v, want %v", state, want, listable)
		}
		if got := m.ListAdd(&l, k); got != want {
			t.Fatalf("%s: ListAdd took the key: %v, Listable says %v", state, got, want)
		}
		// The probe is never sent: its keys go back as a dead list's would.
		l.lfree(m)
	}
	check("free", a, true)
	// a held by a pull list in flight.
	var held ListReq
	held.StartList("held", false, 1, 1<<20, nil)
	if !m.ListAdd(&held, a) {
		t.Fatal("a free key did not join a list")
	}
	if err := m.SendList(&held, make([]float32, 2)); err != nil {
		t.Fatal(err)
	}
	listMsg := send(0)
	check("in a list in flight", a, false)
	// b pushed alone, then pushed again (waiting behind the first).
	if err := m.Push("p1", b, wire.DTypeF32, []float32{1, 2}, 2); err != nil {
		t.Fatal(err)
	}
	check("pushed alone", b, false)
	if err := m.Push("p2", b, wire.DTypeF32, []float32{1, 2}, 2); err != nil {
		t.Fatal(err)
	}
	check("waiting behind a push", b, false)
	// The answers: a's list, then b's two pushes.
	m.Recv(0, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeAck, Flags: wire.FlagList, Seq: listMsg.Seq, DType: wire.DTypeF32,
		Count: 2, Total: 2}, Payload: wire.AppendFloat32s(nil, []float32{5, 6})}))
	check("after its list's answer", a, true)
	for range 2 {
		msg := send(0)
		m.Recv(0, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeAck, Seq: msg.Seq, Round: msg.Round}}))
	}
	check("after its pushes' answers", b, true)
	m.Clear()
}

// listTable is list request msg's key ids and, for a push list, their
// rounds, one per key.
func listTable(t *testing.T, msg *wire.Msg) (ids, rounds []uint64) {
	t.Helper()
	runs, _, err := wire.DecodeListRuns(msg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		for x := range r.Count {
			ids = append(ids, r.First+x)
			rounds = append(rounds, r.Round)
		}
	}
	return ids, rounds
}
