package psm

import (
	"fmt"
	"math"
	"slices"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/kernels"
	"github.com/webkv/webkv/kvcore/wire"
)

// combine applies a closing round's accepted pushes (arr, in rank order;
// refused ones have no buffer) to k by the job's Aggregate rule: the
// optimizer's update of their aggregate, or, without an optimizer, its
// assignment. It returns the acks' flags.
func (j *Job) combine(k *key, arr []arrival, deadline bool) (uint16, error) {
	if len(arr) == 1 && arr[0].buf != nil && !(deadline && k.cur.nexp > 1) && j.assigns() {
		// The assignment of a round's single accepted push, decided
		// before the list of sources is built: a sum or mean of one push
		// (scale 1, nothing refused, no deadline short of pushes) without
		// an optimizer. Its buffer becomes the value (the old value's
		// buffer goes to the free list) instead of being copied.
		k.stored, arr[0].buf = arr[0].buf, k.stored
		return 0, nil
	}
	srcs := j.srcs[:0]
	one := -1
	for i := range arr {
		if a := &arr[i]; a.buf != nil {
			srcs = append(srcs, a.buf)
			one = i
		}
	}
	j.srcs = srcs
	if len(srcs) == 0 {
		return 0, errNoneAccepted
	}
	refused := len(arr) - len(srcs)
	expected := k.cur.nexp
	scale := float32(1)
	var flags uint16
	if deadline && len(arr) < expected {
		j.noteDeadline(k, arr)
		j.stats.Rescaled++
	}
	switch j.agg.Kind {
	case AggSum:
		if ((deadline && len(arr) < expected) || refused > 0) && !j.cfg.NoRescale {
			scale = float32(expected) / float32(len(srcs))
			flags = wire.FlagRescaled
		}
	case AggMean:
		scale = 1 / float32(len(srcs))
	}
	optimized := j.opt != nil || j.cu != nil
	if optimized && k.merge == nil {
		b, err := j.be.Alloc(k.n)
		if err != nil {
			return 0, err
		}
		k.merge = b
	}
	dst := k.stored
	if optimized {
		dst = k.merge
	}
	var err error
	switch {
	case j.agg.Kind > AggMean || j.agg.Clip > 0:
		err = j.aggregateHost(k, dst, srcs, scale)
	case !optimized && len(srcs) == 1 && scale == 1:
		// Assign of a single push: take its buffer as the value (the old
		// value's buffer goes to the free list) instead of copying.
		k.stored, arr[one].buf = arr[one].buf, k.stored
		return flags, nil
	case j.cpuLoops && k.n <= cleanKeyMax && reduceCPU(dst, srcs, scale):
		// Summed on the CPU backend's kernel, as its Reduce would.
	default:
		err = j.be.Reduce(dst, srcs, scale)
	}
	if err == nil && optimized {
		err = j.updateArrivals(k, k.merge, arr)
	}
	return flags, err
}

// assigns reports whether a round closed by one accepted push, with
// every expected worker's push in (scale 1), takes that push as its
// value: no optimizer or custom updater, and a plain sum or mean.
func (j *Job) assigns() bool {
	return j.opt == nil && j.cu == nil && j.agg.Kind <= AggMean && j.agg.Clip == 0
}

