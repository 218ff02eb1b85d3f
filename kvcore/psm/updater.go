package psm

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/kvcore/wire"
)

// Custom updaters: command updater.CommandHead carries a WebAssembly module
// (updater.Module.AppendBinary) that replaces the optimizer, as MXNet's
// set_optimizer installs a pickled updater on its servers. The Job keeps
// no runtime of its own: Config.Updaters loads the module (the relay gives
// it package sandbox's Host), and without one modules are refused.
//
// The Job runs the module where it would run the optimizer: once per
// dist_sync round on the sum of the round's pushes (scaled as for the
// optimizer when a deadline closes a round short), once per push in
// dist_async. It keeps each key's update count and state arrays itself
// (updater.State), so they are saved by SaveStates (with an
// updater.Marker naming the module instead of an optimizer spec), loaded
// by LoadStates (the file must name the installed module, or nothing), and
// written in snapshots together with the module's code; Restore loads the
// module again, so a restarted relay continues with the same states.
//
// A module that fails fatally (updater.ErrFailed: a trap, an exit, a time
// or memory budget) fails the round it was updating (every push of it gets
// CodeUpdater with the module's error) and stays unloaded: every later
// update of the job fails with CodeUpdater naming the first failure, until
// a new module or an optimizer is installed. A module that refuses one
// update (status 1) fails that round only.

// custom is the Job's custom updater.
type custom struct {
	mod       updater.Module // owned copies of code and config
	hash      updater.Hash
	inst      updater.Instance // nil once unloaded
	failed    string           // why it was unloaded ("" while it runs)
	keys      map[uint64]*updater.State
	numUpdate int
	call      updater.Call
	recv      []float32 // host copies for backends whose buffers are not host memory
	stored    []float32
}

// updaterErr marks an error of the custom updater (answered with
// CodeUpdater).
type updaterErr struct{ err error }

func (e *updaterErr) Error() string { return e.err.Error() }
func (e *updaterErr) Unwrap() error { return e.err }

// codedErr is a refusal of the Job's own (a budget) during an update,
// answered with its code.
type codedErr struct{ e *wire.Error }

func (e *codedErr) Error() string { return e.e.Msg }

// updateCode is the wire code for a failed update: CodeUpdater when the
// custom updater failed, a refusal's own code, CodeInternal for a backend
// error.
func updateCode(err error) wire.Code {
	var ue *updaterErr
	var ce *codedErr
	switch {
	case errors.As(err, &ce):
		return ce.e.Code
	case errors.As(err, &ue):
		return wire.CodeUpdater
	}
	return wire.CodeInternal
}

// setCustom installs the module of command m.
func (j *Job) setCustom(w *worker, m *wire.Msg) {
	if j.cfg.Updaters == nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeBadOptimizer, "job %q: this server runs no custom updater modules", j.cfg.Job))
		return
	}
	mod, err := updater.DecodeModule(m.Payload, 0)
	if err != nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeBadOptimizer, "%v", err))
		return
	}
	cu := &custom{mod: updater.Module{Code: append([]byte(nil), mod.Code...), Config: append([]byte(nil), mod.Config...)},
		keys: map[uint64]*updater.State{}}
	cu.hash = cu.mod.Hash()
	inst, err := j.cfg.Updaters.Load(context.Background(), &cu.mod)
	if err != nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeBadOptimizer, "custom updater: %v", err))
		return
	}
	if e := j.customBudget(cu, nil, false); e != nil {
		inst.Close()
		j.reject(w, m.Seq, e)
		return
	}
	cu.inst = inst
	j.dropCustom()
	j.cu = cu
	j.opt, j.optJSON, j.numUpdate = nil, nil, 0
	j.resetOptStates()
	j.rd.Persist = true
	j.answer(w, m.Seq, wire.TypeCommand, wire.Header{Key: m.Key})
}

// dropCustom unloads the custom updater (an optimizer or another module
// replaces it).
func (j *Job) dropCustom() {
	if j.cu != nil && j.cu.inst != nil {
		j.cu.inst.Close()
	}
	j.cu = nil
}

