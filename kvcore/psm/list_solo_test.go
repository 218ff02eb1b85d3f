package psm

import (
	"math/rand/v2"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/wire"
)

// TestSoloRounds: a job whose only member pushes lists (dist_sync, no
// optimizer, the CPU backend: every round opens and closes with the one
// push, its buffer assigned as the value) keeps each key's state: each
// value is the last push, each push is acked for its own round, each key
// counts its rounds and is marked changed for the next snapshot, the
// step asks for persistence, the stats count the rounds and updates, and
// a key's two buffers (its value and the spare the next push is written
// into) take turns, with none allocated after the first round.
func TestSoloRounds(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	h := newHarness(t, Config{Backend: compute.NewCPU(nil)})
	h.hello(1, 1)
	nkeys := 1 + rng.IntN(300)
	sizes := make([]int, nkeys)
	for id := range sizes {
		sizes[id] = 1 + rng.IntN(64)
		h.init(1, uint64(id), make([]float32, sizes[id]))
	}
	bufs := make([]map[compute.Buffer]bool, nkeys) // each key's buffers seen
	for id := range bufs {
		bufs[id] = map[compute.Buffer]bool{}
	}
	const rounds = 12
	for round := range uint64(rounds) {
		var b wire.ListBuilder
		b.Reset(wire.TypePushList, nkeys)
		var data []byte
		want := make([][]float32, nkeys)
		total := 0
		for id, n := range sizes {
			want[id] = make([]float32, n)
			for e := range want[id] {
				want[id][e] = float32(rng.IntN(1<<12)-1<<11) / 16
			}
			b.Add(uint64(id), round)
			data = wire.AppendFloat32s(data, want[id])
			total += n
		}
		seq := h.nextSeq(1)
		rd := h.step(1, &wire.Msg{Header: b.ListHeader(seq, 0, 0, total), Payload: append(append([]byte(nil), b.Table()...), data...)})
		if !rd.Persist {
			t.Fatalf("round %d: the push list's step does not ask for persistence", round)
		}
		acks := h.acks()
		if len(acks) != 1 || acks[0].Msg.Seq != seq || acks[0].Msg.Count != uint32(nkeys) {
			t.Fatalf("round %d: acks %+v, want one for seq %d of %d keys", round, acks, seq, nkeys)
		}
		rs, text, err := wire.DecodeListAnswer(&acks[0].Msg, nkeys, nil)
		if err != nil || text != "" || len(rs) != nkeys {
			t.Fatalf("round %d: the ack's results: %d, %q, %v", round, len(rs), text, err)
		}
		for id, r := range rs {
			if r != (wire.ListResult{}) {
				t.Fatalf("round %d: key %d answered %+v, want its own round (delta 0), no flags, no error", round, id, r)
			}
		}
		for id := range nkeys {
			k := h.j.byID[id].k
			if k.rounds != round+1 || k.cur != nil || !k.dirty {
				t.Fatalf("round %d: key %d has rounds %d, open round %v, changed %v", round, id, k.rounds, k.cur != nil, k.dirty)
			}
			if k.spare == nil || k.spare == k.stored || len(k.free) != 0 {
				t.Fatalf("round %d: key %d keeps spare %v (value %v) and %d more", round, id, k.spare, k.stored, len(k.free))
			}
			bufs[id][k.stored], bufs[id][k.spare] = true, true
			if len(bufs[id]) != 2 {
				t.Fatalf("round %d: key %d has used %d buffers, want its value and one spare", round, id, len(bufs[id]))
			}
			got, ok := cpuValue(k)
			if !ok {
				t.Fatalf("key %d: value not on the CPU backend", id)
			}
			for e := range got {
				if got[e] != want[id][e] {
					t.Fatalf("round %d: key %d element %d is %v, pushed %v", round, id, e, got[e], want[id][e])
				}
			}
		}
	}
	if st := h.j.Stats(); st.Rounds != uint64(rounds*nkeys) || st.Updates != uint64(rounds*nkeys) {
		t.Fatalf("stats: %d rounds, %d updates, want %d each", st.Rounds, st.Updates, rounds*nkeys)
	}
}

// TestSoloRoundsJoinOpenRound: a round that opened while two workers
// were members stays open for the one left after the other leaves; that
// worker's push list is then the round's second push (the value is the
// sum of both), not a round of its own, and only its next push list
// closes rounds alone (a shortcut for a job's only worker would have to
// tell the two apart: see RATIONALE, "Why does the server keep a key's
// list-path fields together?").
func TestSoloRoundsJoinOpenRound(t *testing.T) {
	h := newHarness(t, Config{Backend: compute.NewCPU(nil)})
	h.hello(1, 2)
	h.hello(2, 2)
	const nkeys = 5
	for id := range nkeys {
		h.init(1, uint64(id), make([]float32, 4))
	}
	push := func(c ConnID, round uint64, v float32) {
		t.Helper()
		var b wire.ListBuilder
		b.Reset(wire.TypePushList, nkeys)
		var data []byte
		for id := range nkeys {
			b.Add(uint64(id), round)
			data = wire.AppendFloat32s(data, []float32{v, v, v, v + float32(id)})
		}
		h.step(c, &wire.Msg{Header: b.ListHeader(h.nextSeq(c), 0, 0, 4*nkeys), Payload: append(append([]byte(nil), b.Table()...), data...)})
	}
	// check: every key closed rounds rounds; its value is the sum of
	// pushes pushes whose first elements sum to v.
	check := func(what string, rounds uint64, v float32, pushes int) {
		t.Helper()
		for id := range nkeys {
			k := h.j.byID[id].k
			got, _ := cpuValue(k)
			if k.rounds != rounds || k.cur != nil || got[0] != v || got[3] != v+float32(pushes*id) {
				t.Fatalf("%s: key %d has rounds %d (open %v), value %v; want %d rounds, %v (%d pushes)", what, id, k.rounds, k.cur != nil, got, rounds, v, pushes)
			}
		}
	}
	push(1, 0, 1)
	push(2, 0, 2)
	check("round 0", 1, 3, 2) // each key now keeps two free buffers
	push(2, 1, 2)             // rounds 1 open, waiting for worker 1
	h.step(2, &wire.Msg{Header: wire.Header{Type: wire.TypeLeave, Seq: h.nextSeq(2)}})
	for id := range nkeys {
		if k := h.j.byID[id].k; k.cur == nil || k.spare == nil && len(k.free) == 0 {
			t.Fatalf("key %d: round 1 closed when worker 2 left, or no free buffer for the next push", id)
		}
	}
	push(1, 1, 3)
	check("worker 1's push into the open rounds", 2, 5, 2)
	push(1, 2, 7)
	check("worker 1's push alone", 3, 7, 1)
}
