package compute

import (
	"fmt"
	"runtime"

	"github.com/webkv/webkv/kvcore/internal/kernels"
)

// reduceStepBlock is the length of the block a fused reduce-and-step sums
// the inputs into before it runs the optimizer on it: 64 KB, which stays in
// L2 between the two. Smaller blocks switch between the input streams and
// the state streams more often, which the hardware prefetchers follow less
// well (2048 values, L1-sized, measured up to 1.3x slower).
const reduceStepBlock = 16384

// reduceStep is ReduceStep on Go's loops, in one pass over memory: each
// goroutine sums the inputs of a block of reduceStepBlock elements (two
// LAMB blocks for LAMB) into a scratch block that stays in cache and runs
// the optimizer on it, so the summed gradient is never written to memory
// and read back (for 4 inputs and Adam, 10 instead of 12 array passes). The
// sum and the update are the same float32 operations as Reduce and Step,
// so the result has the same bits as Reduce(m, srcs, scale) then Step(kind,
// p, weight, m, states). Each block is summed before it is updated, so an
// input may also be the weight or a state: the result is still that of the
// two calls.
func (c *CPU) reduceStep(kind OptKind, p *StepParams, w []float32, srcs []Buffer, scale float32, states []Buffer) error {
	if len(srcs) == 0 {
		return fmt.Errorf("compute: cpu %v reduce-step of no inputs", kind)
	}
	if p == nil {
		return fmt.Errorf("compute: cpu %v reduce-step without parameters", kind)
	}
	j := c.getJob()
	err := j.stepStates("reduce-step", kind, p, len(w), states)
	if err == nil {
		j.ins, err = appendData(j.ins, srcs, len(w), kind, "reduce-step input")
	}
	if err != nil {
		putJob(j)
		return err
	}
	if kind == OptLAMB {
		defer putJob(j)
		return c.lambRun(p, w, nil, j.ins, scale, j.srcs)
	}
	j.scratch = scratchBlocks(j.scratch, runtime.GOMAXPROCS(0), reduceStepBlock)
	j.kind, j.dst, j.params, j.opt, j.scale = jobReduceStep, w, p, kind, scale
	j.runParallel(len(w))
	return nil
}

// reduceStepRange runs the fused reduce-and-step over [lo, hi), block by
// block through the scratch block of its chunk.
func (j *job) reduceStepRange(lo, hi int) {
	scratch := scratchFor(j.scratch, lo/j.per, reduceStepBlock)
	kp := kparams(j.params)
	var s0, s1, s2 []float32
	for b := lo; b < hi; b += reduceStepBlock {
		e := min(b+reduceStepBlock, hi)
		g := scratch[:e-b]
		kernels.ReduceInto(g, j.ins, j.scale, b)
		if len(j.srcs) > 0 {
			s0 = j.srcs[0][b:e]
		}
		if len(j.srcs) > 1 {
			s1 = j.srcs[1][b:e]
		}
		if len(j.srcs) > 2 {
			s2 = j.srcs[2][b:e]
		}
		stepBlock(j.opt, kp, j.dst[b:e], g, s0, s1, s2)
	}
}

// scratchBlocks makes sure s has n blocks of at least size floats,
// keeping those it has (they are pooled with their job).
func scratchBlocks(s [][]float32, n, size int) [][]float32 {
	for i := range s {
		if len(s[i]) < size {
			s[i] = make([]float32, size)
		}
	}
	for len(s) < n {
		s = append(s, make([]float32, size))
	}
	return s
}

// scratchFor returns block i of s, or a new block if s has none for i
// (GOMAXPROCS went up since s was sized).
func scratchFor(s [][]float32, i, size int) []float32 {
	if i < len(s) {
		return s[i]
	}
	return make([]float32, size)
}
