package psm

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/wire"
)

// lrPair runs the same steps on two jobs of the CPU backend, one with
// list rounds and one with per-key rounds (Job.perKey), and compares
// everything they answer.
type lrPair struct {
	t      *testing.T
	jobs   [2]*Job
	outs   [2][]byte
	now    time.Duration
	seq    map[ConnID]uint64
	budget *Budget
}

// countedCPU is the CPU backend behind another type (psm takes the
// general write, as for wrappedCPU) that counts its live buffers.
type countedCPU struct {
	compute.Backend
	live *int
}

func (c countedCPU) Alloc(n int) (compute.Buffer, error) {
	b, err := c.Backend.Alloc(n)
	if err == nil {
		*c.live++
	}
	return b, err
}

func (c countedCPU) Free(b compute.Buffer) {
	*c.live--
	c.Backend.Free(b)
}

func newLRPair(t *testing.T, cfg Config, workers, keys int, live *int) *lrPair {
	p := &lrPair{t: t, seq: map[ConnID]uint64{}, budget: NewBudget(1 << 30)}
	for x := range p.jobs {
		c := cfg
		var be compute.Backend = compute.NewCPU(nil)
		if live != nil {
			be = countedCPU{be, live}
		}
		c.Job, c.Backend, c.Rand, c.Budget, c.Timeout = "lr", be, &countingReader{}, p.budget, time.Hour
		j, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		j.perKey = x == 1
		p.jobs[x] = j
	}
	for c := 1; c <= workers; c++ {
		p.step(ConnID(c), wire.AppendHello(nil, &wire.Hello{Job: "lr", Mode: wire.ModeSync, Want: uint32(workers)}))
	}
	for c := 1; c <= workers; c++ {
		for id := range keys {
			vals := []float32{float32(id), 1, 2}
			m := dataMsg(wire.TypeInit, p.next(ConnID(c)), uint64(id), 0, vals)
			m.Payload = wire.AppendFloat32s(wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{3}}), vals)
			p.step(ConnID(c), wire.Append(nil, m))
		}
	}
	return p
}

func (p *lrPair) next(c ConnID) uint64 { p.seq[c]++; return p.seq[c] }

func (p *lrPair) record(x int, rd Ready) {
	for _, e := range rd.Msgs {
		p.outs[x] = fmt.Appendf(p.outs[x], "to %d: ", e.To)
		p.outs[x] = wire.Append(p.outs[x], &e.Msg)
	}
	p.outs[x] = fmt.Appendf(p.outs[x], "close %v persist %v next %v notes %+v stats %+v\n", rd.Close, rd.Persist, rd.Next, rd.Notes, p.jobs[x].Stats())
}

func (p *lrPair) check(what string) {
	p.t.Helper()
	if !bytes.Equal(p.outs[0], p.outs[1]) {
		p.t.Fatalf("%s: list rounds and per-key rounds answered differently", what)
	}
}

func (p *lrPair) step(c ConnID, frame []byte) {
	p.t.Helper()
	for x, j := range p.jobs {
		p.record(x, j.Step(p.now, c, frame))
	}
	p.check(fmt.Sprintf("step of worker %d at %v", c, p.now))
}

func (p *lrPair) tick(d time.Duration) {
	p.t.Helper()
	p.now += d
	for x, j := range p.jobs {
		p.record(x, j.Tick(p.now))
	}
	p.check(fmt.Sprintf("tick at %v", p.now))
}

// list pushes keys [from, to) as worker c for round r; the value of key
// bad (if in the list) holds a NaN, and key late is named a round early.
func (p *lrPair) list(c ConnID, from, to int, r uint64, bad, late int) {
	p.t.Helper()
	var b wire.ListBuilder
	b.Reset(wire.TypePushList, to-from)
	var data []byte
	for id := from; id < to; id++ {
		v := []float32{float32(c) / 7, float32(id) / 3, float32(r) + 0.1} // sums that round: their order shows
		if id == bad {
			v[1] = float32(math.NaN())
		}
		kr := r
		if id == late {
			kr--
		}
		b.Add(uint64(id), kr)
		data = wire.AppendFloat32s(data, v)
	}
	h := b.ListHeader(p.next(c), 0, 0, 3*(to-from))
	p.step(c, wire.Append(nil, &wire.Msg{Header: h, Payload: append(append([]byte(nil), b.Table()...), data...)}))
}

