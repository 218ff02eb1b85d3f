package kvcore

import (
	"errors"

	"github.com/webkv/webkv/kvcore/internal/optstate"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/transport"
)

// Errors a store returns, wrapped as "kvcore: <operation> key <k>: <error>";
// test with errors.Is.
var (
	ErrUnknownKey     = errors.New("key was not initialized (call Init first)")
	ErrDuplicateInit  = errors.New("key is already initialized")
	ErrShapeMismatch  = errors.New("shape does not match")
	ErrMixedKeys      = errors.New("int and string keys cannot be mixed in one store")
	ErrNilArray       = errors.New("nil or released array")
	ErrUnknownType    = errors.New("unknown store type")
	ErrUnsupported    = errors.New("not supported by this store type")
	ErrClosed         = transport.ErrClosed // the store, or its transport, is closed
	ErrNoTransport    = errors.New("dist store types need a transport to a relay (see package relay)")
	ErrBadCapability  = errors.New("unknown capability")
	ErrBadCompression = errors.New("bad gradient compression")
	ErrBadStates      = optstate.ErrBadStates // a states file or its content does not fit
	ErrBadOptimizer   = optimizer.ErrInvalid  // an optimizer spec is not valid
	ErrUpdater        = errors.New("the custom updater module refused or failed the update")
)
