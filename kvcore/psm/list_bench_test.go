package psm

import (
	"testing"

	"github.com/webkv/webkv/kvcore/wire"
)

// listWorker drives a Job as one dist_sync worker holding keys 0..keys-1
// of elems floats each, with list requests.
type listWorker struct {
	tb    testing.TB
	j     *Job
	elems int
	seq   uint64
	frame []byte
	data  []byte
	lb    wire.ListBuilder
}

func newListWorker(tb testing.TB, cfg Config, keys, elems int) *listWorker {
	j, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(j.Close)
	w := &listWorker{tb: tb, j: j, elems: elems}
	w.step(wire.AppendHello(nil, &wire.Hello{Job: cfg.Job, Mode: wire.ModeSync, Want: 1}))
	vals := make([]float32, elems)
	for k := range keys {
		w.seq++
		m := &wire.Msg{Header: wire.Header{Type: wire.TypeInit, Seq: w.seq, Ack: w.seq, Key: uint64(k), DType: wire.DTypeF32, Count: uint32(elems), Total: uint32(elems)}}
		m.Payload = wire.AppendFloat32s(wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{int64(elems)}}), vals)
		w.frame = wire.Append(w.frame[:0], m)
		w.step(w.frame)
	}
	return w
}

// step hands frame to the job and fails on an Error answer.
func (w *listWorker) step(frame []byte) {
	for _, e := range w.j.Step(0, 1, frame).Msgs {
		if e.Msg.Type == wire.TypeError {
			w.tb.Fatalf("seq %d: %v", e.Msg.Seq, wire.ErrorOf(&e.Msg))
		}
	}
}

// list returns the frame of a list request of typ for keys [from, to)
// (a push list's values are zeros, for round).
func (w *listWorker) list(typ wire.Type, from, to int, round uint64) []byte {
	w.lb.Reset(typ, to-from)
	for k := from; k < to; k++ {
		w.lb.Add(uint64(k), round)
	}
	w.seq++
	h := w.lb.ListHeader(w.seq, w.seq, 0, (to-from)*w.elems)
	var d []byte
	if typ == wire.TypePushList {
		if n := 4 * (to - from) * w.elems; len(w.data) < n {
			w.data = make([]byte, n)
		}
		d = w.data[:4*(to-from)*w.elems]
	}
	h.PLen = uint32(len(w.lb.Table()) + len(d))
	w.frame = append(wire.AppendHeader(w.frame[:0], &h), w.lb.Table()...)
	return append(w.frame, d...)
}

// BenchmarkListManyKeys is the server's part of relay's BenchmarkManyKeys
// without I/O: 100,000 keys of 16 floats, one dist_sync worker, every key
// pushed (one round) then pulled in list requests of 4,096 keys, as the
// client sends them. ns/key is one key pushed and pulled.
func BenchmarkListManyKeys(b *testing.B) {
	const keys, elems, per = 100_000, 16, 4096
	w := newListWorker(b, Config{Job: "b", MaxKeys: 2 * keys, Limits: &wire.Limits{MaxPayload: 1 << 24}}, keys, elems)
	b.ResetTimer()
	for round := range uint64(b.N) {
		for _, typ := range []wire.Type{wire.TypePushList, wire.TypePullList} {
			for from := 0; from < keys; from += per {
				b.StopTimer()
				f := w.list(typ, from, min(from+per, keys), round)
				b.StartTimer()
				w.step(f)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/keys, "ns/key")
}
