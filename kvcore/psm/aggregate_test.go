package psm

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
)

// aggOracle is the reference of each rule, written plainly: float64
// throughout, sort.Float64s, the clip applied to each push first.
func aggOracle(a Aggregate, pushes [][]float32) []float64 {
	n, m := len(pushes), len(pushes[0])
	f := make([]float64, n)
	for i, p := range pushes {
		f[i] = 1
		if a.Clip > 0 {
			var ss float64
			for _, x := range p {
				ss += float64(x) * float64(x)
			}
			if norm := math.Sqrt(ss); norm > a.Clip {
				f[i] = a.Clip / norm
			}
		}
	}
	out := make([]float64, m)
	col := make([]float64, n)
	for e := range m {
		for i := range n {
			col[i] = float64(pushes[i][e]) * float64(float32(f[i]))
		}
		switch a.Kind {
		case AggSum, AggMean:
			var s float64
			for _, x := range col {
				s += x
			}
			if a.Kind == AggMean {
				s /= float64(n)
			}
			out[e] = s
		case AggMedian:
			sort.Float64s(col)
			if n%2 == 1 {
				out[e] = col[n/2]
			} else {
				out[e] = (col[n/2-1] + col[n/2]) / 2
			}
		case AggTrimmedMean:
			sort.Float64s(col)
			k := int(math.Floor(a.Trim * float64(n)))
			var s float64
			for _, x := range col[k : n-k] {
				s += x
			}
			out[e] = s / float64(n-2*k)
		}
	}
	return out
}

// Every rule, on random pushes of a key larger than one scratch chunk,
// arriving in random orders: the result matches the reference within
// float32 rounding, and is the same bits whatever the arrival order.
func TestAggregateMatchesReference(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 14))
	rules := []string{"sum", "mean", "median", "trimmed-mean", "trimmed-mean=0.1", "trimmed-mean=0.4",
		"mean,clip=3", "median,clip=0.5", "trimmed-mean=0.2,clip=2", "sum,clip=1"}
	const m = aggChunk + 123
	for _, rule := range rules {
		a, err := ParseAggregate(rule)
		if err != nil {
			t.Fatal(err)
		}
		if a.String() != rule && rule != "trimmed-mean" {
			t.Errorf("rule %q prints as %q", rule, a.String())
		}
		for _, n := range []int{1, 2, 4, 5, 7} {
			pushes := make([][]float32, n)
			for i := range pushes {
				pushes[i] = make([]float32, m)
				for e := range pushes[i] {
					pushes[i][e] = float32(rng.NormFloat64())
				}
			}
			if n > 2 { // an outlier worker
				for e := range pushes[n-1] {
					pushes[n-1][e] *= -100
				}
			}
			var first []float32
			for try := range 2 {
				got := runRound(t, a, pushes, rng.Perm(n))
				want := aggOracle(a, pushes)
				for e := range got {
					if d := math.Abs(float64(got[e]) - want[e]); d > 1e-5*(1+math.Abs(want[e]))*float64(n) {
						t.Fatalf("%s, %d workers: element %d = %v, reference %v", rule, n, e, got[e], want[e])
					}
				}
				if try == 0 {
					first = got
				} else {
					for e := range got {
						if math.Float32bits(got[e]) != math.Float32bits(first[e]) {
							t.Fatalf("%s, %d workers: element %d differs between arrival orders: %v, %v", rule, n, e, first[e], got[e])
						}
					}
				}
			}
		}
	}
}

// runRound runs one round of pushes (arriving in order perm) under rule a
// on a fresh job without optimizer and returns the value assigned.
func runRound(t *testing.T, a Aggregate, pushes [][]float32, perm []int) []float32 {
	t.Helper()
	h := newHarness(t, Config{Aggregate: a})
	n := len(pushes)
	for c := 1; c <= n; c++ {
		h.hello(ConnID(c), n)
	}
	zero := make([]float32, len(pushes[0]))
	for c := 1; c <= n; c++ {
		h.init(ConnID(c), 1, zero)
	}
	for _, i := range perm {
		c := ConnID(i + 1) // ranks follow the join order
		h.step(c, dataMsg(wire.TypePush, h.nextSeq(c), 1, 0, pushes[i]))
	}
	if got := len(h.acks()); got != n {
		t.Fatalf("round closed with %d acks, want %d", got, n)
	}
	h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypePull, Seq: h.nextSeq(1), Key: 1}})
	checkBudget(t, h.j)
	return append([]float32(nil), wire.Float32View(h.acks()[0].Msg.Data(), nil)...)
}

// The rule survives a checkpoint; a job restored from a snapshot without
// the section (sum, or an older relay's) aggregates by sum.
func TestAggregateSnapshot(t *testing.T) {
	for _, rule := range []string{"sum", "median", "trimmed-mean=0.3,clip=7"} {
		h := newHarness(t, Config{})
		h.hello(1, 1)
		h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: h.nextSeq(1), Key: CmdAggregate}, Payload: []byte(rule)})
		h.acks()
		h.init(1, 3, []float32{1, 2})
		snap, err := h.j.AppendSnapshot(nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Restore(Config{Job: "t"}, snap, time.Second)
		if err != nil {
			t.Fatalf("%s: %v", rule, err)
		}
		if got := r.Aggregate().String(); got != rule {
			t.Errorf("restored rule %q, want %q", got, rule)
		}
		r.Close()
	}
	if _, err := New(Config{Aggregate: Aggregate{Kind: AggTrimmedMean, Trim: 0.5}}); err == nil {
		t.Error("New accepted a trimmed mean cutting everything")
	}
}

// A NaN or Inf push is counted in Stats.NonFinite; in dist_async it is
// refused at once and the value is untouched.
func TestNonFiniteCounted(t *testing.T) {
	h := newHarness(t, Config{})
	h.keep(h.j.Step(h.now, 1, wire.AppendHello(nil, &wire.Hello{Job: "t", Mode: wire.ModeAsync})))
	h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: h.nextSeq(1), Key: CmdController}, Payload: []byte(`{"name":"sgd","learning_rate":1}`)})
	h.init(1, 2, []float32{1, 1})
	h.step(1, dataMsg(wire.TypePushPull, h.nextSeq(1), 2, 0, []float32{float32(math.Inf(-1)), 0}))
	if len(h.out) != 1 || h.out[0].Msg.Type != wire.TypeError || wire.ErrorOf(&h.out[0].Msg).Code != wire.CodeBadRequest {
		t.Fatalf("want one bad-request error, got %+v", h.out)
	}
	h.step(1, dataMsg(wire.TypePushPull, h.nextSeq(1), 2, 0, []float32{1, 2}))
	if v := wire.Float32View(h.acks()[0].Msg.Data(), nil); v[0] != 0 || v[1] != -1 {
		t.Fatalf("value %v, want [0 -1]: the refused push was applied", v)
	}
	if s := h.j.Stats(); s.NonFinite != 1 || s.Updates != 1 {
		t.Fatalf("stats %+v, want 1 non-finite push and 1 update", s)
	}
}
