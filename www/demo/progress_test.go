//go:build !js && !wasip1

package demo

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/www"
)

// syncBuffer is a strings.Builder safe for mpb's render goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func peer(id, state string, round int, acc float64) www.PeerStatus {
	return www.PeerStatus{Report: www.Report{ID: id, Kind: "native", Backend: "cpu", Rank: 0, State: state, Round: round, Loss: 0.5, TestAcc: acc}}
}

// TestBarsRedrawInPlace: on a terminal the job's bar and one per peer are
// redrawn in place (the cursor goes back up over the previous frame, no
// frame is appended below the last), and the last frame shows the final
// state, a worker that is still evaluating at its last round included.
func TestBarsRedrawInPlace(t *testing.T) {
	var out syncBuffer
	refresh := make(chan any)
	b := newBars(&out, time.Now(), refresh)
	job := www.JobState{Job: "mnist", Rounds: 100, LiveWorkers: 2}
	for _, r := range []int{10, 50, 100} {
		job.Round = r
		st := "training"
		if r == 100 {
			st = "evaluating" // at its last round, not done yet: the bar must not freeze here
		}
		b.draw(job, []www.PeerStatus{peer("native-0", st, r, 0.9), peer("native-1", st, r, 0.9)})
		refresh <- struct{}{}
	}
	b.finish(job, []www.PeerStatus{peer("native-0", "done", 100, 0.977), peer("native-1", "done", 100, 0.977)})
	s := out.String()
	ups := strings.Count(s, "\x1b[3A") // back over the job's line and two peers'
	if ups < 2 {
		t.Fatalf("%d redraws in place (cursor up 3 lines), want >= 2; output:\n%q", ups, s)
	}
	last := s[strings.LastIndex(s, "\x1b[3A"):]
	lines := strings.Split(strings.TrimSpace(last), "\n")
	if len(lines) != 3 {
		t.Fatalf("last frame: %d lines, want 3 (job + 2 peers):\n%s", len(lines), last)
	}
	for i, want := range []string{"job mnist", "native-0", "native-1"} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "100/100") {
			t.Errorf("last frame line %d = %q, want %q at 100/100", i, lines[i], want)
		}
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, "done") || !strings.Contains(l, "97.7%") {
			t.Errorf("last frame: %q, want the final state (done, 97.7%%)", l)
		}
	}
}

// TestLinesWhenNotATerminal: without a terminal the progress is plain
// lines, one per event (a peer joining or changing state, the job passing
// a tenth of its rounds), never a frame printed again, no escape codes.
func TestLinesWhenNotATerminal(t *testing.T) {
	var out strings.Builder
	l := newProgress(&out, false, time.Now())
	job := www.JobState{Job: "mnist", Rounds: 100, LiveWorkers: 1}
	for r := 0; r <= 100; r += 5 {
		job.Round = r
		st := "training"
		if r == 0 {
			st = "loading"
		}
		// Drawn twice per state, as the ticker does when nothing moved.
		l.draw(job, []www.PeerStatus{peer("native-0", st, r, 0)})
		l.draw(job, []www.PeerStatus{peer("native-0", st, r, 0)})
	}
	l.finish(job, []www.PeerStatus{peer("native-0", "done", 100, 0.977)})
	s := out.String()
	if strings.Contains(s, "\x1b") || strings.Contains(s, "\r") {
		t.Fatalf("escape codes or carriage returns in plain output:\n%q", s)
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	seen := map[string]bool{}
	for _, ln := range lines {
		if seen[ln] {
			t.Errorf("line printed twice: %q", ln)
		}
		seen[ln] = true
	}
	jobLines := 0
	for _, ln := range lines {
		if strings.HasPrefix(ln, "job mnist: ") {
			jobLines++
		}
	}
	if jobLines != 10 {
		t.Errorf("%d job lines, want 10 (one per tenth of the rounds):\n%s", jobLines, s)
	}
	for _, want := range []string{"native-0 (native, rank 0, cpu): loading", "native-0 (native, rank 0): training", "native-0 (native, rank 0): done at its round 100", "round 100/100"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}
