package www

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Report is one peer's progress, posted to /api/report by tabs and native
// workers (or given to Board.Report in-process).
type Report struct {
	ID       string  `json:"id"`                // stable per peer, chosen by the peer
	Kind     string  `json:"kind"`              // "browser" or "native"
	Backend  string  `json:"backend"`           // e.g. "webgpu: llvmpipe" or "cpu (no WebGPU adapter)"
	Rank     int     `json:"rank"`              // rank in the job, -1 before joining
	Workers  int     `json:"workers"`           // workers in the job as the peer sees it
	State    string  `json:"state"`             // joining, loading, training, done, error, left
	Round    int     `json:"round"`             // rounds completed by this peer
	Samples  int64   `json:"samples"`           // training samples this peer processed
	Loss     float64 `json:"loss"`              // recent training loss
	TestAcc  float64 `json:"test_acc"`          // last test accuracy (0 before the first evaluation)
	TestLoss float64 `json:"test_loss"`         // last test loss
	Rate     float64 `json:"samples_per_sec"`   // recent throughput
	Message  string  `json:"message,omitempty"` // error or note
	// Phases is the mean cost of one round's parts in milliseconds, e.g.
	// pull (weights from the relay), upload (weights to the GPU), compute,
	// readback (gradients from the GPU; "grad" when compute and readback
	// are timed together), push: where a round's time goes.
	Phases map[string]float64 `json:"phases_ms,omitempty"`
	Token  string             `json:"token,omitempty"` // the job token, when the board requires it
	// Mode is the peer's training mode (e.g. "local steps 30 (inner SGD
	// lr 0.1 momentum 0.9, outer Nesterov lr 0.6 momentum 0.5),
	// trimmed-mean"); Bytes what it sent and received on its websocket
	// connections so far (0 where it cannot count).
	Mode  string `json:"mode,omitempty"`
	Bytes int64  `json:"bytes,omitempty"`

	Seen time.Time `json:"seen"` // set by the board

	// JobRound is the job's round as this peer last saw it (the rounds
	// of the job's first key the relay closed; a tab reads it from its
	// round events): a peer that joined a running job has done fewer
	// rounds than the job. 0: not known; the board then takes the job's
	// round from BoardOptions.Job at the report, else Round.
	JobRound int `json:"job_round,omitempty"`
}

// Point is one entry of a peer's history.
type Point struct {
	Round   int     `json:"round"` // the job's round (Report.JobRound), so that every peer's curve shares one axis
	T       float64 `json:"t"`     // seconds since the board started
	Loss    float64 `json:"loss"`
	TestAcc float64 `json:"test_acc,omitempty"`
}

type peer struct {
	last Report
	hist []Point
}

// Board keeps the latest report and a bounded history of every peer, for
// the dashboard. It is an http.Handler for /api/report, /api/leave and
// /api/peers, and safe for concurrent use.
type Board struct {
	mu    sync.Mutex
	start time.Time
	peers map[string]*peer
	token string
	job   func() JobState
}

// JobState is the job as its relay sees it, for the dashboard: /api/peers
// serves it as "job" when BoardOptions.Job is set.
type JobState struct {
	Job         string `json:"job"`
	Round       int    `json:"round"`  // rounds the job closed (of its first key; every key closes once a round)
	Rounds      int    `json:"rounds"` // rounds it trains (0: open-ended)
	LiveWorkers int    `json:"live_workers"`
	Mode        string `json:"mode,omitempty"` // the job's mode as the relay reports it (e.g. sync)
	BytesIn     uint64 `json:"bytes_in"`       // bytes the relay received for the job
	BytesOut    uint64 `json:"bytes_out"`      // bytes the relay sent for the job
	Done        bool   `json:"done"`           // the demo's native workers finished
}

// BoardOptions configure NewBoard.
type BoardOptions struct {
	// Job, when set, returns the job's state. The board stamps reports
	// that carry no JobRound with its Round, and /api/peers serves it,
	// so that a page that only watches shows the job. It is called for
	// each report and each /api/peers request: keep it cheap.
	Job func() JobState
}

// Stale is how long a peer may stay silent before the dashboard shows it
// as gone: a tab that was killed without its unload beacon drops out of
// the table instead of looking stuck. A peer loading its data or
// evaluating gets four times as long.
const Stale = 15 * time.Second

