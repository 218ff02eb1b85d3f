package psm

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/wire"
)

// TestPushListRoundsMatchGeneral runs seeded workloads of push and pull
// lists and single pushes through the rounds of a sync (or async) job
// with one to three workers, in three jobs: a push list's clean keys
// arrive from pushList's own loop on the CPU backend (into a list round
// while the lists are alike, listround.go), every key goes through
// pushListKey on a wrapped CPU backend (the general write, into a list
// round too), and the CPU backend's job with list rounds off takes every
// key in its own round (the round opened, the arrival written in its
// slot, the round closed and its list keys settled in closeRound's loop).
// All must answer byte for byte the same, with the same notes and
// timers, through: workers that push the same lists (list rounds joined
// and closed by the last list) or other runs of keys, shorter or longer
// (list rounds split), single pushes of a key in a list round, workers that
// run a round ahead (their pushes queue for the next round) or two (a
// second push while one is queued is refused), round deadlines that fire
// mid-list with a quorum, at a Tick or at the push that brings the quorum
// (rescaled rounds, late pushes after them), NaN
// and ±Inf planted, sgd and adam (sync and async, also set mid-run), the aggregate rules,
// and a worker that leaves while its rounds are open. The seed is logged;
// so is a hash of everything the jobs sent (the same before and after a
// change of the round path that keeps its behaviour).
func TestPushListRoundsMatchGeneral(t *testing.T) {
	seeds := uint64(96)
	if testing.Short() {
		seeds = 24
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			listRoundsWorkload(t, rand.New(rand.NewPCG(seed, 12)))
		})
	}
}

// FuzzListRounds runs TestPushListRoundsMatchGeneral's workloads from the
// fuzzer's seeds: list rounds, the general write and per-key rounds must
// answer alike whatever the steps.
func FuzzListRounds(f *testing.F) {
	f.Add(uint64(1), uint64(12))
	f.Add(uint64(19), uint64(12))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		listRoundsWorkload(t, rand.New(rand.NewPCG(a, b)))
	})
}

