package psm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/wire"
)

// harness drives a Job directly with encoded messages.
type harness struct {
	t   *testing.T
	j   *Job
	now time.Duration
	seq map[ConnID]uint64
	out []Envelope // copies of the messages of the last call
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	if cfg.Job == "" {
		cfg.Job = "t"
	}
	j, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	return &harness{t: t, j: j, seq: map[ConnID]uint64{}}
}

func (h *harness) keep(rd Ready) Ready {
	h.out = h.out[:0]
	for _, e := range rd.Msgs {
		c := e
		c.Msg.Payload = append([]byte(nil), e.Msg.Payload...)
		h.out = append(h.out, c)
	}
	return rd
}

func (h *harness) step(c ConnID, m *wire.Msg) Ready {
	return h.keep(h.j.Step(h.now, c, wire.Append(nil, m)))
}

func (h *harness) hello(c ConnID, want int) {
	h.keep(h.j.Step(h.now, c, wire.AppendHello(nil, &wire.Hello{Job: "t", Mode: wire.ModeSync, Want: uint32(want)})))
}

func (h *harness) nextSeq(c ConnID) uint64 {
	h.seq[c]++
	return h.seq[c]
}

func dataMsg(typ wire.Type, seq uint64, key uint64, round uint64, vals []float32) *wire.Msg {
	return &wire.Msg{Header: wire.Header{Type: typ, Seq: seq, Key: key, Round: round, DType: wire.DTypeF32,
		Count: uint32(len(vals)), Total: uint32(len(vals))}, Payload: wire.AppendFloat32s(nil, vals)}
}

func (h *harness) init(c ConnID, key uint64, vals []float32) {
	m := dataMsg(wire.TypeInit, h.nextSeq(c), key, 0, vals)
	m.Payload = wire.AppendFloat32s(wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{int64(len(vals))}}), vals)
	h.step(c, m)
}

// acks returns the Acks (and fails on Errors) among the last messages.
func (h *harness) acks() []Envelope {
	var r []Envelope
	for _, e := range h.out {
		switch e.Msg.Type {
		case wire.TypeError:
			h.t.Fatalf("error to %d: %v", e.To, wire.ErrorOf(&e.Msg))
		case wire.TypeAck:
			if !wire.IsMembers(&e.Msg) { // notices answer no request
				r = append(r, e)
			}
		}
	}
	return r
}

