package native

// Options tune Open and NewBackend. The zero value accepts any adapter,
// preferring GPUs.
type Options struct {
	// RequireGPU refuses CPU adapters (lavapipe, llvmpipe, SwiftShader):
	// Open fails with ErrNoAdapter instead of falling back to one.
	RequireGPU bool
}
