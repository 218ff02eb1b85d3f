//go:build !js && !wasip1

package tests

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// demoPeers is the demo's /api/peers: the job as the relay sees it and
// every peer's report with its history (rounds in the job's rounds).
type demoPeers struct {
	Job struct {
		Job         string `json:"job"`
		Round       int    `json:"round"`
		Rounds      int    `json:"rounds"`
		LiveWorkers int    `json:"live_workers"`
	} `json:"job"`
	Peers []struct {
		ID      string `json:"id"`
		Kind    string `json:"kind"`
		State   string `json:"state"`
		Round   int    `json:"round"`
		Bytes   int64  `json:"bytes"`
		History []struct {
			Round int `json:"round"`
		} `json:"history"`
	} `json:"peers"`
}

// TestE2EDemoWatchAndJobRounds runs `webkv demo` with one native worker
// (on the CPU, a long job) and opens its pages in headless Chromium.
//
// The watch URL the demo prints (?watch) is read-only: the tab shows the
// job (its round advancing on the job card) without joining it: the relay
// keeps 1 live worker, the board gets no browser peer, the page loads no
// webkv runtime, and it has no "this tab" cards, only a link to join.
//
// A tab that joins the running job through the join URL (?cpu&rounds=5:
// five rounds on the JavaScript CPU engine) is plotted on the job's
// rounds: every point of its history is at or after the job's round when
// it joined, not at its own rounds 1..5, and the watching tab's chart
// draws it there.
func TestE2EDemoWatchAndJobRounds(t *testing.T) {
	integration(t)
	js := brBuild(t)
	demo, joinURL := startDemo(t, "-workers", "1", "-listen", "127.0.0.1:0", "-js", js, "-cpu",
		"-steps", "1000000", "-eval-every", "0", "-linger=false")
	watchURL := demo.watchURL()
	if watchURL != joinURL+"?watch" {
		t.Fatalf("watch URL %q, join URL %q: want the join URL with ?watch", watchURL, joinURL)
	}
	peers := func() (demoPeers, error) {
		var p demoPeers
		err := getJSON(joinURL+"api/peers", &p)
		return p, err
	}

	// 1. Watching.
	watch := brBrowser(t)
	if err := brNavigate(watch, watchURL); err != nil {
		t.Fatal(err)
	}
	var first, later struct {
		Job *struct {
			Round       int `json:"round"`
			LiveWorkers int `json:"live_workers"`
		} `json:"job"`
		Refreshes int `json:"refreshes"`
	}
	readDash := func(out any) error {
		s, err := chromedp.Run(watch, chromedp.Evaluate[string](`JSON.stringify(window.__dashboard || {})`))
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(s), out)
	}
	waitFor(t, time.Minute, 200*time.Millisecond, "the watching tab showing the job", func() (bool, error) {
		if err := readDash(&first); err != nil {
			return false, err
		}
		return first.Job != nil && first.Job.Round > 0, fmt.Errorf("dashboard %+v", first)
	})
	waitFor(t, time.Minute, 200*time.Millisecond, "the watched job advancing", func() (bool, error) {
		if err := readDash(&later); err != nil {
			return false, err
		}
		return later.Job != nil && later.Job.Round > first.Job.Round, fmt.Errorf("job round %d, first seen %d", later.Job.Round, first.Job.Round)
	})
	card, err := chromedp.Run(watch, chromedp.Evaluate[string](`document.getElementById('j-round').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(card, " / 1000000") {
		t.Errorf("job round card %q, want \"<round> / 1000000\"", card)
	}
	state, err := chromedp.Run(watch, chromedp.Evaluate[string](`JSON.stringify({state: window.__demo.state, me: document.getElementById('me').hidden,
		join: !document.getElementById('join').hidden, runtime: performance.getEntriesByType('resource').filter((e) => e.name.includes('/webkv/')).map((e) => e.name)})`))
	if err != nil {
		t.Fatal(err)
	}
	var ws struct {
		State   string   `json:"state"`
		Me      bool     `json:"me"`
		Join    bool     `json:"join"`
		Runtime []string `json:"runtime"`
	}
	if err := json.Unmarshal([]byte(state), &ws); err != nil {
		t.Fatal(err)
	}
	if ws.State != "watching" || !ws.Me || !ws.Join || len(ws.Runtime) != 0 {
		t.Errorf("watching tab: %+v, want state watching, its own cards hidden, the join link shown, no webkv runtime loaded", ws)
	}
	p, err := peers()
	if err != nil {
		t.Fatal(err)
	}
	if p.Job.LiveWorkers != 1 || len(p.Peers) != 1 || p.Peers[0].Kind != "native" {
		t.Fatalf("while a tab watches: job %+v, %d peers %+v; want 1 live worker, the native one", p.Job, len(p.Peers), p.Peers)
	}

	// 2. A tab joins the running job.
	joinedAt := p.Job.Round
	tab, closeTab := chromedp.NewContext(watch)
	defer closeTab()
	if err := brNavigate(tab, joinURL+"?cpu&rounds=5"); err != nil {
		t.Fatal(err)
	}
	d := waitDemo(t, tab, "joining tab", 3*time.Minute, "5 rounds done", func(d demoTab) bool { return d.State == "done" })
	if d.Round != 5 || d.Rank < 1 {
		t.Fatalf("joining tab: %+v, want 5 rounds as a rank >= 1", d)
	}
	var tabRounds []int
	var tabID string
	var tabBytes int64
	waitFor(t, 30*time.Second, 200*time.Millisecond, "the board's history of the tab", func() (bool, error) {
		p, err := peers()
		if err != nil {
			return false, err
		}
		for _, pe := range p.Peers {
			if pe.Kind == "browser" && pe.State == "done" {
				tabID, tabRounds, tabBytes = pe.ID, nil, pe.Bytes
				for _, h := range pe.History {
					tabRounds = append(tabRounds, h.Round)
				}
				return len(tabRounds) > 0, fmt.Errorf("tab %s: no history", pe.ID)
			}
		}
		return false, fmt.Errorf("no browser peer done: %+v", p.Peers)
	})
	t.Logf("tab %s joined at the job's round %d; its history is at rounds %v; it reports %d websocket bytes", tabID, joinedAt, tabRounds, tabBytes)
	if tabBytes < 5*4*784 { // 5 rounds of more than a 784-float layer, pushed and pulled
		t.Errorf("the tab reports %d bytes of traffic after 5 rounds", tabBytes)
	}
	if slices.Min(tabRounds) <= joinedAt {
		t.Errorf("the tab's history starts at round %d, not after the job's round %d when it joined: rounds %v (its own rounds, not the job's?)",
			slices.Min(tabRounds), joinedAt, tabRounds)
	}
	// The watching tab's chart draws it there.
	var dash struct {
		Series [][]int `json:"series"`
	}
	waitFor(t, 30*time.Second, 200*time.Millisecond, "the chart drawing the tab", func() (bool, error) {
		if err := readDash(&dash); err != nil {
			return false, err
		}
		if len(dash.Series) < 2 {
			return false, fmt.Errorf("%d series", len(dash.Series))
		}
		for _, s := range dash.Series {
			if len(s) > 0 && slices.Equal(s, tabRounds) {
				return true, nil
			}
		}
		return false, fmt.Errorf("no series at the tab's rounds %v: %v", tabRounds, dash.Series)
	})
}
