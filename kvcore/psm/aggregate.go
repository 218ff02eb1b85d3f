package psm

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
)

// Robust aggregation (federated training). A dist_sync round combines the
// pushes that arrived by its job's Aggregate rule before the optimizer
// step (or the assignment, without one):
//
//	sum           MXNet's: the pushes summed in rank order (the default)
//	mean          their mean: the sum in rank order times 1/k
//	median        per element, the median of the k values (the mean of
//	              the two middle ones when k is even), as Flower's FedMedian
//	trimmed-mean  per element, the mean of the values left after the
//	              floor(f*k) smallest and the floor(f*k) largest are cut
//	              (f = 0.25 unless given: trimmed-mean=0.1), as Flower's
//	              FedTrimmedAvg; f < 0.5
//	clip=C        (with any of them) each push is first scaled down to an
//	              L2 norm of at most C (per key part, like LAMB's norms)
//
// k is the number of pushes the round accepted. Results are exact and
// deterministic: each element's values are sorted (median, trimmed mean)
// or summed in rank order; sums run in float64 for the order statistics.
// A job's rule comes from Config.Aggregate or from command CmdAggregate
// (body: the rule's text, e.g. "trimmed-mean=0.25,clip=10"), is saved in
// snapshots, and applies from the next round that closes.
//
// Non-finite pushes. A float32 push holding NaN or ±Inf is never
// aggregated: it counts as its worker's arrival in the round (so the round
// does not wait for it), its request is answered with CodeBadRequest when
// the round closes, and Stats.NonFinite counts it. With the sum rule the
// round's sum is then rescaled by expected/accepted, as at a deadline
// (unless Config.NoRescale); the other rules need no rescaling. A round
// whose every push was refused applies nothing and keeps its number.
//
// Memory. median and trimmed-mean need every worker's push at once: they
// are the round's arrival buffers, which every rule keeps (bounded by
// workers times key sizes, see Budgets). The order statistics read them
// in slices of aggChunk elements into one host scratch of
// 4*(workers+1)*aggChunk bytes per job, which is reserved from the job's
// budget (Config.MaxBytes and Config.Budget) like values and states: a
// round that cannot get it fails with CodeLimit and keeps its number.

// CmdAggregate is the command head (kvcore.Store.SendCommandToServers)
// whose body sets the job's aggregation rule.
const CmdAggregate = 17

// AggKind is an aggregation rule's base.
type AggKind uint8

// Aggregation rules.
const (
	AggSum AggKind = iota
	AggMean
	AggMedian
	AggTrimmedMean
)

var aggNames = [...]string{AggSum: "sum", AggMean: "mean", AggMedian: "median", AggTrimmedMean: "trimmed-mean"}

func (k AggKind) String() string {
	if int(k) < len(aggNames) {
		return aggNames[k]
	}
	return "aggregate(" + strconv.Itoa(int(k)) + ")"
}

// DefaultTrim is trimmed-mean's fraction when none is given: with 4
// workers it cuts one value at each end.
const DefaultTrim = 0.25

// aggChunk is the elements read per push per pass of the order statistics.
const aggChunk = 4096

// Aggregate is a job's aggregation rule (see above). The zero value is sum.
type Aggregate struct {
	Kind AggKind
	Trim float64 // trimmed-mean's fraction cut at each end, in [0, 0.5)
	Clip float64 // > 0: each push's L2 norm is clipped to Clip first
}

// ParseAggregate reads a rule: "sum", "mean", "median", "trimmed-mean" or
// "trimmed-mean=F", optionally followed by ",clip=C".
func ParseAggregate(s string) (Aggregate, error) {
	var a Aggregate
	parts := strings.Split(strings.TrimSpace(s), ",")
	name, frac, hasFrac := strings.Cut(strings.TrimSpace(parts[0]), "=")
	switch name {
	case "sum", "":
		a.Kind = AggSum
	case "mean":
		a.Kind = AggMean
	case "median":
		a.Kind = AggMedian
	case "trimmed-mean", "trimmed_mean", "trimmedmean":
		a.Kind, a.Trim = AggTrimmedMean, DefaultTrim
	default:
		return a, fmt.Errorf("aggregate %s: unknown rule %s (want sum, mean, median or trimmed-mean[=fraction], then optionally ,clip=norm)", short(s), short(name))
	}
	if hasFrac {
		if a.Kind != AggTrimmedMean {
			return a, fmt.Errorf("aggregate %s: only trimmed-mean takes a fraction", short(s))
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(frac), 64)
		if err != nil || !(f >= 0 && f < 0.5) {
			return a, fmt.Errorf("aggregate %s: trimmed-mean fraction %s: want a number in [0, 0.5)", short(s), short(frac))
		}
		a.Trim = f
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if k != "clip" {
			return a, fmt.Errorf("aggregate %s: unknown option %s (want clip=norm)", short(s), short(k))
		}
		c, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(c > 0) || math.IsInf(c, 0) {
			return a, fmt.Errorf("aggregate %s: clip %s: want a finite norm > 0", short(s), short(v))
		}
		a.Clip = c
	}
	return a, nil
}

