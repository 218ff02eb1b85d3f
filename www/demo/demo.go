//go:build !js && !wasip1

package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webkv/webkv/relay"
	"github.com/webkv/webkv/www"
	"github.com/webkv/webkv/www/mnist"
	"github.com/webkv/webkv/www/worker"
)

// The demo relay's heartbeat interval and silence timeout (see runDemo).
const demoHeartbeat, demoTimeout = time.Second, 5 * time.Second

// Config is one run of the demo.
type Config struct {
	Workers int
	Tabs    int // browser tabs the job waits for before it starts
	Listen  string
	JSDir   string // webkv JS runtime (wasm/js/build.sh output); "" or missing: tabs train alone
	// Linger is how long the page stays up after the workers finished: 0
	// returns at once, < 0 until ctx is done (the command's Ctrl-C).
	Linger time.Duration
	Token  string        // the job's token; "": a random one
	Train  worker.Config // the shared training settings (Engine, Report, Log and ID are set per worker)
	// Engines are the native workers' engines, one per worker (the
	// command opens them on one device; see mnist/gpu's Options.Lock);
	// nil: each worker computes on the CPU reference. Backend describes
	// them. The caller closes them after Run.
	Engines []mnist.Engine
	Backend string
	// Out receives the header, the progress and the result; nil: discarded.
	// On a terminal the progress is bars redrawn in place, elsewhere (a
	// pipe, a log) one line per event.
	Out io.Writer
	// Byzantine native workers (the last ones) push ByzantineMode updates
	// (worker.ByzantineFlip, ...) instead of their real ones.
	Byzantine     int
	ByzantineMode string

	tty int // tests: 1 draws bars as on a terminal, -1 lines; 0: as Out is
}

// Result is what the demo reached.
type Result struct {
	URL      string // the page: a tab that opens it joins the job
	WatchURL string // the dashboard alone (?watch): it does not join
	Results  []worker.Result
}

