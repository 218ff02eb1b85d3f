//go:build !js && !wasip1

package relay

import (
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// /metrics is served by github.com/prometheus/client_golang from a
// registry per Server (no process-wide state): the Go runtime's and the
// process's collectors (go_*, process_*), go_build_info, and the relay's
// own collector, which reads the relay's counters at scrape time. The
// public registry has relay-wide figures only; the admin one (admin token,
// admin listener) adds every job's, labelled job="<id>".

// jobMetrics are the counters of one job. They are updated with atomics by
// the job goroutine and the connection goroutines and read by /metrics and
// /status without taking the job's lock.
type jobMetrics struct {
	pushes      atomic.Uint64
	pulls       atomic.Uint64
	msgsIn      atomic.Uint64
	msgsOut     atomic.Uint64
	bytesIn     atomic.Uint64
	bytesOut    atomic.Uint64
	errors      atomic.Uint64
	checkpoints atomic.Uint64
	ckptErrors  atomic.Uint64
	dropped     atomic.Uint64 // connections closed because a write made no progress
	stalls      atomic.Uint64 // times a peer's requests waited for its answers to drain
	budget      atomic.Int64  // bytes of the job's budget in use
	liveWorkers atomic.Int64
	conns       atomic.Int64

	ckptNanos atomic.Uint64 // duration of the last checkpoint

	// Rounds and their latency, under one lock so that a scrape sees
	// webkv_rounds_total equal to webkv_round_seconds_count.
	rmu        sync.Mutex
	rounds     uint64
	roundNanos uint64
	buckets    [len(latencyBounds) + 1]uint64
}

var latencyBounds = [...]float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60}

// observeRounds counts n closed rounds (over all keys) that took d each:
// the time from the first push after the previous close to this close.
func (m *jobMetrics) observeRounds(n uint64, d time.Duration) {
	i := sort.SearchFloat64s(latencyBounds[:], d.Seconds())
	m.rmu.Lock()
	m.rounds += n
	m.roundNanos += n * uint64(d)
	m.buckets[i] += n
	m.rmu.Unlock()
}

// roundStats returns the round count, the latency sum and the cumulative
// buckets, consistently.
func (m *jobMetrics) roundStats() (count uint64, sum float64, cum map[float64]uint64) {
	m.rmu.Lock()
	defer m.rmu.Unlock()
	cum = make(map[float64]uint64, len(latencyBounds))
	var c uint64
	for k, b := range latencyBounds {
		c += m.buckets[k]
		cum[b] = c
	}
	return m.rounds, time.Duration(m.roundNanos).Seconds(), cum
}

func (m *jobMetrics) roundCount() uint64 {
	m.rmu.Lock()
	defer m.rmu.Unlock()
	return m.rounds
}

// metricsHandlers builds the public and the admin /metrics handlers.
func (s *Server) metricsHandlers() (public, full http.Handler) {
	reg := func(full bool) http.Handler {
		r := prometheus.NewRegistry()
		r.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			collectors.NewBuildInfoCollector(),
			newRelayCollector(s, full),
		)
		return promhttp.HandlerFor(r, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	}
	return reg(false), reg(true)
}

type desc struct {
	d   *prometheus.Desc
	typ prometheus.ValueType
}

// relayCollector reads the relay's figures at scrape time.
type relayCollector struct {
	s    *Server
	full bool

	relay   map[string]desc // relay-wide, by name
	job     map[string]desc // per job
	roundsD *prometheus.Desc
}

