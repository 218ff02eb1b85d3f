package psm

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/compute"

	"github.com/webkv/webkv/kvcore/internal/scripttest"
	"github.com/webkv/webkv/kvcore/wire"
)

// FuzzList feeds arbitrary frames to a Job whose two workers hold three
// keys, after valid list requests of one of them: nothing panics, every
// answer is a well-formed message (a push list's table decodes), the
// budget is what the keys hold, and it all comes back at Close.
func FuzzList(f *testing.F) {
	f.Add(listFrame(scripttest.Parse(f, "pushlist seq=3 ack=3 keys=1:0:1;2:0:1/2;3:0:1/2/3")))
	f.Add(listFrame(scripttest.Parse(f, "pulllist seq=3 ack=3 keys=3;1 total=4")))
	f.Add(listFrame(scripttest.Parse(f, "pushlist seq=4 ack=3 keys=2:0:1/2;2:1:1/2")))
	f.Fuzz(func(t *testing.T, frame []byte) {
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
				if m.Type == wire.TypeAck && m.Flags&wire.FlagList != 0 && m.DType == wire.DTypeNone {
					if _, _, err := wire.DecodeListAnswer(&m, int(m.Count), nil); err != nil {
						t.Fatalf("bad push list answer: %v", err)
					}
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
		for c := ConnID(1); c <= 2; c++ {
			check(j.Step(0, c, wire.AppendHello(nil, &wire.Hello{Job: "f", Mode: wire.ModeSync, Want: 2})))
		}
		for c := ConnID(1); c <= 2; c++ {
			for k, n := range []int{1, 2, 3} {
				vals := make([]float32, n)
				m := &wire.Msg{Header: wire.Header{Type: wire.TypeInit, Seq: uint64(k + 1), Key: uint64(k + 1), DType: wire.DTypeF32, Count: uint32(n), Total: uint32(n)}}
				m.Payload = wire.AppendFloat32s(wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{int64(n)}}), vals)
				check(j.Step(0, c, wire.Append(nil, m)))
			}
		}
		check(j.Step(1, 2, listFrame(scripttest.Parse(t, "pushlist seq=4 ack=4 keys=1:0:1;3:0:1/2/3"))))
		check(j.Step(1, 1, frame))
		check(j.Step(2, 1, frame)) // again: a retry, or a second push
		check(j.Tick(time.Hour))
	})
}

// cpuWrap is the CPU backend behind another type: a Job's pushes are
// written through its FiniteWriter, not copied by writeArrival itself.
type cpuWrap struct{ *compute.CPU }

// TestListDirectWrite checks that a push list written into the CPU
// backend's buffers by writeArrival itself (Job.cpu) answers, stores and
// refuses exactly as through the backend: every key length around the
// copy's 8- and 32-float units, a NaN or an Inf at the first, middle and
// last element of a key, or none.
func TestListDirectWrite(t *testing.T) {
	const keys = 3
	nan, inf := math.Float32bits(float32(math.NaN())), math.Float32bits(float32(math.Inf(-1)))
	for _, elems := range []int{1, 7, 8, 16, 33, 100} {
		for _, bad := range []int{-1, 0, elems / 2, elems - 1} {
			var got [2][]string
			for v, be := range []compute.Backend{compute.NewCPU(nil), cpuWrap{compute.NewCPU(nil)}} {
				w := newListWorker(t, Config{Job: "d", Backend: be, Limits: &wire.Limits{MaxPayload: 1 << 20}}, keys, elems)
				if w.j.cpu != (v == 0) {
					t.Fatalf("Job.cpu = %v with backend %T", w.j.cpu, be)
				}
				f := w.list(wire.TypePushList, 0, keys, 0)
				d := f[len(f)-4*keys*elems:]
				for i := range keys * elems {
					binary.LittleEndian.PutUint32(d[4*i:], math.Float32bits(float32(i+1)*0.25))
				}
				if bad >= 0 {
					binary.LittleEndian.PutUint32(d[4*(elems+bad):], nan)           // key 1
					binary.LittleEndian.PutUint32(d[4*(2*elems+elems-1-bad):], inf) // key 2
				}
				for _, e := range w.j.Step(0, w.conn, f).Msgs {
					got[v] = append(got[v], string(e.Append(nil)))
				}
				for _, e := range w.j.Step(0, w.conn, w.list(wire.TypePullList, 0, keys, 0)).Msgs {
					got[v] = append(got[v], string(e.Append(nil)))
				}
			}
			if len(got[0]) != 2 || (bad >= 0) != strings.Contains(got[0][0], "NaN") {
				t.Fatalf("%d floats, bad element %d: answers %q (want a push list's and a pull list's; a refusal with a NaN)", elems, bad, got[0])
			}
			if !slices.Equal(got[0], got[1]) {
				t.Errorf("%d floats, bad element %d: direct write answered\n%q\nthe backend's\n%q", elems, bad, got[0], got[1])
			}
		}
	}
}
