package psm

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/wire"
)

// wrappedCPU is the CPU backend behind another type: psm sees neither a
// *compute.CPU nor a compute.FiniteWriter, so every push takes the
// general path (check, then Write).
type wrappedCPU struct{ compute.Backend }

// TestPushListCleanRunsMatchGeneral runs the same seeded push and pull
// lists (keys of 1 to 100 words and some above cleanKeyMax, a NaN or ±Inf
// planted at the first, a middle or the last element of some keys, late
// pushes, one or two workers, dist_sync and dist_async with sgd) on a job with the CPU backend, whose push lists
// check runs of keys at once and copy them straight into their buffers,
// and on one with a wrapped CPU backend: every message either sends must
// be the same, byte for byte.
func TestPushListCleanRunsMatchGeneral(t *testing.T) {
	for seed := uint64(1); seed <= 16; seed++ {
		mode := wire.ModeSync
		if seed%4 == 0 {
			mode = wire.ModeAsync
		}
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Logf("seed %d, mode %v", seed, mode)
			rng := rand.New(rand.NewPCG(seed, 99))
			nkeys := 1 + rng.IntN(300)
			sizes := make([]int, nkeys)
			for i := range sizes {
				sizes[i] = 1 + rng.IntN(100)
				if rng.IntN(40) == 0 {
					sizes[i] = cleanKeyMax + 1 + rng.IntN(300)
				}
			}
			workers := 1 + rng.IntN(2)
			jobs := []*Job{}
			for _, be := range []compute.Backend{compute.NewCPU(nil), wrappedCPU{compute.NewCPU(nil)}} {
				j, err := New(Config{Job: "t", Backend: be})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(j.Close)
				jobs = append(jobs, j)
			}
			var outs [2][]byte
			step := func(c ConnID, frame []byte) {
				for x, j := range jobs {
					for _, e := range j.Step(0, c, frame).Msgs {
						outs[x] = fmt.Appendf(outs[x], "to %d: ", e.To)
						outs[x] = wire.Append(outs[x], &e.Msg)
					}
				}
				if !bytes.Equal(outs[0], outs[1]) {
					t.Fatalf("the CPU backend's job and the wrapped one's answered differently")
				}
			}
			seq := map[ConnID]uint64{}
			for c := ConnID(1); c <= ConnID(workers); c++ {
				for _, j := range jobs { // the welcome holds a random token
					j.Step(0, c, wire.AppendHello(nil, &wire.Hello{Job: "t", Mode: mode, Want: uint32(workers)}))
				}
			}
			if mode == wire.ModeAsync {
				seq[1]++
				step(1, wire.Append(nil, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: seq[1], Key: CmdController}, Payload: []byte(`{"name":"sgd","learning_rate":0.5}`)}))
			}
			for c := ConnID(1); c <= ConnID(workers); c++ {
				for id, n := range sizes {
					seq[c]++
					vals := make([]float32, n)
					m := dataMsg(wire.TypeInit, seq[c], uint64(id), 0, vals)
					m.Payload = wire.AppendFloat32s(wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{int64(n)}}), vals)
					step(c, wire.Append(nil, m))
				}
			}
			bad := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}
			round := make([]uint64, workers+1)
			for range 6 {
				for c := ConnID(1); c <= ConnID(workers); c++ {
					var b wire.ListBuilder
					b.Reset(wire.TypePushList, nkeys)
					var data []byte
					total := 0
					for id, n := range sizes {
						vals := make([]float32, n)
						for e := range vals {
							vals[e] = rng.Float32()*2 - 1
						}
						if rng.IntN(25) == 0 {
							vals[[]int{0, n / 2, n - 1}[rng.IntN(3)]] = bad[rng.IntN(3)]
						}
						r := round[c]
						if r > 0 && rng.IntN(30) == 0 {
							r-- // late
						}
						b.Add(uint64(id), r)
						data = wire.AppendFloat32s(data, vals)
						total += n
					}
					seq[c]++
					h := b.ListHeader(seq[c], 0, 0, total)
					step(c, wire.Append(nil, &wire.Msg{Header: h, Payload: append(append([]byte(nil), b.Table()...), data...)}))
					round[c]++
				}
				var b wire.ListBuilder
				b.Reset(wire.TypePullList, nkeys)
				total := 0
				for id, n := range sizes {
					b.Add(uint64(id), 0)
					total += n
				}
				seq[1]++
				step(1, wire.Append(nil, &wire.Msg{Header: b.ListHeader(seq[1], 0, 0, total), Payload: b.Table()}))
			}
			if st := jobs[0].Stats(); st.Updates == 0 || st.NonFinite == 0 || st.LatePushes == 0 && mode == wire.ModeSync && workers == 1 {
				t.Fatalf("stats %+v: the lists were not applied, or held no bad value or late push", st)
			}
		})
	}
}
