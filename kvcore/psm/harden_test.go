package psm

import (
	"encoding/binary"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
)

// TestValueVersions: answers that carry a key's value carry its version
// (Envelope.Ver): equal while the value is unchanged, so a server encodes
// the value once for every peer that pulls it; new after every change.
func TestValueVersions(t *testing.T) {
	h := newHarness(t, Config{})
	h.hello(1, 2)
	h.hello(2, 0)
	h.init(1, 5, []float32{1, 2})
	h.init(2, 5, []float32{0, 0})
	pull := func(c ConnID) uint64 {
		h.step(c, &wire.Msg{Header: wire.Header{Type: wire.TypePull, Seq: h.nextSeq(c), Key: 5}})
		a := h.acks()
		if len(a) != 1 || a[0].Ver == 0 {
			t.Fatalf("pull: %+v, want one ack with a version", a)
		}
		return a[0].Ver
	}
	v1, v2 := pull(1), pull(2)
	if v1 != v2 {
		t.Fatalf("two pulls of an unchanged value: versions %d and %d", v1, v2)
	}
	h.step(1, dataMsg(wire.TypePushPull, h.nextSeq(1), 5, 0, []float32{1, 1}))
	h.step(2, dataMsg(wire.TypePushPull, h.nextSeq(2), 5, 0, []float32{2, 2}))
	a := h.acks()
	if len(a) != 2 || a[0].Ver != a[1].Ver || a[0].Ver == v1 {
		t.Fatalf("round answers: versions %d, %d (before %d): want one new version for both", a[0].Ver, a[1].Ver, v1)
	}
	if v := pull(1); v != a[0].Ver {
		t.Fatalf("pull after the round: version %d, want %d", v, a[0].Ver)
	}
	for _, e := range h.out {
		if e.Msg.DType == wire.DTypeNone && e.Ver != 0 {
			t.Fatalf("a message without data has version %d", e.Ver)
		}
	}
}

// TestOptimizerSpecFitsStates: set-optimizer accepts exactly the specs the
// optimizer-states codec can carry, so states saved with any accepted spec
// load again (issue 8: a spec over 64 KiB was accepted and broke save/load).
func TestOptimizerSpecFitsStates(t *testing.T) {
	lim := wire.Limits{MaxString: 200}
	h := newHarness(t, Config{Limits: &lim})
	h.hello(1, 0)
	h.init(1, 3, []float32{1, 2, 3})
	spec := func(n int) []byte {
		s := `{"name":"sgd","learning_rate":0.1,"momentum":0.9,"clip_gradient":1` // padded with spaces
		return []byte(s + strings.Repeat(" ", n-len(s)-1) + "}")
	}
	h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: h.nextSeq(1), Key: CmdController}, Payload: spec(lim.MaxString)})
	h.acks()
	h.step(1, dataMsg(wire.TypePush, h.nextSeq(1), 3, 0, []float32{1, 1, 1}))
	h.acks()
	h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypeSaveStates, Seq: h.nextSeq(1)}})
	a := h.acks()
	if len(a) != 1 {
		t.Fatal("save states: no answer")
	}
	st, err := wire.DecodeStates(a[0].Msg.Payload, &lim)
	if err != nil || len(st.Optimizer) != lim.MaxString {
		t.Fatalf("states saved with a spec at the limit: %v (spec %d bytes)", err, len(st.Optimizer))
	}
	h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypeLoadStates, Seq: h.nextSeq(1)}, Payload: a[0].Msg.Payload})
	h.acks()
	h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: h.nextSeq(1), Key: CmdController}, Payload: spec(lim.MaxString + 1)})
	if len(h.out) != 1 || h.out[0].Msg.Type != wire.TypeError || h.out[0].Msg.Code != wire.CodeBadOptimizer {
		t.Fatalf("a spec over the limit: %+v, want a bad-optimizer error", h.out)
	}
}

// TestRestoreOlderSnapshots: a version-1 snapshot (no resume keys) is
// read; a start barrier no job could meet (a Want an older relay
// checkpointed) falls back to the configured one.
func TestRestoreOlderSnapshots(t *testing.T) {
	h := newHarness(t, Config{MaxWorkers: 1 << 20})
	h.hello(1, 1<<20-1) // waits for a million workers
	h.j.Disconnect(0, 1)
	if rd := h.j.Tick(time.Hour); !rd.Persist || len(h.j.workers) != 0 {
		t.Fatal("the disconnected worker was not removed")
	}
	snap, err := h.j.AppendSnapshot(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Without workers or keys, version 1 is version 3 without the run
	// (after the mode, started, want and next worker number).
	at := 10 + len(binary.AppendUvarint(nil, uint64(h.j.want))) + len(binary.AppendUvarint(nil, h.j.nextID))
	if snap[at] != byte(h.j.run) {
		t.Fatalf("run %d not at byte %d", h.j.run, at)
	}
	v1 := append(append([]byte(nil), snap[:at]...), snap[at+1:len(snap)-4]...)
	binary.LittleEndian.PutUint32(v1[4:], 1)
	v1 = binary.LittleEndian.AppendUint32(v1, crc32.ChecksumIEEE(v1))
	r, err := Restore(Config{Job: "t", MinWorkers: 2, MaxWorkers: 8}, v1, 0)
	if err != nil {
		t.Fatalf("version-1 snapshot: %v", err)
	}
	defer r.Close()
	if r.want != 2 {
		t.Fatalf("restored start barrier %d, want the configured 2", r.want)
	}
	rd := r.Step(0, 7, wire.AppendHello(nil, &wire.Hello{Job: "t", Mode: wire.ModeSync}))
	if len(rd.Joined) != 1 || len(rd.Msgs) != 0 {
		t.Fatalf("first join after restore: %+v, want joined and held at the barrier of 2", rd)
	}
}

// checkBudget asserts the budget invariant: what the job has reserved is
// exactly what its keys and waiting inits hold.
func checkBudget(t testing.TB, j *Job) {
	t.Helper()
	sum := j.aggResv
	for _, k := range j.keys {
		sum += k.resv
		if k.rs != nil {
			sum += k.rs.resv // row-sparse scratch (rows.go)
		}
		if min := keyBytes(k.n, nil, len(k.slot.States)); k.resv < min {
			t.Fatalf("key %d reserves %d bytes, holds at least %d", k.id, k.resv, min)
		}
	}
	for _, hs := range j.heldInits {
		for _, h := range hs {
			sum += h.resv
		}
	}
	if sum != j.used {
		t.Fatalf("job reserved %d bytes, its keys and waiting inits %d", j.used, sum)
	}
}