func (p *lrPair) push(c ConnID, id int, r uint64) {
	p.t.Helper()
	p.step(c, wire.Append(nil, dataMsg(wire.TypePush, p.next(c), uint64(id), r, []float32{9, 9, float32(c)})))
}

// open returns how many list rounds the first job holds open.
func (p *lrPair) open() int { return len(p.jobs[0].ls.t.lrs) }

// TestListRoundSplits: every way a list round of a job's workers is split
// into its keys' own rounds, each compared, answer for answer, with a job
// that takes per-key rounds only; and the list rounds a training step's
// lists take, joined and closed by the last list.
func TestListRoundSplits(t *testing.T) {
	const keys = 10
	none := -1
	cases := []struct {
		name    string
		workers int
		cfg     Config
		run     func(p *lrPair)
	}{
		{"steps", 3, Config{}, func(p *lrPair) {
			for r := range uint64(3) {
				p.list(1, 0, keys, r, none, none)
				p.list(3, 0, keys, r, none, none)
				if p.open() != 1 {
					p.t.Fatalf("round %d: %d list rounds open after two of three lists, want 1", r, p.open())
				}
				p.list(2, 0, keys, r, none, none)
				if p.open() != 0 {
					p.t.Fatalf("round %d: %d list rounds open after the last list", r, p.open())
				}
			}
		}},
		{"other run of keys", 2, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
			p.list(2, 3, keys, 0, none, none)
			p.list(2, 0, 3, 0, none, none)
		}},
		{"shorter list", 3, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
			p.list(2, 0, keys-3, 0, none, none) // splits keys 7-9 with both lists' pushes... of 0-6 only
			p.list(3, 0, keys, 0, none, none)
			p.list(2, keys-3, keys, 0, none, none)
		}},
		{"shorter last list", 2, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
			p.list(2, 0, keys-3, 0, none, none)
			p.list(2, keys-3, keys, 0, none, none)
		}},
		{"longer list", 3, Config{}, func(p *lrPair) {
			p.list(1, 0, keys-2, 0, none, none)
			p.list(2, 0, keys, 0, none, none)
			p.list(3, 0, keys, 0, none, none)
		}},
		{"single push", 2, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
			p.push(2, 4, 0)
			p.list(2, 0, keys, 0, none, none) // key 4's push queues
		}},
		{"second list of a worker", 2, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
			p.list(1, 0, keys, 1, none, none) // queued behind the open rounds
			p.list(2, 0, keys, 0, none, none)
			p.list(2, 0, keys, 1, none, none)
		}},
		{"NaN in a joining list", 3, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
			p.list(2, 0, keys, 0, 5, none)
			p.list(3, 0, keys, 0, none, none)
		}},
		{"NaN in the last list", 2, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
			p.list(2, 0, keys, 0, 5, none)
		}},
		{"NaN in the opening list", 2, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, 5, none)
			p.list(2, 0, keys, 0, none, none)
		}},
		{"late key in the last list", 2, Config{RoundDeadline: 10, QuorumMin: 1}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
			p.list(2, 0, keys, 0, none, none)
			p.list(1, 0, keys, 1, none, none)
			p.tick(20) // round 1 closes at its deadline without worker 2
			p.list(2, 0, keys, 1, none, none)
			p.list(1, 0, keys, 2, none, none)
			p.list(2, 0, keys, 2, none, 6)
		}},
		{"deadline", 3, Config{RoundDeadline: 10, QuorumMin: 1}, func(p *lrPair) {
			p.now = 5
			p.push(3, 7, 0) // key 7's own round opens first
			p.list(1, 0, keys-3, 0, none, none)
			p.tick(3)
			p.list(2, 0, keys-3, 0, none, none)
			p.tick(3)
			if p.open() != 1 {
				p.t.Fatalf("%d list rounds open before the deadline, want 1", p.open())
			}
			p.tick(5) // due: key 7's round, then the list round's keys, in that order
			if p.open() != 0 {
				p.t.Fatalf("%d list rounds open after the deadline", p.open())
			}
			p.list(3, 0, keys-3, 0, none, none) // late
		}},
		{"many list rounds", 3, Config{RoundDeadline: 10, QuorumMin: 1}, func(p *lrPair) {
			for id := range keys { // a list round a key, two opened at each time
				p.now += time.Duration(id % 2)
				p.list(1, id, id+1, 0, none, none)
			}
			if p.open() != keys {
				p.t.Fatalf("%d list rounds open, want %d", p.open(), keys)
			}
			p.list(2, 4, 5, 0, none, none)
			p.push(3, 7, 0)                                                                       // splits key 7's
			p.list(3, 2, 4, 0, none, none)                                                        // splits key 2's (another run)
			p.tick(6)                                                                             // due: keys 0-3's
			p.step(2, wire.AppendHeader(nil, &wire.Header{Type: wire.TypeLeave, Seq: p.next(2)})) // splits the rest
			if p.open() != 0 {
				p.t.Fatalf("%d list rounds open after a worker left", p.open())
			}
			p.tick(20)
		}},
		{"leave", 3, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
			p.list(2, 0, keys, 0, none, none)
			p.step(3, wire.AppendHeader(nil, &wire.Header{Type: wire.TypeLeave, Seq: p.next(3)}))
		}},
		{"a worker that left pushed", 3, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
			p.list(2, 0, keys, 0, none, none)
			p.step(2, wire.AppendHeader(nil, &wire.Header{Type: wire.TypeLeave, Seq: p.next(2)}))
			p.list(3, 0, keys, 0, none, none)
		}},
		{"optimizer and mean", 2, Config{Aggregate: Aggregate{Kind: AggMean}}, func(p *lrPair) {
			p.step(1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: p.next(1), Key: CmdController}, Payload: []byte(`{"name":"adam","learning_rate":0.01}`)}))
			for r := range uint64(3) {
				p.list(2, 0, keys, r, none, none)
				p.list(1, 0, keys, r, none, none)
			}
		}},
		{"mean", 3, Config{Aggregate: Aggregate{Kind: AggMean}}, func(p *lrPair) {
			for r := range uint64(2) {
				p.list(3, 0, keys, r, none, none)
				p.list(1, 0, keys, r, none, none)
				p.list(2, 0, keys, r, none, none)
			}
		}},
		{"sums, a leave, then an optimizer alone", 2, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
			p.list(2, 0, keys, 0, none, none) // closed by the sum
			p.step(2, wire.AppendHeader(nil, &wire.Header{Type: wire.TypeLeave, Seq: p.next(2)}))
			p.step(1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: p.next(1), Key: CmdController}, Payload: []byte(`{"name":"sgd","learning_rate":0.5}`)}))
			p.list(1, 0, keys, 1, none, none) // the only worker: the optimizer's step
			p.list(1, 0, keys, 2, none, none)
		}},
		{"close with a list round open", 2, Config{}, func(p *lrPair) {
			p.list(1, 0, keys, 0, none, none)
		}},
	}
	for _, tc := range cases {
		for _, counted := range []bool{false, true} {
			name := strings.ReplaceAll(tc.name, " ", "_")
			if counted {
				name += "/general_write"
			}
			t.Run(name, func(t *testing.T) {
				// On the CPU backend, pushList writes clean keys itself; on
				// another, each key takes the general write, and the
				// backend counts the buffers Close must free.
				var live *int
				if counted {
					live = new(int)
				}
				p := newLRPair(t, tc.cfg, tc.workers, keys, live)
				tc.run(p)
				pull := func(x int) string {
					var b wire.ListBuilder
					b.Reset(wire.TypePullList, keys)
					for id := range keys {
						b.Add(uint64(id), 0)
					}
					rd := p.jobs[x].Step(p.now, 1, wire.Append(nil, &wire.Msg{Header: b.ListHeader(p.seq[1]+1, 0, 0, 3*keys), Payload: b.Table()}))
					var s strings.Builder
					for _, e := range rd.Msgs {
						fmt.Fprintf(&s, "%v %x\n", e.Msg.Header, e.Msg.Payload)
					}
					return s.String() + keyStates(p.jobs[x])
				}
				if a, b := pull(0), pull(1); a != b {
					t.Fatalf("values and keys differ:\n%s\nvs (per-key rounds)\n%s", a, b)
				}
				for _, j := range p.jobs {
					j.Close()
				}
				if p.budget.Used() != 0 {
					t.Fatalf("after Close: %d bytes of the budget in use", p.budget.Used())
				}
				if live != nil && *live != 0 {
					t.Fatalf("after Close: %d buffers not freed", *live)
				}
				t.Logf("%d bytes answered", len(p.outs[0]))
			})
		}
	}
}