// listRoundsWorkload is one seeded workload of TestPushListRoundsMatchGeneral.
func listRoundsWorkload(t testing.TB, rng *rand.Rand) {
	workers := 1 + rng.IntN(3)
	mode := wire.ModeSync
	if rng.IntN(5) == 0 {
		mode = wire.ModeAsync
	}
	opt := []string{"", "", `{"name":"sgd","learning_rate":0.5}`, `{"name":"adam","learning_rate":0.01}`}[rng.IntN(4)]
	if mode == wire.ModeAsync && opt == "" {
		opt = `{"name":"sgd","learning_rate":0.25}`
	}
	cfg := Config{Job: "t", Timeout: time.Hour, Heartbeat: time.Minute}
	if rng.IntN(2) == 0 {
		// A quorum of more than one push leaves some due rounds
		// open until a later push brings it (the push closes them).
		cfg.RoundDeadline, cfg.QuorumMin, cfg.NoRescale = time.Duration(5+rng.IntN(20)), 1+rng.IntN(workers), rng.IntN(4) == 0
	}
	cfg.Aggregate = []Aggregate{{}, {}, {Kind: AggMean}, {Kind: AggMedian}, {Kind: AggTrimmedMean, Trim: 0.25}, {Kind: AggSum, Clip: 2}}[rng.IntN(6)]
	nkeys := 1 + rng.IntN(120)
	// Steady seeds are mostly training steps: every worker's
	// list of the same keys (list rounds joined and closed).
	steady := rng.IntN(2) == 0
	steady01 := 0
	if steady {
		steady01 = 1
	}
	sizes := make([]int, nkeys)
	for i := range sizes {
		sizes[i] = 1 + rng.IntN(40)
	}
	t.Logf("%d workers, %v, optimizer %q, deadline %v, aggregate %+v, %d keys, steady %v", workers, mode, opt, cfg.RoundDeadline, cfg.Aggregate, nkeys, steady)

	var jobs [3]*Job
	for x, be := range []compute.Backend{compute.NewCPU(nil), wrappedCPU{compute.NewCPU(nil)}, compute.NewCPU(nil)} {
		c := cfg
		c.Backend, c.Rand = be, &countingReader{}
		j, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(j.Close)
		j.perKey = x == 2
		jobs[x] = j
	}
	var outs [3][]byte
	record := func(x int, rd Ready) {
		for _, e := range rd.Msgs {
			outs[x] = fmt.Appendf(outs[x], "to %d: ", e.To)
			outs[x] = wire.Append(outs[x], &e.Msg)
		}
		outs[x] = fmt.Appendf(outs[x], "close %v persist %v next %v notes %+v stats %+v\n", rd.Close, rd.Persist, rd.Next, rd.Notes, jobs[x].Stats())
	}
	check := func(what string) {
		if !bytes.Equal(outs[0], outs[1]) {
			t.Fatalf("%s: the CPU backend's job (pushList's own arrivals) and the wrapped one's (the general path) answered differently", what)
		}
		if !bytes.Equal(outs[0], outs[2]) {
			t.Fatalf("%s: the job with list rounds and the one with per-key rounds answered differently", what)
		}
	}
	var now time.Duration
	step := func(c ConnID, frame []byte) {
		for x, j := range jobs {
			record(x, j.Step(now, c, frame))
		}
		check(fmt.Sprintf("step of worker %d at %v", c, now))
	}
	seq := make([]uint64, workers+1)
	next := func(c int) uint64 { seq[c]++; return seq[c] }
	for c := 1; c <= workers; c++ {
		step(ConnID(c), wire.AppendHello(nil, &wire.Hello{Job: "t", Mode: mode, Want: uint32(workers)}))
	}
	if opt != "" {
		step(1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: next(1), Key: CmdController}, Payload: []byte(opt)}))
	}
	for c := 1; c <= workers; c++ {
		for id, n := range sizes {
			vals := make([]float32, n)
			for e := range vals {
				vals[e] = float32(id%7) - 3
			}
			m := dataMsg(wire.TypeInit, next(c), uint64(id), 0, vals)
			m.Payload = wire.AppendFloat32s(wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{int64(n)}}), vals)
			step(ConnID(c), wire.Append(nil, m))
		}
	}
	bad := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}
	round := make([]uint64, workers+1) // the round each worker pushes next
	gone := make([]bool, workers+1)
	left := false
	for at := range 60 {
		c := 1 + rng.IntN(workers)
		if steady && rng.IntN(10) > 0 {
			c = 1 + at%workers // each worker's list of a step in turn
		}
		if gone[c] {
			continue
		}
		if rng.IntN(3) == 0 {
			now += time.Duration(rng.IntN(6)) // time passes without a Tick
		}
		a := rng.IntN(20)
		if steady && rng.IntN(4) > 0 {
			a = 0 // mostly the workers' lists of the whole step
		}
		switch {
		case a < 12: // a push list of a run of keys (a worker may run ahead)
			from := rng.IntN(nkeys)
			to := from + 1 + rng.IntN(nkeys-from)
			if rng.IntN(10) < 5+4*steady01 {
				// The lists of a training step: every worker
				// pushes the same keys.
				from, to = 0, nkeys
				if rng.IntN(4+16*steady01) == 0 {
					to = max(1, nkeys-1-rng.IntN(3)) // shorter
				}
			}
			badAt := -1 // a key with a NaN or ±Inf
			if rng.IntN(5+50*steady01) == 0 {
				badAt = from + rng.IntN(to-from)
			}
			var b wire.ListBuilder
			b.Reset(wire.TypePushList, to-from)
			var data []byte
			total := 0
			for id := from; id < to; id++ {
				vals := make([]float32, sizes[id])
				for e := range vals {
					vals[e] = float32(rng.IntN(64)-32) / 7 // sums that round: their order shows
				}
				if id == badAt {
					vals[rng.IntN(len(vals))] = bad[rng.IntN(3)]
				}
				r := round[c]
				if r > 0 && rng.IntN(25) == 0 {
					r-- // late if its round closed at a deadline without it
				}
				b.Add(uint64(id), r)
				data = wire.AppendFloat32s(data, vals)
				total += sizes[id]
			}
			h := b.ListHeader(next(c), 0, 0, total)
			step(ConnID(c), wire.Append(nil, &wire.Msg{Header: h, Payload: append(append([]byte(nil), b.Table()...), data...)}))
			if steady || rng.IntN(3) > 0 {
				round[c]++
			}
		case a < 13: // a single push of a key (it splits a list round it is in)
			id := rng.IntN(nkeys)
			vals := make([]float32, sizes[id])
			for e := range vals {
				vals[e] = float32(rng.IntN(64)-32) / 7 // sums that round: their order shows
			}
			step(ConnID(c), wire.Append(nil, dataMsg(wire.TypePush, next(c), uint64(id), round[c], vals)))
		case a < 15: // a pull list of every key
			var b wire.ListBuilder
			b.Reset(wire.TypePullList, nkeys)
			total := 0
			for id := range nkeys {
				b.Add(uint64(id), 0)
				total += sizes[id]
			}
			step(ConnID(c), wire.Append(nil, &wire.Msg{Header: b.ListHeader(next(c), 0, 0, total), Payload: b.Table()}))
		case a < 19: // time passes: due rounds close at their deadline
			now += time.Duration(rng.IntN(12))
			for x, j := range jobs {
				record(x, j.Tick(now))
			}
			check(fmt.Sprintf("tick at %v", now))
			if rng.IntN(6) == 0 {
				// The optimizer changes mid-run: rounds already
				// open close under the new rule.
				o := []string{`{"name":"sgd","learning_rate":0.5}`, `{"name":"adam","learning_rate":0.01}`}[rng.IntN(2)]
				step(ConnID(c), wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: next(c), Key: CmdController}, Payload: []byte(o)}))
			}
		default: // a worker leaves while its rounds are open
			if left || workers == 1 || at < 30 {
				continue
			}
			left, gone[c] = true, true
			step(ConnID(c), wire.AppendHeader(nil, &wire.Header{Type: wire.TypeLeave, Seq: next(c)}))
		}
	}
	// What the messages do not show: each key's round and change
	// mark (snapshots write the keys marked since the last).
	if a, b := keyStates(jobs[0]), keyStates(jobs[1]); a != b {
		t.Fatalf("keys differ:\n%s\nvs (the general path)\n%s", a, b)
	}
	if a, b := keyStates(jobs[0]), keyStates(jobs[2]); a != b {
		t.Fatalf("keys differ:\n%s\nvs (per-key rounds)\n%s", a, b)
	}
	st := jobs[0].Stats()
	if st.Pushes == 0 || st.Updates == 0 {
		t.Fatalf("stats %+v: nothing was pushed or applied", st)
	}
	queued := bytes.Count(outs[0], []byte("a second push while one is already queued"))
	t.Logf("transcript %x (%d bytes), %d second pushes refused, stats %+v", sha256.Sum256(outs[0]), len(outs[0]), queued, st)
}

