package compute

import "fmt"

// Buffer is a backend's storage for Len() 32-bit words: float32 values, or the
// packed words of a quantized gradient. Only the backend that allocated a
// buffer may use it (CPU buffers are plain memory: every CPU takes them).
type Buffer interface {
	Len() int
}

// Backend is where arrays live and where a store's compute runs. The CPU
// backend (CPU) is the reference implementation; package shaders implements
// it on WebGPU. Every implementation must pass backendtest.Run.
//
// A Backend may queue work instead of running it at once (a GPU backend
// records a step into one command buffer): Read and Sync wait for queued work,
// and errors of queued work are returned by the next Read or Sync at the
// latest. A Backend must be safe for concurrent use; kvcore never issues
// concurrent calls that write the same buffer.
type Backend interface {
	// Name says what runs the work, e.g. "cpu" or "webgpu: llvmpipe (Vulkan)".
	Name() string
	// Alloc returns a zeroed buffer of n words (n >= 1).
	Alloc(n int) (Buffer, error)
	// Free returns b to the backend, which may pool it.
	Free(b Buffer)
	// Write copies src into dst starting at word off.
	Write(dst Buffer, off int, src []float32) error
	// Read copies len(dst) words of src starting at word off into dst,
	// after all queued work that writes src.
	Read(src Buffer, off int, dst []float32) error
	// Copy copies src into dst; both have the same length.
	Copy(dst, src Buffer) error
	// Fill sets every word of dst to v.
	Fill(dst Buffer, v float32) error
	// Reduce sets dst[i] = scale * (srcs[0][i] + … + srcs[len(srcs)-1][i])
	// for 1 <= len(srcs); dst may be one of srcs; lengths are equal.
	// The sum runs left to right, so results are reproducible.
	Reduce(dst Buffer, srcs []Buffer, scale float32) error
	// Step applies one optimizer update: weight and the states change in
	// place, grad is only read. len(states) == kind.NumStates(p).
	Step(kind OptKind, p *StepParams, weight, grad Buffer, states []Buffer) error
	// Quantize adds grad into residual and packs the quantized residual into
	// out (c.Kind.PackedLen(grad.Len()) words), as MXNet's 2bit/1bit
	// compression does (the layout and rule are in the CPU kernels'
	// reference, kvcore/internal/kernels/compress.go).
	Quantize(c Compression, grad, residual, out Buffer) error
	// Dequantize unpacks in into out (out.Len() values).
	Dequantize(c Compression, in, out Buffer) error
	// Sync submits queued work and waits until it is done.
	Sync() error
}

// ReduceStepper is an optional Backend capability: Reduce followed by Step
// in one pass, the sum of the inputs kept in registers instead of written to
// a merge buffer and read back (for 4 inputs and Adam, 10 instead of 12
// array passes). The result must equal Reduce(m, srcs, scale) then
// Step(kind, p, weight, m, states); srcs are distinct from weight and
// states but one buffer may appear in srcs more than once. A store whose
// backend has it uses it for every push of several values under an
// optimizer (package shaders implements it).
type ReduceStepper interface {
	ReduceStep(kind OptKind, p *StepParams, weight Buffer, srcs []Buffer, scale float32, states []Buffer) error
}

// Flusher is an optional Backend capability of backends that queue work:
// Flush submits what is queued without waiting, so the device starts on it
// while the host prepares more. A store flushes when an operation finds
// itself the store's last unfinished one (so one training step's pushes
// still go out as one batch) and after every pull into arrays of the
// backend, so that an application that waited for such an array and then
// hands its buffer to its own GPU work (submitted to the same queue) sees
// the pulled values.
type Flusher interface {
	Flush() error
}

// FiniteWriter is a Backend that checks host values for NaN and ±Inf in
// the same pass that writes them: WriteFinite is Write, and also returns
// the index in src of its first NaN or ±Inf, or -1. The parameter server
// refuses such pushes (psm); with a FiniteWriter that costs no second read
// of a push. After a non-finite value the buffer's contents are undefined.
type FiniteWriter interface {
	WriteFinite(dst Buffer, off int, src []float32) (bad int, err error)
}

