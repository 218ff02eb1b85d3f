//go:build !js && !wasip1

package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Jobs as resources (issue 11): a job id outlives its workers (its keys,
// values and optimizer states stay in memory and in the checkpoint file),
// so the operator can list jobs and wipe them. The endpoints hang off
// /jobs, behind the admin credential of /status (Config.AdminToken, the
// -admin-listen handler, or OpenAdmin):
//
//	GET    /jobs                 the jobs, in memory and quarantined (JSON: JobInfo list)
//	POST   /jobs/{job}/reset     wipe a job without workers (409 if it has some)
//	DELETE /jobs/{job}           wipe a job, disconnecting its workers (CodeRemoved), and
//	                             forget a quarantined job's record
//
// Wiping drops the job's keys, values, optimizer, states, membership and
// runs, in memory and in the checkpoint file: the next worker of that id
// starts a new job from nothing. Reset is the safe verb (it refuses a
// job in use); delete is the forceful one.

// JobInfo is one entry of GET /jobs.
type JobInfo struct {
	Job         string    `json:"job"`
	Mode        string    `json:"mode,omitempty"`
	Run         uint64    `json:"run"`          // runs started (psm: a run starts when a worker joins a job without any)
	LiveWorkers int64     `json:"live_workers"` // members of the current run
	Connections int64     `json:"connections"`  // connections open now
	Keys        int       `json:"keys"`         // keys (parts on this shard)
	Rounds      uint64    `json:"rounds"`       // dist_sync rounds closed
	LastCkpt    time.Time `json:"last_checkpoint,omitzero"`
	Quarantined string    `json:"quarantined,omitempty"` // why its checkpoint did not restore
}

// Jobs lists the relay's jobs (GET /jobs), sorted by id.
func (s *Server) Jobs() []JobInfo {
	s.mu.Lock()
	jobs := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j)
	}
	out := make([]JobInfo, 0, len(jobs)+len(s.quarantine))
	for n, why := range s.quarantine {
		out = append(out, JobInfo{Job: n, Quarantined: why})
	}
	s.mu.Unlock()
	for _, j := range jobs {
		st := j.status()
		j.mu.Lock()
		run := j.runNo
		j.mu.Unlock()
		out = append(out, JobInfo{Job: st.Job, Mode: st.Mode, Run: run, LiveWorkers: st.LiveWorkers,
			Connections: st.Connections, Keys: st.Keys, Rounds: st.Rounds, LastCkpt: st.LastCkpt})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Job < out[b].Job })
	return out
}

// Errors of ResetJob and DeleteJob.
var (
	ErrNoJob     = errors.New("no such job")
	ErrJobInUse  = errors.New("the job has workers (delete disconnects them)")
	ErrJobWiping = errors.New("the job is being wiped")
)

// ResetJob wipes job name (see /jobs) if it has no worker (a worker that
// closed its store left; one that vanished leaves at its silence timeout).
func (s *Server) ResetJob(name string) error { return s.wipe(name, false) }

// DeleteJob wipes job name, disconnecting its workers, and forgets its
// quarantine record.
func (s *Server) DeleteJob(name string) error { return s.wipe(name, true) }

func (s *Server) wipe(name string, force bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errShuttingDown
	}
	j := s.jobs[name]
	_, quar := s.quarantine[name]
	switch {
	case j == nil && !quar:
		s.mu.Unlock()
		return fmt.Errorf("relay: job %s: %w", quote(name), ErrNoJob)
	case j == nil && !force:
		s.mu.Unlock()
		return fmt.Errorf("relay: job %s is quarantined, not in memory: delete it to forget its record", quote(name))
	case j != nil && j.wiping:
		s.mu.Unlock()
		return fmt.Errorf("relay: job %s: %w", quote(name), ErrJobWiping)
	case j != nil && !force && j.m.liveWorkers.Load() > 0:
		s.mu.Unlock()
		return fmt.Errorf("relay: reset job %s: %w", quote(name), ErrJobInUse)
	}
	if j != nil {
		j.wiping = true // jobFor refuses it from now on
	}
	s.mu.Unlock()
	if j != nil {
		select {
		case j.wipe <- struct{}{}:
		case <-j.done:
		}
		<-j.done
		if err := j.stopErr(); err != nil {
			return err
		}
	} else if s.db != nil {
		if err := s.db.remove(name); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if s.jobs[name] == j {
		delete(s.jobs, name)
	}
	delete(s.quarantine, name)
	s.mu.Unlock()
	s.changes.note()
	if quar && s.db != nil {
		if err := s.db.forgetQuarantine(name); err != nil {
			return err
		}
	}
	verb := "reset"
	if force {
		verb = "deleted"
	}
	s.log.Info("job "+verb+" by the operator", "job", name)
	return nil
}

// wipeNow runs on the job goroutine: every connection is told and closed,
// the checkpoint deleted, the state machine freed.
func (j *job) wipeNow() {
	// CodeRemoved, not CodeClosed: the worker must not reconnect into a
	// new job of the same id as if nothing happened.
	why := wire.Errorf(wire.CodeRemoved, "job %s was deleted by the relay's operator", quote(j.name))
	for _, p := range j.peers {
		b := wire.AppendError(nil, 0, why.Code, why.Msg)
		p.send(outMsg{b: b, release: func() {}})
		p.closeAfterQueued(why)
	}
	if j.s.db != nil {
		if err := j.s.db.remove(j.name); err != nil {
			j.mu.Lock()
			j.err = err
			j.mu.Unlock()
		}
	}
	j.release()
	j.stop()
}

// forgetQuarantine deletes job's quarantine record.
func (c *checkpointDB) forgetQuarantine(job string) error {
	return c.update(fmt.Sprintf("forget the quarantine of job %q", job), func(tx *bolt.Tx) error {
		q := tx.Bucket([]byte(bucketQuarantine))
		if q == nil {
			return nil
		}
		err := q.Delete([]byte(job))
		if errors.Is(err, berrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
}

// serveJobs serves /jobs and /jobs/{job}[/reset] to an admin.
func (s *Server) serveJobs(w http.ResponseWriter, r *http.Request, full bool) {
	w.Header().Set("Cache-Control", "no-store")
	if !full {
		http.Error(w, "webkv relay: /jobs needs the admin token (Authorization: Bearer <token>) or the admin listener", http.StatusUnauthorized)
		return
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/jobs"), "/")
	if rest == "" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET")
			http.Error(w, "webkv relay: GET /jobs lists; POST /jobs/{job}/reset and DELETE /jobs/{job} wipe", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Jobs())
		return
	}
	name, reset := strings.CutSuffix(rest, "/reset")
	var err error
	switch {
	case reset && r.Method == http.MethodPost:
		err = s.ResetJob(name)
	case !reset && r.Method == http.MethodDelete:
		err = s.DeleteJob(name)
	default:
		http.Error(w, "webkv relay: POST /jobs/{job}/reset or DELETE /jobs/{job}", http.StatusMethodNotAllowed)
		return
	}
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, ErrNoJob):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, ErrJobInUse), errors.Is(err, ErrJobWiping):
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
