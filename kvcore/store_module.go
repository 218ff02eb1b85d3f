package kvcore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/kvcore/wire"
)

// moduleRun is a store's custom updater module (SetUpdaterModule).
type moduleRun struct {
	mod  updater.Module   // owned copies
	inst updater.Instance // local and device stores; nil in dist stores (the servers run it)

	mu        sync.Mutex // guards keys and numUpdate
	keys      map[*entry]*moduleKey
	numUpdate int
}

// moduleKey is a key's state under the module, and host copies of its
// arrays for backends whose buffers are not host memory.
type moduleKey struct {
	st           updater.State
	recv, stored []float32
}

func (r *moduleRun) close() {
	if r != nil && r.inst != nil {
		r.inst.Close()
	}
}

// SetUpdaterModule installs a custom updater: a WebAssembly module with
// the ABI of package kvcore/updater (written, for one, in Go with package
// wasm/updater), which then runs once per key per push on the merged value,
// as MXNet's updater does (and on the servers, as MXNet's set_optimizer
// does with a pickled optimizer, but sandboxed). A dist store sends it to
// its servers, which must run updater modules; a local or device store runs
// it through Options.Updaters (package sandbox's Host) and refuses it
// without one. It replaces an optimizer or updater set before, and the
// module's states start fresh; SaveOptimizerStates and
// LoadOptimizerStates save and load them. It waits for the queued
// operations first; if one of them failed, it returns that error (as
// WaitAll does) and changes nothing. An update the module fails or refuses
// fails its push with an error wrapping ErrUpdater; a module that traps,
// exits or runs past its time or memory budget is unloaded, and every
// later push fails until an updater or optimizer is set again.
func (s *Store) SetUpdaterModule(ctx context.Context, m *updater.Module) error {
	if m == nil {
		return fmt.Errorf("kvcore: set updater module: nil module: %w", updater.ErrBadModule)
	}
	run := &moduleRun{mod: updater.Module{Code: slices.Clone(m.Code), Config: slices.Clone(m.Config)}, keys: map[*entry]*moduleKey{}}
	body, err := run.mod.AppendBinary(nil)
	if err == nil {
		_, err = updater.DecodeModule(body, 0)
	}
	if err != nil {
		return fmt.Errorf("kvcore: set updater module: %w", err)
	}
	if err := s.WaitAll(ctx); err != nil {
		return err
	}
	if s.rem != nil {
		if err := s.rem.command(ctx, updater.CommandHead, body); err != nil {
			return fmt.Errorf("kvcore: set updater module %v: %w", run.mod.Hash(), err)
		}
	} else {
		if s.loader == nil {
			return fmt.Errorf("kvcore: set updater module on %q: %w (give Options.Updaters a loader, such as package sandbox's Host)", s.typ, ErrUnsupported)
		}
		inst, err := s.loader.Load(ctx, &run.mod)
		if err != nil {
			return fmt.Errorf("kvcore: set updater module: %w", err)
		}
		run.inst = inst
	}
	s.mu.Lock()
	old := s.module
	s.module, s.updater, s.opt, s.optJSON, s.numUpdate = run, nil, nil, nil, 0
	for _, e := range s.keys {
		e.slot.Reset(s.be)
	}
	s.mu.Unlock()
	old.close()
	return nil
}

// dropModule unloads the module (an optimizer or updater replaces it). The
// caller holds s.mu.
func (s *Store) dropModule() {
	s.module.close()
	s.module = nil
}

// moduleStep runs the module on e with the merged push g of workers
// values.
func (s *Store) moduleStep(run *moduleRun, e *entry, g compute.Buffer, workers int) error {
	run.mu.Lock()
	mk := run.keys[e]
	if mk == nil {
		mk = &moduleKey{}
		run.keys[e] = mk
	}
	run.mu.Unlock()
	// Operations on one key are serialized: mk is this goroutine's.
	stored, recv := hostView(e.stored, e.n), hostView(g, e.n)
	copied := stored == nil
	if copied {
		mk.stored = grow(mk.stored, e.n)
		stored = mk.stored
		if err := s.be.Read(e.stored, 0, stored); err != nil {
			return err
		}
	}
	if recv == nil {
		mk.recv = grow(mk.recv, e.n)
		recv = mk.recv
		if err := s.be.Read(g, 0, recv); err != nil {
			return err
		}
	}
	c := &updater.Call{Key: moduleKeyID(e.key), Str: e.key.isStr, Name: e.name, Total: e.n, Workers: workers, Recv: recv, Stored: stored}
	if err := updater.Step(context.Background(), run.inst, c, &mk.st, nil); err != nil {
		return fmt.Errorf("%w: %w", ErrUpdater, err)
	}
	if copied {
		if err := s.be.Write(e.stored, 0, stored); err != nil {
			return err
		}
	}
	run.mu.Lock()
	run.numUpdate = max(run.numUpdate, mk.st.T)
	run.mu.Unlock()
	return nil
}