// OptKind selects one fused optimizer kernel. The formulas are MXNet's
// optimizer of the same name; each CPU kernel's doc
// (kvcore/internal/kernels/optimizers.go) is its reference loop.
type OptKind uint8

// The optimizer kernels every backend implements.
const (
	OptSGD OptKind = iota + 1
	OptNAG
	OptAdam
	OptAdamW
	OptAdaGrad
	OptRMSProp
	OptAdaDelta
	OptSignum
	OptFTRL
	OptLAMB
)

var optKindNames = [...]string{"", "sgd", "nag", "adam", "adamw", "adagrad", "rmsprop", "adadelta", "signum", "ftrl", "lamb"}

func (k OptKind) String() string {
	if int(k) < len(optKindNames) && k != 0 {
		return optKindNames[k]
	}
	return fmt.Sprintf("OptKind(%d)", uint8(k))
}

// NumStates is the number of state arrays kind keeps per key under p, in the
// order the kernels take them:
//
//	sgd, nag, signum  momentum (none when p.Momentum == 0, as MXNet's create_state)
//	adam, adamw, lamb mean, var
//	adagrad           history
//	rmsprop           n; centered: n, g, delta
//	adadelta          acc_g, acc_delta
//	ftrl              z, n
func (k OptKind) NumStates(p *StepParams) int {
	switch k {
	case OptSGD, OptNAG, OptSignum:
		if p.Momentum != 0 {
			return 1
		}
		return 0
	case OptAdam, OptAdamW, OptAdaDelta, OptFTRL, OptLAMB:
		return 2
	case OptAdaGrad:
		return 1
	case OptRMSProp:
		if p.Flags&FlagCentered != 0 {
			return 3
		}
		return 1
	}
	return 0
}

// Step flags, in StepParams.Flags.
const (
	FlagCentered       uint32 = 1 << iota // RMSProp: centered variant (Graves 2013)
	FlagBiasCorrection                    // LAMB: bias-corrected moments
	FlagClipWeights                       // RMSProp: clip weights to ±ClipWeights
	FlagBounds                            // LAMB: LowerBound/UpperBound apply to the weight norm
)

// StepParams are the per-step hyper-parameters of one optimizer update. The
// layout (24 words, no padding) is the uniform block of the WGSL kernels, so
// its field order must not change. The host fills derived values (learning
// rate after the schedule, bias corrections) so kernels need no pow or state
// of their own.
type StepParams struct {
	LR           float32 // learning rate for this update (schedule and lr_mult applied)
	WD           float32 // weight decay (wd_mult applied)
	RescaleGrad  float32 // grad is multiplied by this first
	ClipGradient float32 // if > 0, rescaled grad is clipped to [-c, c]

	Momentum float32 // SGD, NAG, Signum
	Beta1    float32 // Adam, AdamW, LAMB
	Beta2    float32 // Adam, AdamW, LAMB
	Epsilon  float32

	Gamma1 float32 // RMSProp decay (rho of the squared mean)
	Gamma2 float32 // RMSProp centered: momentum of delta
	Rho    float32 // AdaDelta
	Lamda1 float32 // FTRL L1

	Beta        float32 // FTRL
	WDLH        float32 // Signum decoupled weight decay
	LowerBound  float32 // LAMB
	UpperBound  float32 // LAMB
	ClipWeights float32 // RMSProp
	Eta         float32 // AdamW schedule multiplier

	Coef1 float32 // derived: Adam/AdamW lr*sqrt(1-b2^t)/(1-b1^t) factor; LAMB 1-b1^t
	Coef2 float32 // derived: LAMB 1-b2^t
	T     float32 // update count of this key, from 1
	Flags uint32
	Pad0  uint32
	Pad1  uint32
}
