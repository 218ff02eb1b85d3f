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

// First-run errors of dist stores (see package relay): what a user meets
// before anything trains, each with the relay's own words.
var (
	// ErrUnreachable is wrapped by the error of a first connection to a
	// parameter server (relay) that could not be reached at all (nothing
	// listens there, no route, no name); the error names the address.
	// The first dial is not retried unless asked (relay.DialOptions.WaitForRelay).
	ErrUnreachable = errors.New("parameter server unreachable")
	// ErrOrigin is wrapped by the error of a browser page whose Origin the
	// relay does not allow (the relay's -origins); the text says which
	// origin and how to allow it.
	ErrOrigin = errors.New("page origin refused by the parameter server")
	// ErrEarlierRun is wrapped by the error of an Init of a key that the
	// job holds from an earlier run (its workers all left, or the relay
	// restarted on its data): training would silently continue from the
	// old weights and optimizer states. Set the resume option
	// (relay.DialOptions.Resume) to continue that run, or reset the job.
	ErrEarlierRun = errors.New("key from an earlier run of the job")
	// ErrWorkerCount is wrapped by the error of a worker that asks for a
	// different number of workers than its job has (fixed by the relay's
	// -workers or by the job's first worker).
	ErrWorkerCount = errors.New("the job has a different worker count")
)
