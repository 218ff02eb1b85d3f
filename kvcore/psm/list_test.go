package psm

import (
	"testing"
	"time"

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
	f.Add(listFrame(scripttest.Parse(f, "pushlist seq=4 ack=3 keys=1:0:1;2:0:1/2 perkey")))
	f.Add(listFrame(scripttest.Parse(f, "pulllist seq=5 ack=3 keys=1;2;3;4 total=7")))
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
