// Package compute is webkv's compute seam: the Backend interface that a
// store reduces, updates and compresses through, its optional capabilities
// (ReduceStepper, Flusher), the per-step optimizer parameters (OptKind,
// StepParams, the Flag constants) and gradient compression settings
// (Compression); and CPU, the reference Backend in pure Go.
//
// Package shaders implements Backend on WebGPU; every implementation is
// checked against CPU by the conformance suite in compute/backendtest. A
// store user needs this package only to choose a backend
// (kvcore.Options.Backend) or a gradient compression.
package compute
