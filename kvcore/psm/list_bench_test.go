package psm

import (
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/internal/cputime"
	"github.com/webkv/webkv/kvcore/wire"
)

// listWorker drives a Job as one dist_sync worker holding keys 0..keys-1
// of elems floats each, with list requests.
type listWorker struct {
	tb    testing.TB
	j     *Job
	conn  ConnID
	elems int
	seq   uint64
	frame []byte
	data  []byte
	lb    wire.ListBuilder
}

func newListWorker(tb testing.TB, cfg Config, keys, elems int) *listWorker {
	return newListWorkers(tb, cfg, 1, keys, elems)[0]
}

// newListWorkers returns n workers of one new Job (connections 1..n, ranks
// 0..n-1), each of which inited keys 0..keys-1.
func newListWorkers(tb testing.TB, cfg Config, n, keys, elems int) []*listWorker {
	j, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(j.Close)
	ws := make([]*listWorker, n)
	for i := range ws {
		ws[i] = &listWorker{tb: tb, j: j, conn: ConnID(i + 1), elems: elems}
		ws[i].step(wire.AppendHello(nil, &wire.Hello{Job: cfg.Job, Mode: wire.ModeSync, Want: uint32(n)}))
	}
	vals := make([]float32, elems)
	for _, w := range ws {
		for k := range keys {
			w.seq++
			m := &wire.Msg{Header: wire.Header{Type: wire.TypeInit, Seq: w.seq, Ack: w.seq, Key: uint64(k), DType: wire.DTypeF32, Count: uint32(elems), Total: uint32(elems)}}
			m.Payload = wire.AppendFloat32s(wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{int64(elems)}}), vals)
			w.frame = wire.Append(w.frame[:0], m)
			w.step(w.frame)
		}
	}
	return ws
}

// step hands frame to the job and fails on an Error answer.
func (w *listWorker) step(frame []byte) {
	for _, e := range w.j.Step(0, w.conn, frame).Msgs {
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
	w.frame = append(w.frame, d...) // kept: the next frame reuses it (no garbage)
	return w.frame
}

// listBenchConfig is the list benchmarks' job: relay's defaults that a
// round reads (a round deadline of 30 s, so every round opened enters the
// deadline queue), room for twice keys.
func listBenchConfig(keys int) Config {
	return Config{Job: "b", MaxKeys: 2 * keys, RoundDeadline: 30 * time.Second, Limits: &wire.Limits{MaxPayload: 1 << 24}}
}

// BenchmarkListManyKeys is the server's part of relay's BenchmarkManyKeys
// without I/O: 100,000 keys of 16 floats, one dist_sync worker, every key
// pushed (one round) then pulled in list requests of 4,096 keys, as the
// client sends them. ns/key is one key pushed and pulled.
func BenchmarkListManyKeys(b *testing.B) { benchListKeys(b, 100_000) }

// BenchmarkListKeysInCache is BenchmarkListManyKeys with 4,096 keys, one
// list each way: the keys stay in the caches, so it measures the
// instructions a key costs, less moved by other work on the machine.
func BenchmarkListKeysInCache(b *testing.B) { benchListKeys(b, 4096) }

func benchListKeys(b *testing.B, keys int) {
	const elems, per = 16, 4096
	w := newListWorker(b, listBenchConfig(keys), keys, elems)
	b.ResetTimer()
	var cpu time.Duration
	for round := range uint64(b.N) {
		for _, typ := range []wire.Type{wire.TypePushList, wire.TypePullList} {
			for from := 0; from < keys; from += per {
				b.StopTimer()
				f := w.list(typ, from, min(from+per, keys), round)
				b.StartTimer()
				c0 := cputime.Now()
				w.step(f)
				cpu += cputime.Now() - c0
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(keys), "ns/key")
	b.ReportMetric(float64(cpu)/float64(b.N)/float64(keys), "cpu_ns/key")
}

// BenchmarkListManyKeys2 is BenchmarkListManyKeys with two workers: each
// list of 4,096 keys is pushed by both (the first opens the keys' rounds,
// the second closes them), then pulled by both. ns/key is one key pushed
// and pulled by every worker.
func BenchmarkListManyKeys2(b *testing.B) { benchListKeys2(b, 100_000) }

// BenchmarkListKeysInCache2 is BenchmarkListManyKeys2 with 4,096 keys (as
// BenchmarkListKeysInCache is BenchmarkListManyKeys).
func BenchmarkListKeysInCache2(b *testing.B) { benchListKeys2(b, 4096) }

func benchListKeys2(b *testing.B, keys int) {
	const elems, per = 16, 4096
	ws := newListWorkers(b, listBenchConfig(keys), 2, keys, elems)
	b.ResetTimer()
	var cpu time.Duration
	for round := range uint64(b.N) {
		for _, typ := range []wire.Type{wire.TypePushList, wire.TypePullList} {
			for from := 0; from < keys; from += per {
				for _, w := range ws {
					b.StopTimer()
					f := w.list(typ, from, min(from+per, keys), round)
					b.StartTimer()
					c0 := cputime.Now()
					w.step(f)
					cpu += cputime.Now() - c0
				}
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(keys), "ns/key")
	b.ReportMetric(float64(cpu)/float64(b.N)/float64(keys), "cpu_ns/key")
}