// resetOptStates frees the optimizer states of every key.
func (j *Job) resetOptStates() {
	for _, k := range j.keys {
		k.slot.Reset(j.be)
	}
}

// customUpdate runs the custom updater on k with the merged push g.
func (j *Job) customUpdate(k *key, g compute.Buffer) error {
	cu := j.cu
	if cu.inst == nil {
		return &updaterErr{fmt.Errorf("custom updater %v was unloaded after a failure (%s): install an updater or optimizer again", cu.hash, cu.failed)}
	}
	st := cu.keys[k.id]
	if st == nil {
		st = &updater.State{}
		cu.keys[k.id] = st
	}
	stored, err := j.hostValue(k)
	if err != nil {
		return err
	}
	cpu := true
	if _, ok := k.stored.(*compute.CPUBuffer); !ok {
		// hostValue's copy is the key's host cache; update a copy of it.
		cpu = false
		cu.stored = append(cu.stored[:0], stored...)
		stored = cu.stored
	}
	var recv []float32
	if cb, ok := g.(*compute.CPUBuffer); ok {
		recv = cb.Float32s()[:k.n]
	} else {
		if cap(cu.recv) < k.n {
			cu.recv = make([]float32, k.n)
		}
		recv = cu.recv[:k.n]
		if err := j.be.Read(g, 0, recv); err != nil {
			return err
		}
	}
	workers := 1
	if k.cur != nil {
		workers = k.cur.nexp
	}
	c := &cu.call
	*c = updater.Call{Key: k.id, Str: k.str, Name: k.optName(), Offset: k.off, Total: k.total, Workers: workers, Recv: recv, Stored: stored}
	admit := func(ns int) error {
		if need := customBytes(k.n, ns); need > k.resv && !j.rebudget(k, need) {
			return &codedErr{j.errBudget(fmt.Sprintf("the %d custom updater states of key %s", ns, k.label()), need-k.resv)}
		}
		return nil
	}
	err = updater.Step(context.Background(), cu.inst, c, st, admit)
	*c = updater.Call{}
	if err != nil {
		var ce *codedErr
		if errors.As(err, &ce) {
			return err
		}
		if errors.Is(err, updater.ErrFailed) {
			cu.inst.Close()
			cu.inst, cu.failed = nil, err.Error()
			j.rd.Persist = true
		}
		return &updaterErr{err}
	}
	if !cpu {
		if err := j.be.Write(k.stored, 0, stored); err != nil {
			return err
		}
	}
	cu.numUpdate = max(cu.numUpdate, st.T)
	return nil
}

// saveCustomStates answers SaveStates with the custom updater's states.
func (j *Job) saveCustomStates(w *worker, m *wire.Msg) {
	cu := j.cu
	st := wire.States{Optimizer: updater.Marker(&cu.mod), NumUpdate: int64(cu.numUpdate)}
	for _, k := range j.sortedKeys() {
		ks := wire.KeyStates{Key: k.id, Str: k.str, Name: k.name, Offset: uint32(k.off), Total: uint32(k.total), N: uint32(k.n)}
		if s := cu.keys[k.id]; s != nil && s.Ready() {
			ks.T, ks.States = int64(s.T), s.States
		}
		st.Keys = append(st.Keys, ks)
	}
	start := len(j.scratch)
	j.scratch = wire.AppendStates(j.scratch, &st)
	delete(w.held, m.Seq)
	j.remember(w, m.Seq, reply{typ: wire.TypeAck, req: wire.TypeSaveStates})
	j.send(w.conn, wire.Msg{Header: wire.Header{Type: wire.TypeAck, Seq: m.Seq}, Payload: j.scratch[start:]})
}

