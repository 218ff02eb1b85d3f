package psm

import "github.com/webkv/webkv/kvcore/wire"

// A job's worker count (issue 11): MXNet's DMLC_NUM_WORKER, one number
// for the whole job. It is Config.MinWorkers (the relay's -workers) when
// set, else the Want of the run's first worker (a run starts when a worker
// joins a job that has none); 0 means none. Welcomes hold until that many
// workers joined (the start barrier), so every worker starts with the same
// rank space and NumWorkers; a Hello asking for another count is refused
// with CodeWorkerCount (the count must not depend on who joined first).
// After the start NumWorkers (Welcomes, membership notices, barrier
// answers) is the live membership, the same for every worker: elastic jobs
// (a worker dies, a browser tab joins) average over who is there.

// checkWant refuses a Hello whose Want contradicts the job's count; w is
// the worker it resumes (nil: a new one).
func (j *Job) checkWant(h *wire.Hello, w *worker) *wire.Error {
	want := int(h.Want)
	if want == 0 || want == j.want {
		return nil
	}
	others := len(j.workers)
	if w != nil {
		others--
	}
	if (others == 0 || w == nil && j.runOver()) && j.cfg.MinWorkers == 0 {
		return nil // the first worker of a run sets the count (newRun)
	}
	if j.want == 0 {
		return wire.Errorf(wire.CodeWorkerCount, "job %s has no worker count (its first worker gave none; %d workers joined), this worker asks for %d: give every worker the same count, or none",
			short(j.cfg.Job), others, want)
	}
	by := "its first worker"
	if j.cfg.MinWorkers > 0 {
		by = "the relay's -workers"
	}
	return wire.Errorf(wire.CodeWorkerCount, "job %s has %d workers (set by %s), this worker asks for %d: give every worker the same count (MXNet's DMLC_NUM_WORKER), or none",
		short(j.cfg.Job), j.want, by, want)
}

// newRun starts a run: the first worker h joins a job without workers.
// Unless the relay fixed it, the count is the new first worker's, and
// the start barrier holds again for it.
func (j *Job) newRun(h *wire.Hello) {
	j.run++
	j.rd.Persist = true
	j.note(Note{Kind: NoteRun, Run: j.run})
	if j.cfg.MinWorkers == 0 {
		j.want = int(h.Want)
	}
	j.started = false
}

// Workers is the job's worker count (0: none; NumWorkers follows the
// membership).
func (j *Job) Workers() int { return j.want }
