package kvcore

import "errors"

// Errors a store returns, wrapped with the operation and key they concern;
// test with errors.Is.
var (
	ErrUnknownKey     = errors.New("key was not initialized (call Init first)")
	ErrDuplicateInit  = errors.New("key is already initialized")
	ErrShapeMismatch  = errors.New("shape does not match")
	ErrMixedKeys      = errors.New("int and string keys cannot be mixed in one store")
	ErrNilArray       = errors.New("nil or released array")
	ErrUnknownType    = errors.New("unknown store type")
	ErrUnsupported    = errors.New("not supported by this store type")
	ErrClosed         = errors.New("store is closed")
	ErrNoTransport    = errors.New("dist store types need a transport to a relay (see package relay)")
	ErrBadCapability  = errors.New("unknown capability")
	ErrBadCompression = errors.New("bad gradient compression")
	ErrBadStates      = errors.New("bad optimizer states")
)