// The server's result for N workers whose pushes arrive in a random order
// equals a single process summing the same gradients as devices (in rank
// order), for every optimizer, bit for bit.
func TestSyncRoundsMatchLocalAnyArrivalOrder(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	tr := true
	opts := []*optimizer.Spec{nil,
		{Name: "sgd", LearningRate: p(0.1), Momentum: p(0.9), WD: p(0.001)},
		{Name: "nag", LearningRate: p(0.1), Momentum: p(0.5)},
		{Name: "adam", LearningRate: p(0.01)},
		{Name: "adamw", LearningRate: p(0.01), WD: p(0.01)},
		{Name: "adagrad", LearningRate: p(0.1)},
		{Name: "rmsprop", LearningRate: p(0.01), Centered: &tr},
		{Name: "adadelta"},
		{Name: "signum", LearningRate: p(0.01)},
		{Name: "ftrl", LearningRate: p(0.1)},
		{Name: "lamb", LearningRate: p(0.01)},
	}
	const n, size, steps = 5, 33, 4
	seed := uint64(42)
	t.Logf("seed %d", seed)
	for _, opt := range opts {
		name := "none"
		if opt != nil {
			name = opt.Name
		}
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			grads := make([][][]float32, steps)
			for s := range grads {
				grads[s] = make([][]float32, n)
				for r := range grads[s] {
					grads[s][r] = make([]float32, size)
					for i := range grads[s][r] {
						grads[s][r][i] = rng.Float32()*2 - 1
					}
				}
			}
			init := make([]float32, size)
			for i := range init {
				init[i] = rng.Float32()
			}
			// Single process.
			ctx := context.Background()
			ls, err := kvcore.Create(ctx, "local", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ls.Close()
			if opt != nil {
				if err := ls.SetOptimizer(ctx, opt); err != nil {
					t.Fatal(err)
				}
			}
			a, _ := kvcore.FromSlice(kvcore.CPU(0), init)
			ls.Init(ctx, kvcore.IntKey(1), a)
			for s := range steps {
				var vs []*kvcore.Array
				for r := range n {
					g, _ := kvcore.FromSlice(kvcore.CPU(0), grads[s][r])
					vs = append(vs, g)
				}
				if err := ls.Push(kvcore.IntKey(1), vs...); err != nil {
					t.Fatal(err)
				}
			}
			out, _ := kvcore.NewArray(kvcore.CPU(0), size)
			ls.Pull(kvcore.IntKey(1), out)
			want, err := out.ToSlice(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The state machine, pushes in a random order each round.
			h := newHarness(t, Config{})
			for c := ConnID(1); c <= n; c++ {
				h.hello(c, n)
			}
			if opt != nil {
				js, _ := json.Marshal(opt)
				h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: h.nextSeq(1), Key: CmdController}, Payload: js})
				h.acks()
			}
			for c := ConnID(1); c <= n; c++ {
				h.init(c, 1, init)
			}
			for s := range steps {
				order := rng.Perm(n)
				for i, r := range order {
					c := ConnID(r + 1) // conn r+1 joined r-th: rank r
					h.step(c, dataMsg(wire.TypePushPull, h.nextSeq(c), 1, uint64(s), grads[s][r]))
					if got := len(h.acks()); (i < n-1 && got != 0) || (i == n-1 && got != n) {
						t.Fatalf("step %d: %d acks after %d of %d pushes", s, got, i+1, n)
					}
				}
				for _, e := range h.acks() {
					if e.Msg.Round != uint64(s) {
						t.Fatalf("ack of round %d, want %d", e.Msg.Round, s)
					}
				}
			}
			got := wire.Float32View(h.acks()[0].Msg.Data(), nil)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("[%d] = %v, single process %v", i, got[i], want[i])
				}
			}
		})
	}
}

