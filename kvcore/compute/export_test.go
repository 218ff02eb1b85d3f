package compute

// Internals the external tests (package compute_test, which may import
// package optimizer: that imports compute) check directly.
var (
	StepRange = stepRange
	LambStep  = (&CPU{}).lambStep
)

const (
	LambParallelMin = lambParallelMin
	ParallelMin     = parallelMin
	ReduceStepBlock = reduceStepBlock
)