// Run starts a relay with the web app mounted, runs cfg.Workers native
// workers in this process against it (each its own relay connection, its
// own shard, its own engine), draws their progress and returns once they
// all finished (and Linger passed). Tabs opened on the URL join the same
// job while it runs; tabs on the watch URL only show it.
func Run(ctx context.Context, cfg Config) (Result, error) {
	var res Result
	start := time.Now()
	if cfg.Workers <= 0 {
		return res, fmt.Errorf("demo: -workers %d, want > 0", cfg.Workers)
	}
	if cfg.Engines != nil && len(cfg.Engines) != cfg.Workers {
		return res, fmt.Errorf("demo: %d engines for %d workers", len(cfg.Engines), cfg.Workers)
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Token == "" {
		var b [8]byte
		rand.Read(b[:]) // crypto/rand.Read never returns an error (Go 1.24+)
		cfg.Token = hex.EncodeToString(b[:])
	}
	tc := cfg.Train
	tc.Defaults()
	if tc.Shards < cfg.Workers {
		tc.Shards = cfg.Workers // one shard per worker at least
	}
	job := www.DefaultJob()
	job.Job, job.Token = tc.Job, cfg.Token
	job.Shards, job.IID, job.Max, job.Batch = tc.Shards, tc.IID, tc.MaxPerShard, tc.Batch
	job.LR, job.Momentum, job.Rounds, job.Seed = tc.LR, tc.Momentum, tc.Steps, tc.Seed
	job.EvalEvery, job.TestSize = tc.EvalEvery, tc.TestSize
	if job.EvalEvery <= 0 {
		job.EvalEvery = max(tc.Steps, 1) // tabs too evaluate only at the end
	}
	if cfg.Byzantine < 0 || cfg.Byzantine > cfg.Workers {
		return res, fmt.Errorf("demo: -byzantine %d of %d workers", cfg.Byzantine, cfg.Workers)
	}
	job.LocalSteps, job.Inner, job.Outer, job.OuterLR, job.OuterMomentum = tc.LocalSteps, tc.Inner, tc.Outer, tc.OuterLR, tc.OuterMomentum
	job.Aggregate, job.Compression = tc.Aggregate, tc.Compression
	if cfg.Tabs < 0 {
		return res, fmt.Errorf("demo: -tabs %d, want >= 0", cfg.Tabs)
	}
	job.StartWorkers = cfg.Workers + cfg.Tabs

	srv, err := relay.NewServer(relay.Config{
		Tokens: map[string]string{job.Job: cfg.Token},
		// A closed tab's connection ends, but the relay keeps its worker
		// for Timeout so that a worker whose network blinked can resume;
		// only a Leave frame removes it at once, and a tab being closed
		// often cannot send one in time. The demo's peers are on one
		// machine or a LAN: a short timeout (with pings to match) makes a
		// closed tab hold the others' rounds for a few seconds, not ten.
		Heartbeat: demoHeartbeat,
		Timeout:   demoTimeout,
		// The demo's relay is for this machine: its dashboard and tests
		// read /status without an admin token.
		OpenAdmin: true,
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return res, err
	}
	var runtime fs.FS
	runtimeNote := ""
	if cfg.JSDir != "" {
		if _, err := os.Stat(cfg.JSDir + "/webkv.js"); err == nil {
			runtime = os.DirFS(cfg.JSDir)
		} else {
			runtimeNote = fmt.Sprintf("          (no webkv JS runtime in %s, build it with wasm/js/build.sh: tabs will train alone)\n", cfg.JSDir)
		}
	}
	var finished atomic.Bool
	jobState := func() www.JobState {
		st := www.JobState{Job: job.Job, Rounds: tc.Steps, Done: finished.Load()}
		for _, j := range srv.Status().Jobs {
			if j.Job == job.Job {
				if j.Keys > 0 {
					st.Round = int(j.Rounds / uint64(j.Keys))
				}
				st.LiveWorkers, st.Mode = int(j.LiveWorkers), j.Mode
				st.BytesIn, st.BytesOut = j.BytesIn, j.BytesOut
			}
		}
		return st
	}
	board := www.NewBoard(&www.BoardOptions{Job: jobState})
	srv.Handle("/", www.Handler(www.Config{Job: job, ShareToken: true, Runtime: runtime, Board: board}))
	base, err := srv.Listen(cfg.Listen)
	if err != nil {
		return res, errors.Join(err, srv.Shutdown(context.Background()))
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve() }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			fmt.Fprintf(cfg.Out, "demo: relay shutdown: %v\n", serr) // the run's result stands; say why the exit was unclean
		}
	}()
	page, err := worker.HTTPBase(base)
	if err != nil {
		return res, err
	}
	res.URL, res.WatchURL = page+"/", page+"/?watch"
	backend := cfg.Backend
	if backend == "" {
		backend = "cpu"
	}
	fmt.Fprintf(cfg.Out, "webkv demo: federated MNIST, %d native workers on %s, %d rounds of %d samples each, %d %s shards, SGD lr %g momentum %g\n",
		cfg.Workers, backend, tc.Steps, tc.Batch, tc.Shards, map[bool]string{true: "IID", false: "non-IID"}[tc.IID], tc.LR, tc.Momentum)
	if mode := fedMode(&tc, cfg.Byzantine, cfg.ByzantineMode); mode != "" {
		fmt.Fprintf(cfg.Out, "mode: %s\n", mode)
	}
	fmt.Fprintln(cfg.Out)
	fmt.Fprintf(cfg.Out, "  watch:  %s   the dashboard, read-only: it neither joins nor slows the job\n", res.WatchURL)
	fmt.Fprintf(cfg.Out, "  join:   %s   a tab that opens it trains with the job (job %q)\n%s", res.URL, job.Job, runtimeNote)
	fmt.Fprintf(cfg.Out, "          webkv worker -url %s -job %s -token %s -steps %d%s   another native worker\n", page, job.Job, cfg.Token, tc.Steps, fedFlags(&tc))
	if cfg.Tabs > 0 {
		fmt.Fprintf(cfg.Out, "  the job starts once %d browser tab(s) joined: open the join URL in %d tab(s)\n", cfg.Tabs, cfg.Tabs)
	}
	fmt.Fprintln(cfg.Out)

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res.Results = make([]worker.Result, cfg.Workers)
	errs := make([]error, cfg.Workers)
	var wg sync.WaitGroup
	for i := range cfg.Workers {
		wc := tc
		wc.URL, wc.Token, wc.Workers, wc.Barrier = base, cfg.Token, job.StartWorkers, true
		wc.ID = fmt.Sprintf("native-%d", i)
		if i >= cfg.Workers-cfg.Byzantine {
			wc.Byzantine = cfg.ByzantineMode
			if wc.Byzantine == "" {
				wc.Byzantine = worker.ByzantineFlip
			}
			wc.ID = fmt.Sprintf("byzantine-%d", i)
		}
		wc.Backend = cfg.Backend
		if cfg.Engines != nil {
			wc.Engine = cfg.Engines[i]
		}
		wc.Report = func(r www.Report) {
			// The board refuses only malformed reports (an ID too long);
			// the worker's ID is ours, and progress is best effort.
			_ = board.Report(r)
		}
		wc.Log = nil
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Results[i], errs[i] = worker.Run(ctx, wc)
			if errs[i] != nil && ctx.Err() == nil {
				cancel() // one failed worker would stall the others' rounds
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tty := isTerminal(cfg.Out)
	if cfg.tty != 0 {
		tty = cfg.tty > 0
	}
	drawProgress(ctx, newProgress(cfg.Out, tty, start), board, jobState, done, serveErr, cfg.Out)
	// drawProgress also returns on an interrupt or a relay that stopped:
	// the workers then end too, and are waited for before their results
	// are read.
	cancel()
	<-done
	finished.Store(true)
	if parent.Err() != nil {
		return res, fmt.Errorf("demo: interrupted before the workers finished: %w", context.Cause(parent))
	}
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	// The result comes before the lingering, so that a user (or a test)
	// who keeps the page open sees it at once.
	printSummary(cfg.Out, res, tc.Batch*max(tc.LocalSteps, 1), time.Since(start))
	switch {
	case cfg.Linger < 0:
		fmt.Fprintf(cfg.Out, "\nthe dashboard stays up at %s (tabs can still join at %s): Ctrl-C to stop\n", res.WatchURL, res.URL)
		<-parent.Done()
	case cfg.Linger > 0:
		fmt.Fprintf(cfg.Out, "\nthe dashboard stays up at %s for %v (Ctrl-C to stop)\n", res.WatchURL, cfg.Linger)
		select {
		case <-time.After(cfg.Linger):
		case <-parent.Done():
		}
	}
	return res, nil
}

// drawProgress draws the job and its peers with pr until done, ctx ends
// or the relay stops.
func drawProgress(ctx context.Context, pr progress, board *www.Board, job func() www.JobState, done <-chan struct{}, serveErr <-chan error, out io.Writer) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			pr.finish(job(), board.Peers())
			return
		case <-ctx.Done():
			pr.finish(job(), board.Peers())
			return
		case err := <-serveErr:
			pr.finish(job(), board.Peers())
			fmt.Fprintf(out, "relay stopped: %v\n", err)
			return
		case <-tick.C:
			pr.draw(job(), board.Peers())
		}
	}
}