// String is the rule in ParseAggregate's form.
func (a Aggregate) String() string {
	s := a.Kind.String()
	if a.Kind == AggTrimmedMean {
		s += "=" + strconv.FormatFloat(a.Trim, 'g', -1, 64)
	}
	if a.Clip > 0 {
		s += ",clip=" + strconv.FormatFloat(a.Clip, 'g', -1, 64)
	}
	return s
}

func (a Aggregate) validate() error {
	if int(a.Kind) >= len(aggNames) {
		return fmt.Errorf("aggregate: unknown rule %d", a.Kind)
	}
	if !(a.Trim >= 0 && a.Trim < 0.5) || (a.Kind != AggTrimmedMean && a.Trim != 0) {
		return fmt.Errorf("aggregate %v: trim fraction %v", a.Kind, a.Trim)
	}
	if !(a.Clip >= 0) || math.IsInf(a.Clip, 0) {
		return fmt.Errorf("aggregate %v: clip %v", a.Kind, a.Clip)
	}
	return nil
}

// Aggregate is the job's aggregation rule.
func (j *Job) Aggregate() Aggregate { return j.agg }

// setAggregate is command CmdAggregate.
func (j *Job) setAggregate(w *worker, m *wire.Msg) {
	if len(m.Payload) > 256 {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeBadRequest, "aggregate rule of %d bytes (want e.g. \"trimmed-mean=0.25\")", len(m.Payload)))
		return
	}
	a, err := ParseAggregate(string(m.Payload))
	if err != nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeBadRequest, "%v", err))
		return
	}
	if a != j.agg {
		j.agg = a
		j.rd.Persist = true
	}
	j.answer(w, m.Seq, wire.TypeCommand, wire.Header{Key: m.Key})
}

// nonFiniteMsg says why a push of k is refused: element i of its data
// (little-endian float32s starting at element off of the key) is NaN or ±Inf.
func nonFiniteMsg(k *key, data []byte, i, off int) string {
	return fmt.Sprintf("key %s: push holds %v at element %d: refused, not aggregated", k.label(), wire.Float32View(data, nil)[i], off+i)
}

// arriveRefused records a's refused push (a.bad() says why) as its worker's
// arrival in k's sync round, if that round expects the worker: the round
// then does not wait for it, and its answer carries the refusal. It
// reports whether it did; if not, the caller answers the refusal at once.
// hold holds a's request first (a single request; a list holds itself).
func (j *Job) arriveRefused(now time.Duration, k *key, a arrival, hold bool) bool {
	if j.mode != wire.ModeSync {
		return false
	}
	j.splitKey(k)
	r := k.cur
	if r == nil {
		r = j.openRound(now, k)
	}
	if !r.expects(a.w) {
		return false
	}
	if hold {
		j.hold(a.w, a.seq)
	}
	r.arrive(a.w)
	*r.add() = a
	j.maybeClose(now, k)
	return true
}

// errNoneAccepted fails a round whose every push was refused.
var errNoneAccepted = errors.New("every push of the round was refused (NaN or Inf): nothing applied")

// The aggregation rule's snapshot section, written before the custom
// updater's unless the rule and Config.Aggregate are both plain sum:
//
//	u8 snapAggregate, u8 kind, u64 trim (float64 bits), u64 clip (float64 bits)
const snapAggregate = 2

func (j *Job) appendAggregate(e senc) senc {
	if j.agg == (Aggregate{}) && j.cfg.Aggregate == (Aggregate{}) {
		return e
	}
	return e.u8(snapAggregate).u8(uint8(j.agg.Kind)).u64(math.Float64bits(j.agg.Trim)).u64(math.Float64bits(j.agg.Clip))
}

func (j *Job) restoreAggregate(d *sdec) {
	if d.err != nil || d.left() == 0 {
		return
	}
	at := d.c // to read the tag again if the section is another one
	if d.u8() != snapAggregate {
		d.c = at
		return
	}
	a := Aggregate{Kind: AggKind(d.u8()), Trim: math.Float64frombits(d.u64()), Clip: math.Float64frombits(d.u64())}
	if d.err != nil {
		return
	}
	if err := a.validate(); err != nil {
		d.fail("%v", err)
		return
	}
	j.agg = a
}
