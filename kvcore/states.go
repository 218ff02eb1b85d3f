package kvcore

import (
	"io"

	"github.com/webkv/webkv/kvcore/internal/optstate"
)

// stateSnapshot is the content of a states file (package optstate has the
// format) with the store's own keys: what Save/LoadOptimizerStates move
// between a store, its file and, in dist mode, its servers.
type stateSnapshot struct {
	Optimizer []byte // JSON spec, or nil
	NumUpdate int64
	Keys      []keyStates
}

// keyStates are the optimizer states of one key: t updates so far, and
// len(States) arrays of N values each.
type keyStates struct {
	Key       Key
	T         int64
	N         int
	States    [][]float32
	Residuals [][]float32 // gradient compression residuals (residuals.go)
}

func encodeStates(w io.Writer, s *stateSnapshot) error {
	o := &optstate.Snapshot{Optimizer: s.Optimizer, NumUpdate: s.NumUpdate, Keys: make([]optstate.KeyStates, len(s.Keys))}
	for i, k := range s.Keys {
		o.Keys[i] = optstate.KeyStates{Key: optstate.Key{Str: k.Key.isStr, Name: k.Key.s, Int: k.Key.i}, T: k.T, N: k.N, States: k.States, Residuals: k.Residuals}
	}
	return optstate.Encode(w, o)
}

func decodeStates(r io.Reader) (*stateSnapshot, error) {
	o, err := optstate.Decode(r)
	if err != nil {
		return nil, err
	}
	s := &stateSnapshot{Optimizer: o.Optimizer, NumUpdate: o.NumUpdate, Keys: make([]keyStates, len(o.Keys))}
	for i, k := range o.Keys {
		key := IntKey(k.Key.Int)
		if k.Key.Str {
			key = StrKey(k.Key.Name)
		}
		s.Keys[i] = keyStates{Key: key, T: k.T, N: k.N, States: k.States, Residuals: k.Residuals}
	}
	return s, nil
}