// printSummary prints the test accuracy the job reached (every worker of a
// dist_sync job ends with the same weights: the first one's is the job's)
// and its speed.
func printSummary(out io.Writer, res Result, batch int, elapsed time.Duration) {
	best := res.Results[0]
	var samples int64
	for _, r := range res.Results {
		samples += r.Samples
	}
	fmt.Fprintf(out, "test accuracy reached: %.2f%% on 10000 test images, after %d rounds × %d native workers × %d samples (%d samples on them) in %.0fs (%.1f rounds/s) on %s\n",
		100*best.TestAcc, best.Steps, len(res.Results), batch, samples, elapsed.Seconds(),
		float64(best.Steps)/best.TrainTime.Seconds(), best.Backend)
	if ph := best.Phases; ph != nil {
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		fmt.Fprintf(out, "per round on %s: pull %.2f ms (waits for the round), upload %.2f ms, gradient %.2f ms (kernels + readback), push %.2f ms\n",
			"worker 0", ms(ph["pull"]), ms(ph["upload"]), ms(ph["grad"]), ms(ph["push"]))
	}
	fmt.Fprintf(out, "traffic per worker: %d bytes (worker 0, sent + received on its websocket)\n", best.Bytes)
}

// fedMode is the federated part of the run's description ("" for plain
// per-step training).
func fedMode(tc *worker.Config, byz int, byzMode string) string {
	c := *tc
	if c.LocalSteps <= 1 && c.Aggregate == "" && c.Compression == "" && byz == 0 {
		return ""
	}
	if err := c.Validate(); err != nil {
		return err.Error() // Run's workers refuse it the same way
	}
	s := c.Mode()
	if byz > 0 {
		s += fmt.Sprintf(", %d byzantine worker(s) pushing %s updates", byz, byzMode)
	}
	return s
}

// fedFlags are the `webkv worker` flags that make a joining worker train
// in the job's federated mode ("" for per-step training).
func fedFlags(tc *worker.Config) string {
	var s string
	if tc.LocalSteps > 1 {
		s += fmt.Sprintf(" -local-steps %d", tc.LocalSteps)
		if tc.Inner != "" && tc.Inner != "sgd" {
			s += " -inner " + tc.Inner
		}
	}
	if tc.Aggregate != "" && tc.Aggregate != "sum" {
		s += " -aggregate " + tc.Aggregate
	}
	if tc.Compression != "" {
		s += " -compress " + tc.Compression
	}
	return s
}