// aggregateHost computes the clipped sum or mean, median or trimmed mean
// of srcs into dst on the host, aggChunk elements at a time (see the doc
// of aggregate.go for the memory this takes).
func (j *Job) aggregateHost(k *key, dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
	n := len(srcs)
	chunk := min(aggChunk, k.n)
	need := int64(4 * (n + 1) * chunk)
	if need > j.aggResv {
		if !j.reserve(need-j.aggResv, false) {
			return &codedErr{j.errBudget(fmt.Sprintf("the %v of %d pushes of key %s", j.agg.Kind, n, k.label()), need-j.aggResv)}
		}
		j.aggResv = need
		j.aggBuf = make([]float32, (n+1)*chunk)
	}
	cols, out := j.aggBuf[:n*chunk], j.aggBuf[n*chunk:(n+1)*chunk]
	// Per-push factors: the clip (1 without one).
	factor := j.aggFactor[:0]
	for range srcs {
		factor = append(factor, 1)
	}
	j.aggFactor = factor
	if c := j.agg.Clip; c > 0 {
		for i, s := range srcs {
			var ss float64
			for off := 0; off < k.n; off += chunk {
				v := cols[:min(chunk, k.n-off)]
				if err := j.be.Read(s, off, v); err != nil {
					return err
				}
				for _, x := range v {
					ss += float64(x) * float64(x)
				}
			}
			if norm := math.Sqrt(ss); norm > c {
				factor[i] = float32(c / norm)
			}
		}
	}
	trim := 0
	if j.agg.Kind == AggTrimmedMean {
		trim = int(math.Floor(j.agg.Trim * float64(n)))
	}
	col := make([]float32, n) // n is at most the job's workers
	for off := 0; off < k.n; off += chunk {
		m := min(chunk, k.n-off)
		for i, s := range srcs {
			if err := j.be.Read(s, off, cols[i*chunk:i*chunk+m]); err != nil {
				return err
			}
		}
		for e := range m {
			for i := range n {
				col[i] = cols[i*chunk+e] * factor[i]
			}
			out[e] = aggregateColumn(j.agg.Kind, col, trim, scale)
		}
		if err := j.be.Write(dst, off, out[:m]); err != nil {
			return err
		}
	}
	return nil
}

// aggregateColumn combines one element's values (in rank order; sorted in
// place for the order statistics).
func aggregateColumn(kind AggKind, v []float32, trim int, scale float32) float32 {
	switch kind {
	case AggMedian:
		sortFloats(v)
		h := len(v) / 2
		if len(v)%2 == 1 {
			return v[h]
		}
		return float32((float64(v[h-1]) + float64(v[h])) / 2)
	case AggTrimmedMean:
		sortFloats(v)
		var s float64
		for _, x := range v[trim : len(v)-trim] {
			s += float64(x)
		}
		return float32(s / float64(len(v)-2*trim))
	}
	// sum or mean (with clipping): rank order, like Reduce.
	var s float32
	for _, x := range v {
		s += x
	}
	return s * scale
}

// sortFloats sorts one element's values (one per worker): an insertion
// sort for a few, without allocating.
func sortFloats(v []float32) {
	if len(v) > 16 {
		slices.Sort(v)
		return
	}
	for i := 1; i < len(v); i++ {
		for x := i; x > 0 && v[x] < v[x-1]; x-- {
			v[x], v[x-1] = v[x-1], v[x]
		}
	}
}

// reduceSrcsMax is the most sources reduceCPU sums.
const reduceSrcsMax = 8

// reduceCPU is the CPU backend's Reduce of a small key (at most
// cleanKeyMax words, at most reduceSrcsMax sources) without its calls:
// the same kernel on the same slices, so the same bits (issue 12: a
// round of a 16-float key spent more in the backend's call layers than in
// the sum). It reports false, having done nothing, for anything else
// (a buffer that is not a CPU buffer, lengths that differ, an output
// that aliases a source): then the backend's Reduce does it, or names
// what is wrong.
func reduceCPU(dst compute.Buffer, srcs []compute.Buffer, scale float32) bool {
	if len(srcs) > reduceSrcsMax {
		return false
	}
	db, ok := dst.(*compute.CPUBuffer)
	if !ok || db == nil {
		return false
	}
	d := db.Float32s()
	var buf [reduceSrcsMax][]float32
	in := buf[:len(srcs)]
	for i, b := range srcs {
		sb, ok := b.(*compute.CPUBuffer)
		if !ok || sb == nil {
			return false
		}
		s := sb.Float32s()
		if len(s) != len(d) || len(s) == 0 || &s[0] == &d[0] {
			return false
		}
		in[i] = s
	}
	kernels.ReduceInto(d, in, scale, 0)
	return true
}