// A snapshot restores the whole durable state: the restored Job writes
// the same snapshot, resumes workers by id, answers a retried push from
// its cache, and keeps values and optimizer states.
func TestSnapshotRestore(t *testing.T) {
	h := newHarness(t, Config{})
	h.hello(1, 2)
	h.hello(2, 0)
	var ids, keys []string
	for _, e := range h.out {
		if e.Msg.Type != wire.TypeWelcome {
			continue // membership notices
		}
		w, err := wire.DecodeWelcome(e.Msg.Payload, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids, keys = append(ids, w.WorkerID), append(keys, w.ResumeKey)
	}
	js := []byte(`{"name":"adam","learning_rate":0.1}`)
	h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: h.nextSeq(1), Key: CmdController}, Payload: js})
	h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: h.nextSeq(1), Key: CmdCompression}, Payload: []byte("2bit,0.5")})
	h.init(1, 5, []float32{1, 2, 3})
	h.init(2, 5, []float32{0, 0, 0})
	h.step(1, dataMsg(wire.TypePush, h.nextSeq(1), 5, 0, []float32{1, 1, 1}))
	pushSeq := h.seq[2] + 1
	h.step(2, dataMsg(wire.TypePush, h.nextSeq(2), 5, 0, []float32{2, 2, 2}))
	if len(h.acks()) != 2 {
		t.Fatalf("round did not close: %d acks", len(h.acks()))
	}
	h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypePull, Seq: h.nextSeq(1), Key: 5}})
	before := append([]float32(nil), wire.Float32View(h.acks()[0].Msg.Data(), nil)...)

	snap, err := h.j.AppendSnapshot(nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(Config{Job: "t"}, snap, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	snap2, err := r.AppendSnapshot(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap, snap2) {
		t.Fatalf("restored job writes a different snapshot (%d vs %d bytes)", len(snap2), len(snap))
	}
	h2 := &harness{t: t, j: r, now: time.Second, seq: h.seq}
	// Worker 2 resumes on a new connection and retries its push.
	h2.keep(r.Step(h2.now, 12, wire.AppendHello(nil, &wire.Hello{Job: "t", Mode: wire.ModeSync, WorkerID: ids[1], ResumeKey: keys[1]})))
	if len(h2.out) != 2 || h2.out[0].Msg.Type != wire.TypeWelcome || !wire.IsMembers(&h2.out[1].Msg) {
		t.Fatalf("resume: %+v, want a Welcome and a membership notice", h2.out)
	}
	if rs, err := wire.DecodeMembers(&h2.out[1].Msg, nil); err != nil || fmt.Sprint(rs) != "[0 1]" {
		t.Fatalf("resume: members %v (%v), want [0 1]", rs, err)
	}
	h2.step(12, dataMsg(wire.TypePush, pushSeq, 5, 0, []float32{2, 2, 2}))
	a := h2.acks()
	if len(a) != 1 || a[0].Msg.Flags&wire.FlagDup == 0 {
		t.Fatalf("retried push after restore: %+v, want one dup ack", a)
	}
	h2.step(12, &wire.Msg{Header: wire.Header{Type: wire.TypePull, Seq: h2.nextSeq(2), Key: 5}}) // seqs are per worker
	after := wire.Float32View(h2.acks()[0].Msg.Data(), nil)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("value after restore %v, before %v", after, before)
	}
	// An unknown worker id cannot resume; the job's optimizer and states
	// survived (SaveStates has adam's two arrays).
	h2.keep(r.Step(h2.now, 13, wire.AppendHello(nil, &wire.Hello{Job: "t", Mode: wire.ModeSync, WorkerID: "t/99"})))
	if h2.out[0].Msg.Code != wire.CodeRemoved {
		t.Fatalf("unknown id: %+v", h2.out[0])
	}
	h2.step(12, &wire.Msg{Header: wire.Header{Type: wire.TypeSaveStates, Seq: h2.nextSeq(2)}})
	st, err := wire.DecodeStates(h2.acks()[0].Msg.Payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Keys) != 1 || len(st.Keys[0].States) != 2 || st.Keys[0].T != 1 || string(st.Optimizer) != string(js) {
		t.Fatalf("states after restore: %+v", st)
	}
}

