package optstate

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// Slot is one key's optimizer state on a backend: its update count and
// the state arrays of the optimizer that runs on it. A store keeps one per
// key, a parameter server one per key part; both update and load through
// the functions here, so both run an optimizer spec the same way.
type Slot struct {
	T      int              // updates applied (the t of the next is T+1)
	States []compute.Buffer // kind.NumStates arrays of the key's length
	Params compute.StepParams
}

// Prepare gets update number sl.T of spec ready: it fills sl.Params for
// the key named key (as optimizer specs name keys) at store-wide update
// count numUpdate, and makes sure the slot holds the state arrays spec
// keeps (n values each, at their initial value), freeing those of another
// optimizer. The caller counts the update first (sl.T++).
func (sl *Slot) Prepare(be compute.Backend, spec *optimizer.Spec, key string, n, numUpdate int) (compute.OptKind, error) {
	spec.Params(key, sl.T, numUpdate, &sl.Params)
	kind := spec.Kind()
	if want := kind.NumStates(&sl.Params); len(sl.States) != want {
		sl.free(be)
		for i := range want {
			b, err := be.Alloc(n)
			if err != nil {
				return kind, err
			}
			if v := spec.StateInit(i); v != 0 {
				if err := be.Fill(b, v); err != nil {
					be.Free(b)
					return kind, err
				}
			}
			sl.States = append(sl.States, b)
		}
	}
	return kind, nil
}

// Step counts one update and applies it: weight takes one step of spec
// with gradient grad (see Prepare for key, n and numUpdate).
func (sl *Slot) Step(be compute.Backend, spec *optimizer.Spec, key string, n, numUpdate int, weight, grad compute.Buffer) error {
	kind, err := sl.Prepare(be, spec, key, n, numUpdate)
	if err != nil {
		return err
	}
	return be.Step(kind, &sl.Params, weight, grad, sl.States)
}

// Reset frees the state arrays and starts the count again, as a new
// optimizer does.
func (sl *Slot) Reset(be compute.Backend) {
	sl.free(be)
	sl.T = 0
}

func (sl *Slot) free(be compute.Backend) {
	for i, b := range sl.States {
		be.Free(b)
		sl.States[i] = nil
	}
	sl.States = sl.States[:0]
}

// Read returns host copies of the state arrays (n values each).
func (sl *Slot) Read(be compute.Backend, n int) ([][]float32, error) {
	out := make([][]float32, 0, len(sl.States))
	for _, b := range sl.States {
		h := make([]float32, n)
		if err := be.Read(b, 0, h); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// Load is the states one key gets from a file or a load request.
type Load struct {
	Slot   *Slot
	Key    string // as optimizer specs name keys (Params)
	Label  string // the key as the caller's errors print it
	N      int    // values per state array
	T      int64  // updates applied
	States [][]float32
}

// Check reports whether ls can be installed for spec: no slot twice, and
// every key carrying the state arrays spec keeps for it, of the key's
// length (the error then wraps ErrBadStates). It allocates nothing, so a
// caller can account for the memory between Check and Install.
func Check(spec *optimizer.Spec, numUpdate int64, ls []Load) error {
	for i, l := range ls {
		for _, m := range ls[:i] {
			if m.Slot == l.Slot {
				return fmt.Errorf("key %s given twice: %w", l.Label, ErrBadStates)
			}
		}
		var p compute.StepParams
		spec.Params(l.Key, max(1, int(l.T)), max(1, int(numUpdate)), &p)
		if want := spec.Kind().NumStates(&p); len(l.States) != want {
			return fmt.Errorf("key %s has %d states, %v needs %d: %w", l.Label, len(l.States), spec.Kind(), want, ErrBadStates)
		}
		for j, st := range l.States {
			if len(st) != l.N {
				return fmt.Errorf("key %s: state %d has %d values, want %d: %w", l.Label, j, len(st), l.N, ErrBadStates)
			}
		}
	}
	return nil
}

// Install installs loaded states, all or nothing: it checks them (Check)
// and writes them to new buffers of be; only then does it free the states
// of every slot in all and give the slots of ls theirs (the others start
// fresh, T 0). On error nothing changed. The caller has checked keys and
// lengths, and sets its store-wide count to numUpdate.
func Install(be compute.Backend, spec *optimizer.Spec, numUpdate int64, ls []Load, all []*Slot) error {
	if err := Check(spec, numUpdate, ls); err != nil {
		return err
	}
	bufs := make([][]compute.Buffer, len(ls))
	for i, l := range ls {
		for _, st := range l.States {
			b, err := be.Alloc(l.N)
			if err == nil {
				if err = be.Write(b, 0, st); err != nil {
					be.Free(b)
				}
			}
			if err != nil {
				for _, bs := range bufs {
					for _, b := range bs {
						be.Free(b)
					}
				}
				return fmt.Errorf("key %s: %w", l.Label, err)
			}
			bufs[i] = append(bufs[i], b)
		}
	}
	for _, sl := range all {
		sl.Reset(be)
	}
	for i, l := range ls {
		l.Slot.States, l.Slot.T = bufs[i], int(l.T)
	}
	return nil
}