// customStates loads st when it concerns the custom updater: a file of
// its states (an updater.Marker, or no spec while a module runs), or an
// optimizer spec while a module runs (the optimizer replaces the module if
// its states load). ok is false when st is for the optimizer path alone.
func (j *Job) customStates(st *wire.States) (e *wire.Error, ok bool) {
	marker := updater.IsMarker(st.Optimizer)
	switch {
	case j.cu == nil && !marker:
		return nil, false
	case j.cu != nil && st.Optimizer != nil && !marker:
		cu := j.cu
		j.cu = nil
		if e := j.installStates(st); e != nil {
			j.cu = cu
			j.customBudget(cu, nil, true) // back to what it was (it fit before)
			return e, true
		}
		if cu.inst != nil {
			cu.inst.Close()
		}
		return nil, true
	}
	cu := j.cu
	if marker {
		var mod *updater.Module
		if cu != nil {
			mod = &cu.mod
		}
		if err := updater.CheckMarker(st.Optimizer, mod); err != nil {
			return wire.Errorf(wire.CodeBadStates, "load optimizer states: %v", err), true
		}
	}
	if cu.inst == nil {
		return wire.Errorf(wire.CodeUpdater, "load optimizer states: custom updater %v was unloaded after a failure (%s)", cu.hash, cu.failed), true
	}
	type load struct {
		k      *key
		t      int
		states [][]float32
	}
	var ls []load
	for _, ks := range st.Keys {
		k := j.keys[ks.Key]
		if k == nil || k.str != ks.Str {
			return wire.Errorf(wire.CodeUnknownKey, "load optimizer states: key %d (%q) is not on this shard", int64(ks.Key), ks.Name), true
		}
		if int(ks.N) != k.n || int(ks.Offset) != k.off || int(ks.Total) != k.total {
			return wire.Errorf(wire.CodeBadStates, "load optimizer states: key %s: part [%d,+%d) of %d, stored [%d,+%d) of %d",
				k.label(), ks.Offset, ks.N, ks.Total, k.off, k.n, k.total), true
		}
		if ks.T == 0 && len(ks.States) == 0 {
			ls = append(ls, load{k: k}) // never updated: fresh states
			continue
		}
		stored, err := j.hostValue(k)
		if err != nil {
			return wire.Errorf(wire.CodeInternal, "load optimizer states: key %s: %v", k.label(), err), true
		}
		c := &updater.Call{Key: k.id, Str: k.str, Name: k.optName(), Offset: k.off, Total: k.total, T: int(ks.T), Stored: stored}
		if err := updater.CheckStates(context.Background(), cu.inst, c, ks.States); err != nil {
			if errors.Is(err, updater.ErrFailed) {
				cu.inst.Close()
				cu.inst, cu.failed = nil, err.Error()
				return wire.Errorf(wire.CodeUpdater, "load optimizer states: %v", err), true
			}
			return wire.Errorf(wire.CodeBadStates, "load optimizer states: %v", err), true
		}
		ls = append(ls, load{k: k, t: int(ks.T), states: ks.States})
	}
	given := map[uint64]int{}
	for _, l := range ls {
		given[l.k.id] = len(l.states)
	}
	if e := j.customBudget(cu, given, false); e != nil {
		return e, true
	}
	clear(cu.keys)
	for _, l := range ls {
		s := &updater.State{}
		if l.t != 0 || len(l.states) != 0 {
			s.Set(l.t, l.states)
		}
		cu.keys[l.k.id] = s
	}
	cu.numUpdate = int(st.NumUpdate)
	return nil, true
}

// closeCustom unloads the module when the Job closes.
func (j *Job) closeCustom() {
	if j.cu != nil && j.cu.inst != nil {
		j.cu.inst.Close()
		j.cu.inst = nil
	}
}

// Snapshot section of the custom updater, after the keys (present only
// while one is installed):
//
//	u8 1, bytes module (uv length + updater.Module.AppendBinary),
//	str failure ("" while it runs), uv num_update,
//	uv keys; each: u64 id, uv t, u8 ready, uv states; n float32 each
const snapCustom = 1

