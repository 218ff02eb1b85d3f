package wsm_test

import (
	"testing"

	"github.com/webkv/webkv/kvcore/internal/wsm"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// BenchmarkListPush and BenchmarkListPull are the Machine's part of a
// many-keys round (relay's BenchmarkManyKeys): 100,000 keys of 16 floats
// pushed (pulled) as list requests of 4,096 keys, built key by key
// (StartList, ListAdd, SendList), sent and answered (a push list with the
// empty Ack of a list taken as named). ns/key is one key's share, list
// request to answer taken; the answers' frames are built in the loop.
func BenchmarkListPush(b *testing.B) { benchList(b, true) }
func BenchmarkListPull(b *testing.B) { benchList(b, false) }

func benchList(b *testing.B, push bool) {
	const keys, elems, per = 100_000, 16, 4096
	m, err := wsm.New(wsm.Config{Shards: 1, Mode: wire.ModeSync, Join: transport.Join{}, NoRoundEvents: true, BatchEntries: 1})
	if err != nil {
		b.Fatal(err)
	}
	var h wire.Header
	send := func() wire.Header {
		out, ok := m.Next(0)
		if !ok {
			b.Fatal("nothing to send")
		}
		if err := wire.DecodeHeader(out.Head, nil, &h); err != nil {
			b.Fatal(err)
		}
		m.Written(0)
		return h
	}
	m.Start()
	send()
	m.Recv(0, 1, wire.AppendWelcome(nil, &wire.Welcome{WorkerID: "w", NumWorkers: 1}))
	m.Clear()
	ks := make([]*wsm.Key, keys)
	init := make([]float32, elems)
	var frame []byte
	for i := range ks {
		if ks[i], err = m.InitKey(i, wsm.KeySpec{ID: wire.IntKeyID(i), Shape: []int64{elems}, N: elems}, init); err != nil {
			b.Fatal(err)
		}
		h := send()
		frame = wire.AppendHeader(frame[:0], &wire.Header{Type: wire.TypeAck, Seq: h.Seq})
		m.Recv(0, 1, frame)
		m.Clear()
	}
	vals := make([]float32, per*elems)
	answer := wire.AppendFloat32s(nil, vals)
	lists := make([]wsm.ListReq, (keys+per-1)/per)
	lkeys := make([][]*wsm.Key, len(lists))
	b.ResetTimer()
	for range b.N {
		for li := range lists {
			l := &lists[li]
			n := min(per, keys-li*per)
			l.StartList(li, push, n, n*elems, lkeys[li])
			for _, k := range ks[li*per : li*per+n] {
				if !m.ListAdd(l, k) {
					b.Fatal("key not listable")
				}
			}
			lkeys[li] = l.Keys()
			if err := m.SendList(l, vals[:n*elems]); err != nil {
				b.Fatal(err)
			}
			h := send()
			if push {
				frame = wire.AppendHeader(frame[:0], &wire.Header{Type: wire.TypeAck, Flags: wire.FlagList, Seq: h.Seq, Count: uint32(n)})
			} else {
				ah := wire.Header{Type: wire.TypeAck, Flags: wire.FlagList, Seq: h.Seq, DType: wire.DTypeF32, Count: uint32(n * elems), Total: uint32(n * elems), PLen: uint32(4 * n * elems)}
				frame = append(wire.AppendHeader(frame[:0], &ah), answer[:4*n*elems]...)
			}
			m.Recv(0, 1, frame)
			if rd := m.Ready(); len(rd.Copies) > 0 {
				for _, c := range rd.Copies {
					wire.DecodeFloat32s(c.Src, c.Dst)
				}
				m.Copied(0)
			}
			if rd := m.Ready(); len(rd.Done) != 1 || rd.Done[0].Err != nil {
				b.Fatalf("list %d: %+v", li, rd.Done)
			}
			m.Clear()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/keys, "ns/key")
}
