//go:build !js && !wasip1

package relay

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// The admin endpoints, /status and /metrics. Job names, their traffic and
// their quarantine reasons are for the operator only: the full view needs
// Config.AdminToken (Authorization: Bearer <token>), the handler of
// AdminHandler (a separate listener, reachable only where the operator
// puts it), or Config.OpenAdmin. Everyone else sees relay-wide figures.

// adminOK reports whether r may see job names.
func (s *Server) adminOK(r *http.Request) bool {
	if s.cfg.OpenAdmin {
		return true
	}
	if s.cfg.AdminToken == "" {
		return false
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.cfg.AdminToken)) == 1
}

// AdminHandler serves /status, /metrics and /jobs with every job, without a
// token: mount it on a listener only the operator reaches (the webkv
// command's -admin-listen).
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) { s.writeStatus(w, true) })
	mux.Handle("/metrics", noStore(s.metricsFull))
	mux.HandleFunc("/jobs", func(w http.ResponseWriter, r *http.Request) { s.serveJobs(w, r, true) })
	mux.HandleFunc("/jobs/", func(w http.ResponseWriter, r *http.Request) { s.serveJobs(w, r, true) })
	return mux
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	s.writeStatus(w, s.adminOK(r))
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if s.adminOK(r) {
		s.metricsFull.ServeHTTP(w, r)
		return
	}
	s.metricsPublic.ServeHTTP(w, r)
}

func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) writeStatus(w http.ResponseWriter, full bool) {
	st := s.Status()
	if !full {
		st = st.public()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}

// JobStatus is one job in /status.
type JobStatus struct {
	Job         string    `json:"job"`
	Mode        string    `json:"mode,omitempty"`
	Run         uint64    `json:"run"`
	Workers     int       `json:"workers"`
	LiveWorkers int64     `json:"live_workers"`
	Connections int64     `json:"connections"`
	Keys        int       `json:"keys"`
	Rounds      uint64    `json:"rounds"`
	Updates     uint64    `json:"updates"`
	LatePushes  uint64    `json:"late_pushes"`
	Rescaled    uint64    `json:"rescaled_rounds"`
	Duplicates  uint64    `json:"duplicate_requests"`
	Removed     uint64    `json:"removed_workers"`
	Pushes      uint64    `json:"pushes"`
	Pulls       uint64    `json:"pulls"`
	BytesIn     uint64    `json:"bytes_in"`
	BytesOut    uint64    `json:"bytes_out"`
	Checkpoints uint64    `json:"checkpoints"`
	LastCkpt    time.Time `json:"last_checkpoint,omitzero"`
	BudgetBytes int64     `json:"budget_bytes"`
	Stalls      uint64    `json:"flow_stalls"`
	// Aggregate is the job's aggregation rule (psm.Aggregate, e.g.
	// "trimmed-mean=0.25"); NonFinite counts pushes refused for NaN or Inf.
	Aggregate string `json:"aggregate,omitempty"`
	NonFinite uint64 `json:"non_finite_pushes"`
}

// QuarantinedJob is a job whose checkpoint did not restore: connections to
// it are refused until the relay starts with Config.ClearQuarantine.
type QuarantinedJob struct {
	Job    string `json:"job"`
	Reason string `json:"reason"`
}

// Status is the /status document. Without admin rights it has no Jobs
// and no Quarantined entries, only their counts.
type Status struct {
	Version        string           `json:"version"`
	Build          string           `json:"build"`
	Uptime         float64          `json:"uptime_seconds"`
	Connections    int64            `json:"connections"`
	PreAuth        int64            `json:"preauth_connections"`
	Shards         []string         `json:"shards,omitempty"`
	ShardIndex     int              `json:"shard_index"`
	Persistent     bool             `json:"persistent"`
	NumJobs        int              `json:"num_jobs"`
	NumQuarantined int              `json:"num_quarantined"`
	BudgetBytes    int64            `json:"budget_bytes"`
	Jobs           []JobStatus      `json:"jobs,omitempty"`
	Quarantined    []QuarantinedJob `json:"quarantined,omitempty"`
}

func (st Status) public() Status {
	st.Jobs, st.Quarantined, st.Shards = nil, nil, nil
	return st
}

// changes tells waiters that the counts Status reports (connections, jobs,
// a job's connections) may have moved: a wait reads Status again instead
// of polling it (the relay's tests wait this way, see WaitStatus in
// export_test.go). Its zero value is ready; note is cheap when nobody
// waits.
type changes struct {
	mu sync.Mutex
	ch chan struct{} // closed at the next note; nil while nobody waits
}

// note wakes every waiter.
func (c *changes) note() {
	c.mu.Lock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
	c.mu.Unlock()
}

// next returns a channel closed at the next note: take it before reading
// the state, so that a change in between is not missed.
func (c *changes) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

// Status returns what /status serves to an admin.
func (s *Server) Status() Status {
	s.mu.Lock()
	jobs := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j)
	}
	quar := make([]QuarantinedJob, 0, len(s.quarantine))
	for n, why := range s.quarantine {
		quar = append(quar, QuarantinedJob{Job: n, Reason: why})
	}
	s.mu.Unlock()
	authed, pre := s.connCounts()
	st := Status{
		Version:        Subprotocol,
		Build:          s.cfg.Build,
		Uptime:         time.Since(s.started).Seconds(),
		Connections:    int64(authed + pre),
		PreAuth:        int64(pre),
		Shards:         s.cfg.Shards,
		ShardIndex:     s.cfg.ShardIndex,
		Persistent:     s.db != nil,
		NumJobs:        len(jobs),
		NumQuarantined: len(quar),
		BudgetBytes:    s.budget.Used(),
		Jobs:           []JobStatus{},
		Quarantined:    quar,
	}
	for _, j := range jobs {
		st.Jobs = append(st.Jobs, j.status())
	}
	sort.Slice(st.Jobs, func(a, b int) bool { return st.Jobs[a].Job < st.Jobs[b].Job })
	sort.Slice(st.Quarantined, func(a, b int) bool { return st.Quarantined[a].Job < st.Quarantined[b].Job })
	return st
}
