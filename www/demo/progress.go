//go:build !js && !wasip1

package demo

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/webkv/webkv/www"
)

// progress draws the job's progress and each peer's (native workers and
// tabs, as the dashboard's board has them) while the demo trains. draw
// gets the latest state a few times a second; finish draws the last state
// and gives the output back.
type progress interface {
	draw(job www.JobState, peers []www.PeerStatus)
	finish(job www.JobState, peers []www.PeerStatus)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// newProgress returns bars that redraw in place (mpb) when tty is set,
// else plain lines (linesProgress).
func newProgress(out io.Writer, tty bool, start time.Time) progress {
	if tty {
		return newBars(out, start, nil)
	}
	return &linesProgress{out: out, start: start, states: map[string]string{}, backends: map[string]bool{}}
}

// peerState is how a peer's state reads: a silent peer is "gone".
func peerState(p www.PeerStatus) string {
	if p.Gone && p.State != "left" {
		return "gone"
	}
	return p.State
}

func accText(acc float64) string {
	if acc <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*acc)
}

// jobSummary is the job's line: round, workers, the best test accuracy a
// peer measured, the peers' throughput, traffic and time.
func jobSummary(job www.JobState, peers []www.PeerStatus, start time.Time) string {
	best, rate := 0.0, 0.0
	for _, p := range peers {
		best = max(best, p.TestAcc)
		if peerState(p) == "training" {
			rate += p.Rate
		}
	}
	total := "open-ended"
	if job.Rounds > 0 {
		total = fmt.Sprint(job.Rounds)
	}
	s := fmt.Sprintf("round %d/%s  %d workers  test acc %s  %.0f samples/s  %s in, %s out  %s",
		job.Round, total, job.LiveWorkers, accText(best), rate, bytesText(job.BytesIn), bytesText(job.BytesOut),
		time.Since(start).Round(time.Second))
	if job.Mode != "" {
		s = job.Mode + "  " + s
	}
	return s
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// peerSummary is a peer's text beside its bar or on its line.
func peerSummary(p www.PeerStatus) string {
	loss := "–"
	if p.Round > 0 {
		loss = fmt.Sprintf("%.3f", p.Loss)
	}
	return fmt.Sprintf("%-10s acc %-6s loss %-6s %6.0f samples/s  %s", peerState(p), accText(p.TestAcc), loss, p.Rate, p.Backend)
}

// linesProgress is the fallback when the output is not a terminal (a log,
// a pipe, CI): no cursor movement, one line per event: the job passing
// each tenth of its rounds, a peer joining or changing state.
type linesProgress struct {
	out      io.Writer
	start    time.Time
	tenth    int               // tenths of the rounds already reported
	states   map[string]string // the state each peer was last reported in
	backends map[string]bool   // peers whose backend was printed
}

func (l *linesProgress) draw(job www.JobState, peers []www.PeerStatus) {
	for _, p := range peers {
		st := peerState(p)
		if l.states[p.ID] == st {
			continue
		}
		l.states[p.ID] = st
		who := p.Kind
		if p.Rank >= 0 {
			who += fmt.Sprintf(", rank %d", p.Rank)
		}
		if _, seen := l.backends[p.ID]; !seen {
			l.backends[p.ID] = true
			who += ", " + p.Backend
		}
		loss := ""
		if p.Round > 0 {
			loss = fmt.Sprintf(", loss %.3f, test acc %s", p.Loss, accText(p.TestAcc))
		}
		fmt.Fprintf(l.out, "%s (%s): %s at its round %d%s\n", p.ID, who, st, p.Round, loss)
	}
	if job.Rounds > 0 {
		if t := min(10*job.Round/job.Rounds, 10); t > l.tenth {
			l.tenth = t
			fmt.Fprintf(l.out, "job %s: %s\n", job.Job, jobSummary(job, peers, l.start))
		}
	}
}

func (l *linesProgress) finish(job www.JobState, peers []www.PeerStatus) {
	l.draw(job, peers)
	if job.Rounds == 0 || l.tenth < 10 {
		fmt.Fprintf(l.out, "job %s: %s\n", job.Job, jobSummary(job, peers, l.start))
	}
}

// bars are mpb progress bars, redrawn in place: the job's first, then one
// per peer in the board's order.
type bars struct {
	p     *mpb.Progress
	start time.Time
	job   *mpb.Bar
	peers map[string]*peerBar

	mu      sync.Mutex // guards the texts the decorators read on mpb's goroutine
	jobText string
}

type peerBar struct {
	bar   *mpb.Bar
	total int
	text  string // under bars.mu
	done  bool
}

const barWidth = 24

// newBars draws on out as on a terminal; refresh, if not nil, triggers
// each redraw (tests) instead of a timer.
func newBars(out io.Writer, start time.Time, refresh <-chan any) *bars {
	opts := []mpb.ContainerOption{mpb.WithOutput(out), mpb.ForceTTY()}
	if refresh != nil {
		opts = append(opts, mpb.WithManualRefresh(refresh))
	} else {
		opts = append(opts, mpb.WithRefreshRate(200*time.Millisecond))
	}
	return &bars{
		p:     mpb.New(opts...),
		start: start,
		peers: map[string]*peerBar{},
	}
}

func (b *bars) style() mpb.BarStyleComposer {
	return mpb.BarStyle().Lbound(" ").Rbound(" ").Filler("█").Tip("█").Padding("░")
}

// text returns a decorator showing *s (read under b.mu).
func (b *bars) text(s *string) decor.Decorator {
	return decor.Any(func(decor.Statistics) string {
		b.mu.Lock()
		defer b.mu.Unlock()
		return *s
	})
}

func name(s string) decor.Decorator {
	return decor.Any(func(decor.Statistics) string { return trunc(s, 14) }, decor.WC{W: 14, C: decor.DindentRight})
}

func counter() decor.Decorator {
	return decor.Any(func(s decor.Statistics) string { return fmt.Sprintf("%d/%d", s.Current, s.Total) }, decor.WC{W: 11, C: decor.DindentRight})
}

func (b *bars) draw(job www.JobState, peers []www.PeerStatus) {
	b.mu.Lock()
	b.jobText = jobSummary(job, peers, b.start)
	b.mu.Unlock()
	// Bars are made with total 0, which keeps mpb from completing (and
	// freezing) them when they reach their total: a worker at its last
	// round still evaluates. finish completes them.
	if b.job == nil {
		b.job = b.p.New(0, b.style(), mpb.BarPriority(0), mpb.BarWidth(barWidth),
			mpb.PrependDecorators(name("job "+job.Job)), mpb.AppendDecorators(counter(), b.text(&b.jobText)))
	}
	b.job.SetTotal(int64(max(job.Rounds, job.Round, 1)), false)
	b.job.SetCurrent(int64(job.Round))
	for i, p := range peers {
		pb := b.peers[p.ID]
		total := max(job.Rounds, p.Round, 1)
		if pb == nil {
			pb = &peerBar{total: total}
			pb.bar = b.p.New(0, b.style(), mpb.BarPriority(i+1), mpb.BarWidth(barWidth),
				mpb.PrependDecorators(name(p.ID)), mpb.AppendDecorators(counter(), b.text(&pb.text)))
			pb.bar.SetTotal(int64(total), false)
			b.peers[p.ID] = pb
		}
		b.mu.Lock()
		pb.text = peerSummary(p)
		b.mu.Unlock()
		if pb.done {
			continue
		}
		if total > pb.total { // a tab that trains on past the job's rounds
			pb.total = total
			pb.bar.SetTotal(int64(total), false)
		}
		pb.bar.SetCurrent(int64(p.Round))
		if st := peerState(p); st == "done" || st == "left" || st == "gone" || st == "error" {
			// Completed where it stopped, so that Wait does not wait for it.
			pb.bar.SetTotal(-1, true)
			pb.done = true
		}
	}
}

// finish draws the last state, completes every bar where it stands and
// waits for mpb's last refresh.
func (b *bars) finish(job www.JobState, peers []www.PeerStatus) {
	b.draw(job, peers)
	b.job.SetTotal(-1, true)
	for _, pb := range b.peers {
		if !pb.done {
			pb.bar.SetTotal(-1, true)
			pb.done = true
		}
	}
	b.p.Wait()
}

func trunc(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