// hostView is b's values when b is host memory (the CPU backend), else nil.
func hostView(b compute.Buffer, n int) []float32 {
	if cb, ok := b.(*compute.CPUBuffer); ok {
		return cb.Float32s()[:n]
	}
	return nil
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// moduleKeyID is k's id in the module ABI: the int key, or the wire id of a
// string key (as a dist store's servers give it).
func moduleKeyID(k Key) uint64 {
	if k.isStr {
		return wire.StrKeyID(k.s)
	}
	return wire.IntKeyID(k.i)
}

// moduleStates is the states snapshot of a local store's module. The
// caller holds s.mu (read).
func (s *Store) moduleStates(dumpOptimizer bool) *stateSnapshot {
	run := s.module
	run.mu.Lock()
	defer run.mu.Unlock()
	snap := &stateSnapshot{NumUpdate: int64(run.numUpdate)}
	if dumpOptimizer {
		snap.Optimizer = updater.Marker(&run.mod)
	}
	for _, e := range s.sortedEntries() {
		ks := keyStates{Key: e.key, N: e.n}
		if mk := run.keys[e]; mk != nil && mk.st.Ready() {
			ks.T = int64(mk.st.T)
			for _, a := range mk.st.States {
				ks.States = append(ks.States, slices.Clone(a))
			}
		}
		snap.Keys = append(snap.Keys, ks)
	}
	return snap
}

// loadModuleStates installs snap's states for the module of a local store,
// after checking all of them. The caller holds s.mu.
func (s *Store) loadModuleStates(ctx context.Context, snap *stateSnapshot) error {
	run := s.module
	var mod *updater.Module
	if run != nil {
		mod = &run.mod
	}
	if snap.Optimizer != nil {
		if err := updater.CheckMarker(snap.Optimizer, mod); err != nil {
			return fmt.Errorf("kvcore: load optimizer states: %w: %w", ErrBadStates, err)
		}
	}
	type load struct {
		e  *entry
		t  int
		st [][]float32
	}
	var ls []load
	for _, ks := range snap.Keys {
		e, ok := s.keys[ks.Key]
		if !ok {
			return fmt.Errorf("kvcore: load optimizer states: key %v: %w", ks.Key, ErrUnknownKey)
		}
		if ks.N != e.n {
			return fmt.Errorf("kvcore: load optimizer states: key %v has %d values in the file, %d stored: %w", ks.Key, ks.N, e.n, ErrBadStates)
		}
		if ks.T == 0 && len(ks.States) == 0 {
			ls = append(ls, load{e: e})
			continue
		}
		c := &updater.Call{Key: moduleKeyID(e.key), Str: e.key.isStr, Name: e.name, Total: e.n, T: int(ks.T), Stored: make([]float32, e.n)}
		if err := updater.CheckStates(ctx, run.inst, c, ks.States); err != nil {
			if errors.Is(err, updater.ErrFailed) {
				return fmt.Errorf("kvcore: load optimizer states: %w: %w", ErrUpdater, err)
			}
			return fmt.Errorf("kvcore: load optimizer states: %w: %w", ErrBadStates, err)
		}
		ls = append(ls, load{e: e, t: int(ks.T), st: ks.States})
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	for _, mk := range run.keys {
		mk.st.Reset()
	}
	for _, l := range ls {
		mk := run.keys[l.e]
		if mk == nil {
			mk = &moduleKey{}
			run.keys[l.e] = mk
		}
		if l.t != 0 || len(l.st) != 0 {
			mk.st.Set(l.t, l.st)
		}
	}
	run.numUpdate = int(snap.NumUpdate)
	return nil
}
