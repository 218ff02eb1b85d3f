package psm

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/webkv/webkv/kvcore/wire"
)

// TestListSoleMatchesPushes checks a push list's one-step path for a job
// with one worker (assignSole) against single pushes of the same values,
// which take the general round path: per key the same answer (round,
// flags, refusal code), the same values afterwards and the same counts,
// through new rounds, NaN and Inf refusals, late pushes, pushes ahead of
// the round and a key pushed twice in one list.
func TestListSoleMatchesPushes(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	const keys, elems = 12, 5
	cfg := Config{Job: "s", MaxKeys: 2 * keys, Limits: &wire.Limits{MaxPayload: 1 << 20}}
	lw := newListWorker(t, cfg, keys, elems)
	sw := newListWorker(t, cfg, keys, elems)

	type push struct {
		key   int
		round uint64
		vals  []float32
	}
	type result struct {
		round uint64
		flags uint16
		code  wire.Code
	}
	named := make([]uint64, keys) // the round a well-behaved worker names next
	for step := range 8 {
		var ps []push
		for k := range keys {
			if rng.IntN(4) == 0 {
				continue // not pushed this time
			}
			p := push{key: k, round: named[k], vals: make([]float32, elems)}
			for i := range p.vals {
				p.vals[i] = float32(rng.NormFloat64())
			}
			switch rng.IntN(8) {
			case 0:
				p.vals[rng.IntN(elems)] = float32(math.NaN())
			case 1:
				p.vals[rng.IntN(elems)] = float32(math.Inf(-1))
			case 2:
				if p.round > 0 {
					p.round-- // late
				}
			case 3:
				p.round += 2 // ahead: the round it opens is the current one
			}
			ps = append(ps, p)
		}
		if step == 3 && len(ps) > 0 {
			ps = append(ps, ps[0]) // a key twice in one list
		}
		if len(ps) == 0 {
			continue
		}

		// The list.
		lw.lb.Reset(wire.TypePushList, len(ps))
		var data []byte
		for _, p := range ps {
			lw.lb.Add(uint64(p.key), p.round)
			data = wire.AppendFloat32s(data, p.vals)
		}
		lw.seq++
		h := lw.lb.ListHeader(lw.seq, lw.seq, 0, len(ps)*elems)
		h.PLen = uint32(len(lw.lb.Table()) + len(data))
		frame := append(append(wire.AppendHeader(nil, &h), lw.lb.Table()...), data...)
		rd := lw.j.Step(0, 1, frame)
		if len(rd.Msgs) != 1 {
			t.Fatalf("step %d: the push list got %d answers, want 1", step, len(rd.Msgs))
		}
		rs, _, err := wire.DecodeListAnswer(&rd.Msgs[0].Msg, len(ps), nil)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		var got []result
		for i, r := range rs {
			x := result{flags: r.Flags, code: r.Code}
			if r.Code == wire.CodeOK {
				x.round = uint64(int64(ps[i].round) + r.Delta)
			}
			got = append(got, x)
		}

		// The same pushes one by one.
		var want []result
		for _, p := range ps {
			sw.seq++
			m := &wire.Msg{Header: wire.Header{Type: wire.TypePush, Seq: sw.seq, Ack: sw.seq, Key: uint64(p.key), Round: p.round,
				DType: wire.DTypeF32, Count: elems, Total: elems}, Payload: wire.AppendFloat32s(nil, p.vals)}
			rd := sw.j.Step(0, 1, wire.Append(nil, m))
			if len(rd.Msgs) != 1 {
				t.Fatalf("step %d: a push of key %d got %d answers, want 1", step, p.key, len(rd.Msgs))
			}
			a := rd.Msgs[0].Msg
			x := result{flags: a.Flags, round: a.Round}
			if a.Type == wire.TypeError {
				x = result{code: a.Code}
			}
			want = append(want, x)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("step %d: list answers %+v, single pushes %+v", step, got, want)
		}
		for i, p := range ps {
			if got[i].code == wire.CodeOK {
				named[p.key] = got[i].round + 1
			}
		}

		// The values and counts.
		for k := range keys {
			a, b := lw.j.key(uint64(k)), sw.j.key(uint64(k))
			av, err := lw.j.hostValue(a)
			if err != nil {
				t.Fatal(err)
			}
			bv, err := sw.j.hostValue(b)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(av, bv) || a.rounds != b.rounds || a.cur.open != b.cur.open || len(a.queued) != len(b.queued) {
				t.Fatalf("step %d: key %d: list %v round %d open %v queued %d, single pushes %v round %d open %v queued %d",
					step, k, av, a.rounds, a.cur.open, len(a.queued), bv, b.rounds, b.cur.open, len(b.queued))
			}
			if len(a.free)+boolInt(a.cur.open) > 2 {
				t.Fatalf("step %d: key %d holds %d free arrival buffers", step, k, len(a.free))
			}
		}
		ls, ss := lw.j.Stats(), sw.j.Stats()
		if ls.Rounds != ss.Rounds || ls.Updates != ss.Updates || ls.NonFinite != ss.NonFinite || ls.LatePushes != ss.LatePushes {
			t.Fatalf("step %d: list stats %+v, single pushes %+v", step, ls, ss)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
