package psm

import "github.com/webkv/webkv/kvcore/wire"

// Runs (issue 11: jobs as resources). A job id outlives its workers: on a
// relay with tokens or a data dir, a job whose workers all left keeps its
// keys, values and optimizer states, and a relay restarted on its data
// restores them. Reusing the job id must not silently continue that old
// run (training would go on from the old weights while every worker's
// Init "succeeded"). So the job counts runs: a run starts when a new
// worker joins a job with no workers, or a restored job before any of its
// restored workers resumed (they may never come back). A key remembers
// the run that created it; an Init of a key from an earlier run fails with
// CodeEarlierRun unless the worker's Hello said Resume, which adopts the
// key into the current run. Pushes and pulls are never refused: only
// Init, the call that claims to start from a given value, is checked.
// Resuming workers (a Hello with their worker id) never start a run.

// runOver reports whether a new worker joining now starts a new run.
func (j *Job) runOver() bool { return len(j.workers) == 0 || j.restored }

// checkRun refuses w's init of k when k is from an earlier run and w did
// not ask to resume; with Resume, k joins the current run.
func (j *Job) checkRun(w *worker, k *key) *wire.Error {
	if k.run == j.run {
		return nil
	}
	if !w.resume {
		return wire.Errorf(wire.CodeEarlierRun, "job %s holds key %s from an earlier run (after %d updates; its workers left, or the relay restarted on its data): set the resume option to continue it (Go: relay.DialOptions.Resume, webkv worker -resume), or reset the job (the relay's admin endpoint /jobs)",
			short(j.cfg.Job), k.label(), k.rounds)
	}
	k.run = j.run
	j.rd.Persist = true
	return nil
}

// Run is the job's current run number (0 before its first worker).
func (j *Job) Run() uint64 { return j.run }