// relaySeries and jobSeries name and explain every series; their values
// are read in Collect.
var (
	relaySeries = []struct {
		name, help string
		typ        prometheus.ValueType
	}{
		{"webkv_relay_uptime_seconds", "Seconds since the relay started.", prometheus.GaugeValue},
		{"webkv_relay_connections", "Open websocket connections (authenticated and not).", prometheus.GaugeValue},
		{"webkv_relay_preauth_connections", "Connections whose Hello is not accepted yet.", prometheus.GaugeValue},
		{"webkv_relay_jobs", "Jobs in memory.", prometheus.GaugeValue},
		{"webkv_relay_quarantined_jobs", "Jobs whose checkpoint was corrupt, refused until cleared.", prometheus.GaugeValue},
		{"webkv_relay_budget_bytes", "Bytes of the budget for all jobs' values and states in use.", prometheus.GaugeValue},
		{"webkv_relay_budget_max_bytes", "The budget for all jobs' values and states.", prometheus.GaugeValue},
		{"webkv_relay_refused_full_total", "Upgrades refused: the authenticated connection slots were full.", prometheus.CounterValue},
		{"webkv_relay_refused_preauth_total", "Upgrades refused: the slots of connections without a token at the upgrade were full.", prometheus.CounterValue},
		{"webkv_relay_refused_auth_total", "Upgrades refused: bad or missing token, unknown job.", prometheus.CounterValue},
		{"webkv_relay_refused_origin_total", "Upgrades refused: a page's Origin is not allowed (-origins).", prometheus.CounterValue},
		{"webkv_relay_handshake_failures_total", "Connections closed before their Hello was accepted (no Hello in time, bad first frame).", prometheus.CounterValue},
		{"webkv_relay_expired_jobs_total", "Jobs deleted after their idle expiry.", prometheus.CounterValue},
	}
	jobSeries = []struct {
		name, help string
		typ        prometheus.ValueType
	}{
		{"webkv_rounds_total", "Closed dist_sync rounds, summed over keys (also webkv_round_seconds_count).", prometheus.CounterValue},
		{"webkv_pushes_total", "Push requests received.", prometheus.CounterValue},
		{"webkv_pulls_total", "Pull requests received.", prometheus.CounterValue},
		{"webkv_messages_in_total", "Messages received from peers.", prometheus.CounterValue},
		{"webkv_messages_out_total", "Messages sent to peers.", prometheus.CounterValue},
		{"webkv_bytes_in_total", "Message bytes received from peers.", prometheus.CounterValue},
		{"webkv_bytes_out_total", "Message bytes sent to peers.", prometheus.CounterValue},
		{"webkv_peer_errors_total", "Connections closed because of a protocol error.", prometheus.CounterValue},
		{"webkv_slow_peers_total", "Connections closed because a write made no progress for the write timeout (the peer stopped reading).", prometheus.CounterValue},
		{"webkv_flow_stalls_total", "Times a connection's requests were held back until its answers drained below the send buffer (flow control, not an error).", prometheus.CounterValue},
		{"webkv_checkpoints_total", "Checkpoints written.", prometheus.CounterValue},
		{"webkv_checkpoint_errors_total", "Checkpoints that failed.", prometheus.CounterValue},
		{"webkv_live_workers", "Workers currently members of the job.", prometheus.GaugeValue},
		{"webkv_job_connections", "Open connections of the job.", prometheus.GaugeValue},
		{"webkv_job_budget_bytes", "Bytes of the job's budget in use (values, merge buffers, optimizer states, waiting inits).", prometheus.GaugeValue},
		{"webkv_checkpoint_seconds", "Duration of the last checkpoint.", prometheus.GaugeValue},
		{"webkv_keys", "Keys of the job.", prometheus.GaugeValue},
		{"webkv_job_run", "The job's run: runs start when a worker joins a job without workers (an earlier run's keys need the resume option).", prometheus.GaugeValue},
		{"webkv_updates_total", "Updates applied (closed rounds, async pushes).", prometheus.CounterValue},
		{"webkv_late_pushes_total", "Pushes that arrived after their round closed (not applied).", prometheus.CounterValue},
		{"webkv_rescaled_rounds_total", "Rounds closed at their deadline without every worker (sum rescaled).", prometheus.CounterValue},
		{"webkv_duplicate_requests_total", "Retried requests answered from the cache, not applied again.", prometheus.CounterValue},
		{"webkv_removed_workers_total", "Workers removed after a silence timeout or a leave.", prometheus.CounterValue},
		{"webkv_non_finite_pushes_total", "Pushes refused for holding NaN or Inf (never aggregated).", prometheus.CounterValue},
	}
)

