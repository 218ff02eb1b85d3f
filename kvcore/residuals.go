package kvcore

import (
	"fmt"
)

// Gradient compression residuals in states files (issue 11). 2bit/1bit
// compression keeps, per key, what quantization has not sent yet (one
// residual per device in a local or device store, one per key on a dist
// worker), and the next push adds it back. MXNet keeps them only in
// memory, so a run restored from saved optimizer states restarts them at
// zero. SaveOptimizerStates writes them beside the key's optimizer states
// (states file version 2) and LoadOptimizerStates puts them back, so a
// restored run continues exactly. A dist store's server knows nothing of
// them: they are the worker's, added to the records its servers return.

// addResiduals adds the keys' residuals to the records of snap (a key
// without a record gets none: its server holds no state for it).
func (s *Store) addResiduals(snap *stateSnapshot) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range snap.Keys {
		ks := &snap.Keys[i]
		e, ok := s.keys[ks.Key]
		if !ok || len(e.resid) == 0 || e.n != ks.N {
			continue
		}
		ks.Residuals = ks.Residuals[:0]
		for j, b := range e.resid {
			r := make([]float32, e.n)
			if b != nil {
				if err := s.be.Read(b, 0, r); err != nil {
					return fmt.Errorf("key %v residual %d: %w", ks.Key, j, err)
				}
			}
			ks.Residuals = append(ks.Residuals, r)
		}
	}
	return nil
}

// checkResiduals checks, before anything changes, that snap's residuals
// fit the store's keys.
func (s *Store) checkResiduals(snap *stateSnapshot) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, ks := range snap.Keys {
		if len(ks.Residuals) == 0 {
			continue
		}
		e, ok := s.keys[ks.Key]
		if !ok {
			return fmt.Errorf("key %v: %w", ks.Key, ErrUnknownKey)
		}
		if ks.N != e.n {
			return fmt.Errorf("key %v has %d residual values in the file, %d stored: %w", ks.Key, ks.N, e.n, ErrBadStates)
		}
	}
	return nil
}

// installResiduals writes snap's residuals into the keys' residual
// buffers (allocated as needed); keys without residuals in snap keep
// theirs.
func (s *Store) installResiduals(snap *stateSnapshot) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, ks := range snap.Keys {
		e, ok := s.keys[ks.Key]
		if !ok || len(ks.Residuals) == 0 {
			continue
		}
		for j, r := range ks.Residuals {
			var err error
			if e.resid, err = growBuffers(s.be, e.resid, j, e.n); err != nil {
				return fmt.Errorf("kvcore: load optimizer states: key %v residual %d: %w", ks.Key, j, err)
			}
			if err := s.be.Write(e.resid[j], 0, r); err != nil {
				return fmt.Errorf("kvcore: load optimizer states: key %v residual %d: %w", ks.Key, j, err)
			}
		}
	}
	return nil
}