const maxHistory = 2000

// maxPeers bounds the board: reports come from anyone who can reach the page.
const maxPeers = 1024

// ErrBadReport is wrapped by Board.Report's errors about the report itself.
var ErrBadReport = errors.New("bad report")

// NewBoard returns an empty board; o may be nil.
func NewBoard(o *BoardOptions) *Board {
	b := &Board{start: time.Now(), peers: map[string]*peer{}}
	if o != nil {
		b.job = o.Job
	}
	return b
}

// Report records r (r.ID required).
func (b *Board) Report(r Report) error {
	if r.ID == "" || len(r.ID) > 64 {
		return fmt.Errorf("www: %w: id %q: want 1..64 characters", ErrBadReport, r.ID)
	}
	r.Token = ""
	r.Seen = time.Now()
	if r.JobRound <= 0 && b.job != nil && r.Round > 0 {
		r.JobRound = b.job().Round
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peers[r.ID]
	if p == nil {
		if len(b.peers) >= maxPeers {
			return fmt.Errorf("www: report: board full (%d peers)", maxPeers)
		}
		p = &peer{}
		b.peers[r.ID] = p
	}
	x := r.Round // the chart's axis: the job's round where known
	if r.JobRound > 0 {
		x = r.JobRound
	}
	evaluated := r.TestAcc != p.last.TestAcc
	newRound := len(p.hist) == 0 || x != p.hist[len(p.hist)-1].Round || evaluated
	p.last = r
	if newRound && r.Round > 0 {
		pt := Point{Round: x, T: time.Since(b.start).Seconds(), Loss: r.Loss}
		if evaluated {
			pt.TestAcc = r.TestAcc // only at evaluations, so the chart joins real measurements
		}
		p.hist = append(p.hist, pt)
		if len(p.hist) > maxHistory {
			p.hist = thin(p.hist)
		}
	}
	return nil
}

// thin halves a full history and keeps its whole span, so that the chart
// still starts at the first round: every evaluation, the first and last
// points, and every other point between them.
func thin(h []Point) []Point {
	out := h[:1]
	for i := 1; i < len(h)-1; i++ {
		if h[i].TestAcc != 0 || i%2 == 0 {
			out = append(out, h[i])
		}
	}
	return append(out, h[len(h)-1])
}

// Leave marks peer id as gone.
func (b *Board) Leave(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.peers[id]; p != nil {
		p.last.State = "left"
		p.last.Seen = time.Now()
	}
}

// PeerStatus is one peer in /api/peers.
type PeerStatus struct {
	Report
	Gone    bool    `json:"gone"` // silent for longer than Stale, or left
	History []Point `json:"history"`
}

// Peers returns every peer, sorted by kind then id.
func (b *Board) Peers() []PeerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]PeerStatus, 0, len(b.peers))
	for _, p := range b.peers {
		stale := Stale
		if p.last.State == "loading" || p.last.State == "evaluating" {
			stale = 4 * Stale // long phases without reports (a loaded machine took 17 s to load the data)
		}
		gone := p.last.State == "left" || (p.last.State != "done" && time.Since(p.last.Seen) > stale)
		out = append(out, PeerStatus{Report: p.last, Gone: gone, History: append([]Point(nil), p.hist...)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind > out[j].Kind // native first
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func (b *Board) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/api/peers" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		// An error here is the client gone mid-answer: nothing to tell it.
		doc := map[string]any{"uptime": time.Since(b.start).Seconds(), "peers": b.Peers()}
		if b.job != nil {
			doc["job"] = b.job()
		}
		_ = json.NewEncoder(w).Encode(doc)
	case (r.URL.Path == "/api/report" || r.URL.Path == "/api/leave") && r.Method == http.MethodPost:
		var rep Report
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err == nil {
			err = json.Unmarshal(body, &rep)
		}
		if err != nil {
			http.Error(w, "bad report: "+err.Error(), http.StatusBadRequest)
			return
		}
		if b.token != "" && rep.Token != b.token {
			http.Error(w, "report: wrong or missing job token", http.StatusForbidden)
			return
		}
		if r.URL.Path == "/api/leave" {
			b.Leave(rep.ID)
		} else if err := b.Report(rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "not found: want GET /api/peers, POST /api/report or POST /api/leave", http.StatusNotFound)
	}
}