func newRelayCollector(s *Server, full bool) *relayCollector {
	c := &relayCollector{s: s, full: full, relay: map[string]desc{}, job: map[string]desc{}}
	for _, r := range relaySeries {
		c.relay[r.name] = desc{prometheus.NewDesc(r.name, r.help, nil, nil), r.typ}
	}
	for _, r := range jobSeries {
		c.job[r.name] = desc{prometheus.NewDesc(r.name, r.help, []string{"job"}, nil), r.typ}
	}
	c.roundsD = prometheus.NewDesc("webkv_round_seconds", "Time from a round's first push to its close; one observation per round of webkv_rounds_total.", []string{"job"}, nil)
	return c
}

// Describe sends every descriptor (the same whatever the jobs).
func (c *relayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.relay {
		ch <- d.d
	}
	if c.full {
		for _, d := range c.job {
			ch <- d.d
		}
		ch <- c.roundsD
	}
}

func (c *relayCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	authed, pre := s.connCounts()
	s.mu.Lock()
	njobs, quar := len(s.jobs), len(s.quarantine)
	jobs := make([]*job, 0, len(s.jobs))
	if c.full {
		for _, j := range s.jobs {
			jobs = append(jobs, j)
		}
	}
	s.mu.Unlock()
	put := func(d desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d.d, d.typ, v, lv...)
	}
	for name, v := range map[string]float64{
		"webkv_relay_uptime_seconds":           time.Since(s.started).Seconds(),
		"webkv_relay_connections":              float64(authed + pre),
		"webkv_relay_preauth_connections":      float64(pre),
		"webkv_relay_jobs":                     float64(njobs),
		"webkv_relay_quarantined_jobs":         float64(quar),
		"webkv_relay_budget_bytes":             float64(s.budget.Used()),
		"webkv_relay_budget_max_bytes":         float64(s.budget.Max()),
		"webkv_relay_refused_full_total":       float64(s.rm.refusedFull.Load()),
		"webkv_relay_refused_preauth_total":    float64(s.rm.refusedPreAuth.Load()),
		"webkv_relay_refused_auth_total":       float64(s.rm.refusedAuth.Load()),
		"webkv_relay_refused_origin_total":     float64(s.rm.refusedOrigin.Load()),
		"webkv_relay_handshake_failures_total": float64(s.rm.noHello.Load()),
		"webkv_relay_expired_jobs_total":       float64(s.rm.expired.Load()),
	} {
		put(c.relay[name], v)
	}
	for _, j := range jobs {
		m, st := j.m, j.status()
		count, sum, cum := m.roundStats()
		ch <- prometheus.MustNewConstHistogram(c.roundsD, count, sum, cum, j.name)
		j.mu.Lock()
		run := j.runNo
		j.mu.Unlock()
		for name, v := range map[string]float64{
			"webkv_rounds_total":             float64(count),
			"webkv_pushes_total":             float64(m.pushes.Load()),
			"webkv_pulls_total":              float64(m.pulls.Load()),
			"webkv_messages_in_total":        float64(m.msgsIn.Load()),
			"webkv_messages_out_total":       float64(m.msgsOut.Load()),
			"webkv_bytes_in_total":           float64(m.bytesIn.Load()),
			"webkv_bytes_out_total":          float64(m.bytesOut.Load()),
			"webkv_peer_errors_total":        float64(m.errors.Load()),
			"webkv_slow_peers_total":         float64(m.dropped.Load()),
			"webkv_flow_stalls_total":        float64(m.stalls.Load()),
			"webkv_checkpoints_total":        float64(m.checkpoints.Load()),
			"webkv_checkpoint_errors_total":  float64(m.ckptErrors.Load()),
			"webkv_live_workers":             float64(m.liveWorkers.Load()),
			"webkv_job_connections":          float64(m.conns.Load()),
			"webkv_job_budget_bytes":         float64(m.budget.Load()),
			"webkv_checkpoint_seconds":       time.Duration(m.ckptNanos.Load()).Seconds(),
			"webkv_keys":                     float64(st.Keys),
			"webkv_job_run":                  float64(run),
			"webkv_updates_total":            float64(st.Updates),
			"webkv_late_pushes_total":        float64(st.LatePushes),
			"webkv_rescaled_rounds_total":    float64(st.Rescaled),
			"webkv_duplicate_requests_total": float64(st.Duplicates),
			"webkv_removed_workers_total":    float64(st.Removed),
			"webkv_non_finite_pushes_total":  float64(st.NonFinite),
		} {
			put(c.job[name], v, j.name)
		}
	}
}