// Every truncation and every flipped byte of a snapshot is refused with
// ErrBadSnapshot; nothing panics.
func TestSnapshotCorrupt(t *testing.T) {
	h := newHarness(t, Config{})
	h.hello(1, 0)
	h.init(1, 5, []float32{1, 2, 3})
	snap, err := h.j.AppendSnapshot(nil)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(snap) {
		if _, err := Restore(Config{}, snap[:n], 0); err == nil {
			t.Fatalf("truncated to %d of %d bytes: accepted", n, len(snap))
		}
	}
	for i := range snap {
		b := append([]byte(nil), snap...)
		b[i] ^= 0x40
		if j, err := Restore(Config{}, b, 0); err == nil {
			j.Close()
			t.Fatalf("byte %d flipped: accepted", i)
		} else if !strings.Contains(err.Error(), "snapshot") {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
}

// Pushes queued behind the open round (a worker that pushed twice, a late
// joiner) open the next round in order; the round counter of each ack
// tells the worker where it stands.
func TestQueuedPushesOpenNextRound(t *testing.T) {
	h := newHarness(t, Config{})
	h.hello(1, 2)
	h.hello(2, 0)
	h.init(1, 1, []float32{0})
	h.init(2, 1, []float32{0})
	h.step(1, dataMsg(wire.TypePush, h.nextSeq(1), 1, 0, []float32{1}))
	h.step(1, dataMsg(wire.TypePush, h.nextSeq(1), 1, 0, []float32{10})) // queued: worker 1 is in already
	if len(h.acks()) != 0 {
		t.Fatal("second push of one worker closed a round")
	}
	h.step(2, dataMsg(wire.TypePush, h.nextSeq(2), 1, 0, []float32{2}))
	if a := h.acks(); len(a) != 2 || a[0].Msg.Round != 0 {
		t.Fatalf("round 0 acks: %+v", a)
	}
	h.step(2, dataMsg(wire.TypePushPull, h.nextSeq(2), 1, 1, []float32{20}))
	a := h.acks()
	if len(a) != 2 || a[0].Msg.Round != 1 {
		t.Fatalf("round 1 acks: %+v", a)
	}
	for _, e := range a {
		if e.Msg.DType == wire.DTypeF32 {
			if v := wire.Float32View(e.Msg.Data(), nil); v[0] != 30 {
				t.Fatalf("round 1 value %v, want 30", v)
			}
		}
	}
}

// A job's queue of open rounds (which the round deadline reads) does not
// grow with the number of rounds: without a deadline nothing is queued, with
// one the closed rounds leave it.
func TestOpenRoundsBounded(t *testing.T) {
	for _, dl := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprint(dl), func(t *testing.T) {
			h := newHarness(t, Config{RoundDeadline: dl})
			h.hello(1, 1)
			h.init(1, 1, []float32{0})
			for r := range 1000 {
				h.step(1, dataMsg(wire.TypePush, h.nextSeq(1), 1, uint64(r), []float32{1}))
				if a := h.acks(); len(a) != 1 || a[0].Msg.Round != uint64(r) {
					t.Fatalf("round %d acks: %+v", r, a)
				}
				h.keep(h.j.Tick(h.now))
			}
			if n := len(h.j.openQ); n > 1 {
				t.Fatalf("deadline %v: %d open rounds queued after 1000 closed rounds", dl, n)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{Shards: 2, Shard: 2}, {QuorumFrac: 2}, {Heartbeat: time.Second, Timeout: time.Millisecond}, {QuorumMin: -1}} {
		if _, err := New(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

// FuzzStep feeds arbitrary frames (and valid ones built from fuzzed
// fields) to a Job with two joined workers: nothing panics, every answer is
// a well-formed message, the budget in use is exactly what the keys and
// waiting inits reserved, and all of it comes back at Close.
func FuzzStep(f *testing.F) {
	f.Add([]byte{}, uint8(wire.TypePush), uint64(1), uint64(3), uint32(2), []byte{0, 0, 128, 63, 0, 0, 0, 64})
	f.Add([]byte("wk"), uint8(wire.TypeInit), uint64(2), uint64(3), uint32(1), []byte{1, 3, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte, typ uint8, seq, key uint64, count uint32, payload []byte) {
		budget := NewBudget(1 << 12)
		j, err := New(Config{Job: "f", MaxKeys: 4, MaxBytes: 1 << 11, Budget: budget, Limits: &wire.Limits{MaxPayload: 1 << 16}})
		if err != nil {
			t.Fatal(err)
		}
		check := func(rd Ready) {
			for _, e := range rd.Msgs {
				var m wire.Msg
				if err := wire.Decode(wire.Append(nil, &e.Msg), nil, &m); err != nil {
					t.Fatalf("job sent a bad message: %v", err)
				}
			}
			checkBudget(t, j)
		}
		defer func() {
			j.Close()
			if j.BudgetUsed() != 0 || budget.Used() != 0 {
				t.Fatalf("after Close: %d bytes of the job's budget and %d of the shared one still in use", j.BudgetUsed(), budget.Used())
			}
		}()
		check(j.Step(0, 1, wire.AppendHello(nil, &wire.Hello{Job: "f", Mode: wire.ModeSync})))
		check(j.Step(0, 2, wire.AppendHello(nil, &wire.Hello{Job: "f", Mode: wire.ModeSync})))
		check(j.Step(1, 1, raw))
		m := wire.Msg{Header: wire.Header{Type: wire.Type(typ), Seq: seq, Key: key, DType: wire.DTypeF32, Count: count, Total: count}, Payload: payload}
		check(j.Step(2, 2, wire.Append(nil, &m)))
		m.DType = wire.DType2Bit
		check(j.Step(3, 2, wire.Append(nil, &m)))
		check(j.Tick(time.Hour))
	})
}

// TestFreeRoundsForgetRemovedWorkers: closed rounds wait in the job's free
// list with the members they opened with; a worker that leaves is dropped
// from them (and from the job's members) too, so a free round that is not reused soon does not keep it (and
// what it holds) alive.
func TestFreeRoundsForgetRemovedWorkers(t *testing.T) {
	ws := newListWorkers(t, Config{Job: "free"}, 2, 8, 4)
	j := ws[0].j
	// The first list opens a list round of the 8 keys; the second
	// worker's first list closes keys 0-3 in it, and, shorter, splits
	// keys 4-7 into their own rounds, which its second list closes.
	ws[0].step(ws[0].list(wire.TypePushList, 0, 8, 0))
	ws[1].step(ws[1].list(wire.TypePushList, 0, 4, 0))
	ws[1].step(ws[1].list(wire.TypePushList, 4, 8, 0))
	if len(j.ls.t.lrs) != 0 {
		t.Fatalf("%d list rounds open after the lists that differ", len(j.ls.t.lrs))
	}
	if len(j.roundFree) < 4 {
		t.Fatalf("%d free rounds after 4 closed, want 4", len(j.roundFree))
	}
	gone := j.ranks[1]
	if gone == nil {
		t.Fatal("no worker of rank 1")
	}
	ws[1].seq++
	ws[1].step(wire.AppendHeader(nil, &wire.Header{Type: wire.TypeLeave, Seq: ws[1].seq}))
	if _, ok := j.workers[gone.id]; ok {
		t.Fatal("the worker that left is still in the job")
	}
	for i, r := range j.roundFree {
		if r.mem != nil {
			for _, w := range r.mem.w {
				if w == gone {
					t.Fatalf("free round %d still expects the worker that left", i)
				}
			}
		}
	}
	if m := j.members(); m.n != 1 || len(m.w) > 1 && m.w[1] != nil {
		t.Fatalf("the job's members after the leave: %d workers, %v", m.n, m.w)
	}
}

// sortedKeys lists every key in id order: the keys of byID as they lie,
// the others (an id too large for byID when it was created, even one
// that byID covers later, a huge id, string keys) sorted and merged in.
func TestSortedKeys(t *testing.T) {
	h := newHarness(t, Config{MaxKeys: 1000})
	h.hello(1, 1)
	initKey := func(id uint64, name string) {
		m := dataMsg(wire.TypeInit, h.nextSeq(1), id, 0, []float32{1})
		if name != "" {
			m.Key, m.Flags = wire.StrKeyID(name), m.Flags|wire.FlagStrKey
		}
		m.Payload = wire.AppendFloat32s(wire.AppendInitMeta(nil, &wire.InitMeta{Name: name, Shape: []int64{1}}), []float32{1})
		h.step(1, m)
		h.acks()
	}
	initKey(1500, "") // not in byID (too large for 1 key), later within its length
	initKey(1<<40, "")
	initKey(0, "w")
	for id := range uint64(400) {
		initKey(id, "")
	}
	initKey(1600, "") // in byID: byID now covers 1500
	initKey(0, "b")
	if len(h.j.byID) <= 1500 || h.j.byID[1500].k != nil {
		t.Fatalf("byID has %d entries, key 1500 in it: %v (the test wants it covered, not in it)", len(h.j.byID), len(h.j.byID) > 1500 && h.j.byID[1500].k != nil)
	}
	got := h.j.sortedKeys()
	if len(got) != len(h.j.keys) {
		t.Fatalf("%d keys listed, the job has %d", len(got), len(h.j.keys))
	}
	seen := map[*key]bool{}
	for i, k := range got {
		if seen[k] || h.j.keys[k.id] != k {
			t.Fatalf("entry %d: key %d listed twice or not the job's", i, k.id)
		}
		seen[k] = true
		if i > 0 && got[i-1].id >= k.id {
			t.Fatalf("entry %d: id %d after %d", i, k.id, got[i-1].id)
		}
	}
}