// TestRoundRanksFrom64: a round of a job with more than 64 ranks keeps
// the arrivals of ranks from 64 in its second word (round.doneHi): it
// waits for every rank, a second push of a rank from 64 queues for the
// next round instead of counting twice, a worker of a high rank that
// leaves mid-round is no longer waited for, and the next round, opened
// with the members after the leave, does not wait for it either.
func TestRoundRanksFrom64(t *testing.T) {
	const n = 70 // connections 1..70 hold ranks 0..69
	j, err := New(Config{Job: "big", Rand: &countingReader{}, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	seq := make([]uint64, n+1)
	next := func(c int) uint64 { seq[c]++; return seq[c] }
	pushed := map[[2]uint64]bool{} // connection and seq of each push
	acked := map[uint64]int{}      // round: push acks
	step := func(c int, frame []byte) {
		for _, e := range j.Step(0, ConnID(c), frame).Msgs {
			if e.Msg.Type == wire.TypeError {
				t.Fatalf("to %d: %v", e.To, wire.ErrorOf(&e.Msg))
			}
			if e.Msg.Type == wire.TypeAck && pushed[[2]uint64{uint64(e.To), e.Msg.Seq}] {
				acked[e.Msg.Round]++
			}
		}
	}
	push := func(c int, round uint64) {
		s := next(c)
		pushed[[2]uint64{uint64(c), s}] = true
		step(c, wire.Append(nil, dataMsg(wire.TypePush, s, 0, round, []float32{1})))
	}
	for c := 1; c <= n; c++ {
		step(c, wire.AppendHello(nil, &wire.Hello{Job: "big", Mode: wire.ModeSync, Want: n}))
	}
	for c := 1; c <= n; c++ {
		m := dataMsg(wire.TypeInit, next(c), 0, 0, []float32{0})
		m.Payload = wire.AppendFloat32s(wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{1}}), []float32{0})
		step(c, wire.Append(nil, m))
	}
	for c := 1; c <= n-2; c++ { // ranks 0..67: ranks 68 and 69 missing
		push(c, 0)
	}
	push(65, 1) // rank 64 again: queued for round 1
	step(n, wire.AppendHeader(nil, &wire.Header{Type: wire.TypeLeave, Seq: next(n)}))
	if acked[0] != 0 {
		t.Fatalf("round 0 closed (%d acks) with rank 68's push missing", acked[0])
	}
	push(n-1, 0) // rank 68: round 0 closes, rank 64's queued push opens round 1
	if acked[0] != n-1 {
		t.Fatalf("round 0: %d acks, want %d", acked[0], n-1)
	}
	for c := 1; c <= n-1; c++ {
		if c != 65 {
			push(c, 1)
		}
	}
	if acked[1] != n-1 {
		t.Fatalf("round 1: %d acks after every remaining worker pushed, want %d (does it wait for the worker that left?)", acked[1], n-1)
	}
	var got []float32
	for _, e := range j.Step(0, 1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypePull, Seq: next(1), Key: 0}})).Msgs {
		if e.Msg.Type == wire.TypeAck {
			got = wire.Float32View(e.Msg.Payload, nil)
		}
	}
	if len(got) != 1 || got[0] != n-1 {
		t.Fatalf("value after round 1: %v, want [%d] (the sum of %d pushes of 1)", got, n-1, n-1)
	}
}

// keyStates lists j's keys' rounds and change marks.
func keyStates(j *Job) string {
	var b strings.Builder
	for _, k := range j.sortedKeys() {
		fmt.Fprintf(&b, "key %d: rounds %d open %v dirty %v ver %d\n", k.id, k.rounds, k.cur != nil, k.dirty, k.ver)
	}
	return b.String()
}
