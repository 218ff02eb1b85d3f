//go:build !js && !wasip1

package relay

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// jobMetrics are the counters of one job. They are updated with atomics by
// the job goroutine and the connection goroutines and read by /metrics and
// /status without taking the job's lock.
type jobMetrics struct {
	rounds      atomic.Uint64
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

	// Round latency: time from a round's first push to its close.
	roundNanos atomic.Uint64
	roundCount atomic.Uint64
	// latency histogram buckets (cumulative counts are computed when
	// printing); bounds in seconds.
	buckets [len(latencyBounds) + 1]atomic.Uint64

	ckptNanos atomic.Uint64 // duration of the last checkpoint
}

var latencyBounds = [...]float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60}

func (m *jobMetrics) observeRound(d time.Duration) {
	m.roundNanos.Add(uint64(d))
	m.roundCount.Add(1)
	s := d.Seconds()
	i := sort.SearchFloat64s(latencyBounds[:], s)
	m.buckets[i].Add(1)
}

// writeMetrics prints the Prometheus text exposition format (version 0.0.4)
// for all jobs, sorted by job name so the output is stable.
func writeMetrics(w io.Writer, jobs map[string]*jobMetrics) {
	names := make([]string, 0, len(jobs))
	for n := range jobs {
		names = append(names, n)
	}
	sort.Strings(names)
	lbl := func(job string) string { return `{job="` + escapeLabel(job) + `"}` }

	type series struct {
		name, help, typ string
		get             func(*jobMetrics) string
	}
	u := func(f func(*jobMetrics) *atomic.Uint64) func(*jobMetrics) string {
		return func(m *jobMetrics) string { return strconv.FormatUint(f(m).Load(), 10) }
	}
	i := func(f func(*jobMetrics) *atomic.Int64) func(*jobMetrics) string {
		return func(m *jobMetrics) string { return strconv.FormatInt(f(m).Load(), 10) }
	}
	all := []series{
		{"webkv_rounds_total", "Closed dist_sync rounds (summed over keys).", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.rounds })},
		{"webkv_pushes_total", "Push requests received.", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.pushes })},
		{"webkv_pulls_total", "Pull requests received.", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.pulls })},
		{"webkv_messages_in_total", "Messages received from peers.", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.msgsIn })},
		{"webkv_messages_out_total", "Messages sent to peers.", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.msgsOut })},
		{"webkv_bytes_in_total", "Message bytes received from peers.", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.bytesIn })},
		{"webkv_bytes_out_total", "Message bytes sent to peers.", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.bytesOut })},
		{"webkv_peer_errors_total", "Connections closed because of a protocol error.", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.errors })},
		{"webkv_slow_peers_total", "Connections closed because a write made no progress for the write timeout (the peer stopped reading).", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.dropped })},
		{"webkv_flow_stalls_total", "Times a connection's requests were held back until its answers drained below the send buffer (flow control, not an error).", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.stalls })},
		{"webkv_checkpoints_total", "Checkpoints written.", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.checkpoints })},
		{"webkv_checkpoint_errors_total", "Checkpoints that failed.", "counter", u(func(m *jobMetrics) *atomic.Uint64 { return &m.ckptErrors })},
		{"webkv_live_workers", "Workers currently members of the job.", "gauge", i(func(m *jobMetrics) *atomic.Int64 { return &m.liveWorkers })},
		{"webkv_job_connections", "Open connections of the job.", "gauge", i(func(m *jobMetrics) *atomic.Int64 { return &m.conns })},
		{"webkv_job_budget_bytes", "Bytes of the job's budget in use (values, merge buffers, optimizer states, waiting inits).", "gauge", i(func(m *jobMetrics) *atomic.Int64 { return &m.budget })},
		{"webkv_checkpoint_seconds", "Duration of the last checkpoint.", "gauge", func(m *jobMetrics) string {
			return strconv.FormatFloat(time.Duration(m.ckptNanos.Load()).Seconds(), 'g', -1, 64)
		}},
	}
	for _, s := range all {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", s.name, s.help, s.name, s.typ)
		for _, n := range names {
			fmt.Fprintf(w, "%s%s %s\n", s.name, lbl(n), s.get(jobs[n]))
		}
	}
	fmt.Fprintf(w, "# HELP webkv_round_seconds Time from a round's first push to its close.\n# TYPE webkv_round_seconds histogram\n")
	for _, n := range names {
		m := jobs[n]
		var cum uint64
		j := `job="` + escapeLabel(n) + `"`
		for k, b := range latencyBounds {
			cum += m.buckets[k].Load()
			fmt.Fprintf(w, "webkv_round_seconds_bucket{%s,le=\"%g\"} %d\n", j, b, cum)
		}
		cum += m.buckets[len(latencyBounds)].Load()
		fmt.Fprintf(w, "webkv_round_seconds_bucket{%s,le=\"+Inf\"} %d\n", j, cum)
		fmt.Fprintf(w, "webkv_round_seconds_sum{%s} %g\n", j, time.Duration(m.roundNanos.Load()).Seconds())
		fmt.Fprintf(w, "webkv_round_seconds_count{%s} %d\n", j, m.roundCount.Load())
	}
}

// escapeLabel escapes a label value per the text format (\\, \", \n).
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// writeStateMetrics prints the counters the state machine keeps (psm.Stats).
func writeStateMetrics(w io.Writer, jobs map[string]JobStatus) {
	names := make([]string, 0, len(jobs))
	for n := range jobs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, s := range []struct {
		name, help, typ string
		get             func(JobStatus) uint64
	}{
		{"webkv_keys", "Keys of the job.", "gauge", func(j JobStatus) uint64 { return uint64(j.Keys) }},
		{"webkv_updates_total", "Updates applied (closed rounds, async pushes).", "counter", func(j JobStatus) uint64 { return j.Updates }},
		{"webkv_late_pushes_total", "Pushes that arrived after their round closed (not applied).", "counter", func(j JobStatus) uint64 { return j.LatePushes }},
		{"webkv_rescaled_rounds_total", "Rounds closed at their deadline without every worker (sum rescaled).", "counter", func(j JobStatus) uint64 { return j.Rescaled }},
		{"webkv_duplicate_requests_total", "Retried requests answered from the cache, not applied again.", "counter", func(j JobStatus) uint64 { return j.Duplicates }},
		{"webkv_removed_workers_total", "Workers removed after a silence timeout or a leave.", "counter", func(j JobStatus) uint64 { return j.Removed }},
		{"webkv_non_finite_pushes_total", "Pushes refused for holding NaN or Inf (never aggregated).", "counter", func(j JobStatus) uint64 { return j.NonFinite }},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", s.name, s.help, s.name, s.typ)
		for _, n := range names {
			fmt.Fprintf(w, "%s{job=\"%s\"} %d\n", s.name, escapeLabel(n), s.get(jobs[n]))
		}
	}
}