func (j *Job) appendCustom(e senc) senc {
	cu := j.cu
	if cu == nil {
		return e
	}
	enc, _ := cu.mod.AppendBinary(nil) // its config fit when it was decoded
	e = e.u8(snapCustom).uv(uint64(len(enc)))
	e = append(e, enc...)
	e = e.str(cu.failed).uv(uint64(cu.numUpdate))
	ks := j.sortedKeys()
	n := 0
	for _, k := range ks {
		if cu.keys[k.id] != nil {
			n++
		}
	}
	e = e.uv(uint64(n))
	for _, k := range ks {
		s := cu.keys[k.id]
		if s == nil {
			continue
		}
		e = e.u64(k.id).uv(uint64(s.T)).bool(s.Ready()).uv(uint64(len(s.States)))
		for _, a := range s.States {
			e = senc(wire.AppendFloat32s(e, a))
		}
	}
	return e
}

// restoreCustom reads the custom updater's section, if the snapshot has
// one, after the keys were read.
func (j *Job) restoreCustom(d *sdec) {
	if d.err != nil || d.left() == 0 {
		return
	}
	if tag := d.u8(); tag != snapCustom {
		d.fail("unknown section %d after the keys", tag)
		return
	}
	enc := d.c.Bytes("updater module", math.MaxInt32)
	d.check()
	failed := d.str()
	num := d.uv()
	if d.err != nil {
		return
	}
	mod, err := updater.DecodeModule(enc, 0)
	if err != nil {
		d.fail("custom updater: %v", err)
		return
	}
	cu := &custom{mod: updater.Module{Code: append([]byte(nil), mod.Code...), Config: append([]byte(nil), mod.Config...)},
		failed: failed, numUpdate: int(num), keys: map[uint64]*updater.State{}}
	cu.hash = cu.mod.Hash()
	nk := d.count(10)
	for range nk {
		id, t, ready, ns := d.u64(), int(d.uv()), d.u8() == 1, d.count(4)
		k := j.keys[id]
		if d.err == nil && (k == nil || cu.keys[id] != nil || ns > updater.MaxStates) {
			d.fail("custom updater: key %d unknown, repeated or with %d states", id, ns)
		}
		if d.err != nil {
			return
		}
		states := make([][]float32, ns)
		for i := range states {
			states[i] = d.floats(k.n)
		}
		s := &updater.State{}
		if ready {
			s.Set(t, states)
		}
		cu.keys[id] = s
	}
	if d.err == nil {
		j.cu = cu
	}
}

// reloadCustom loads the restored module. A module that cannot be loaded
// (no Loader, a policy that now refuses it) leaves the job with the
// updater unloaded, as after a failure: its states stay in the snapshot.
func (j *Job) reloadCustom() {
	cu := j.cu
	if cu == nil {
		return
	}
	j.customBudget(cu, nil, true) // the data exists
	if cu.failed != "" {
		return
	}
	if j.cfg.Updaters == nil {
		cu.failed = "restored on a server that runs no custom updater modules"
		return
	}
	inst, err := j.cfg.Updaters.Load(context.Background(), &cu.mod)
	if err != nil {
		cu.failed = "could not be loaded again after a restore: " + err.Error()
		return
	}
	cu.inst = inst
}

// customBytes is what a key part of n elements holds under the custom
// updater with states state arrays: its value, the merge buffer of its
// rounds, and the states (host memory, counted as the optimizer's are).
func customBytes(n, states int) int64 { return 4 * int64(n) * int64(2+states) }

// customBudget sets every key's reservation to what it holds under cu:
// with given (a states load), given[key] state arrays (none for a key not
// in it); else the key's current ones. force takes the bytes regardless
// (they were held before).
func (j *Job) customBudget(cu *custom, given map[uint64]int, force bool) *wire.Error {
	need := make(map[*key]int64, len(j.keys))
	var delta int64
	for _, k := range j.keys {
		ns := 0
		if given != nil {
			ns = given[k.id]
		} else if s := cu.keys[k.id]; s != nil {
			ns = len(s.States)
		}
		need[k] = customBytes(k.n, ns)
		delta += need[k] - k.resv
	}
	if !j.reserve(delta, force) {
		return j.errBudget("the custom updater's states", delta)
	}
	for k, n := range need {
		k.resv = n
	}
	return nil
}
