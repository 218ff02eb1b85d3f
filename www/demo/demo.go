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
	"strings"
	"sync"
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
	JSDir   string        // webkv JS runtime (wasm/js/build.sh output); "" or missing: tabs train alone
	Linger  time.Duration // keep serving after the workers finished
	Token   string        // the job's token; "": a random one
	Train   worker.Config // the shared training settings (Engine, Report, Log and ID are set per worker)
	// Engines are the native workers' engines, one per worker (the
	// command opens them on one device; see mnist/gpu's Options.Lock);
	// nil: each worker computes on the CPU reference. Backend describes
	// them. The caller closes them after Run.
	Engines []mnist.Engine
	Backend string
	Out     io.Writer // progress and the result; nil: discarded
	// Byzantine native workers (the last ones) push ByzantineMode updates
	// (worker.ByzantineFlip, ...) instead of their real ones.
	Byzantine     int
	ByzantineMode string
}

// Result is what the demo reached.
type Result struct {
	URL     string
	Results []worker.Result
}

// Run starts a relay with the web app mounted, runs cfg.Workers native
// workers in this process against it (each its own relay connection, its
// own shard, its own engine), draws their progress and returns once they
// all finished (and Linger passed). Tabs opened on the URL join the same
// job while it runs.
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
			runtimeNote = fmt.Sprintf("note: no webkv JS runtime in %s (build it with wasm/js/build.sh): tabs will train alone\n", cfg.JSDir)
		}
	}
	board := www.NewBoard()
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
	res.URL = page + "/"
	fmt.Fprintf(cfg.Out, "webkv demo: %d native workers, %d rounds of %d samples each, %d %s shards, SGD lr %g momentum %g\n",
		cfg.Workers, tc.Steps, tc.Batch, tc.Shards, map[bool]string{true: "IID", false: "non-IID"}[tc.IID], tc.LR, tc.Momentum)
	if mode := fedMode(&tc, cfg.Byzantine, cfg.ByzantineMode); mode != "" {
		fmt.Fprintf(cfg.Out, "mode: %s\n", mode)
	}
	fmt.Fprintf(cfg.Out, "open %s to watch, and to join the job with more tabs (job %q)\n%s", res.URL, job.Job, runtimeNote)
	fmt.Fprintf(cfg.Out, "more native workers can join with: webkv worker -url %s -job %s -token %s -steps %d%s\n", page, job.Job, cfg.Token, tc.Steps, fedFlags(&tc))
	if cfg.Tabs > 0 {
		fmt.Fprintf(cfg.Out, "the job starts once %d browser tab(s) joined: open the URL in %d tab(s)\n", cfg.Tabs, cfg.Tabs)
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
	drawProgress(ctx, cfg.Out, board, tc.Steps, done, serveErr)
	// drawProgress also returns on an interrupt or a relay that stopped:
	// the workers then end too, and are waited for before their results
	// are read.
	cancel()
	<-done
	if parent.Err() != nil {
		return res, fmt.Errorf("demo: interrupted before the workers finished: %w", context.Cause(parent))
	}
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	// The result comes before the lingering, so that a user (or a test)
	// who keeps the page open sees it at once.
	printSummary(cfg.Out, res, tc.Batch*max(tc.LocalSteps, 1), time.Since(start))
	if cfg.Linger > 0 {
		fmt.Fprintf(cfg.Out, "serving %s for %v more (Ctrl-C to stop)\n", res.URL, cfg.Linger)
		select {
		case <-time.After(cfg.Linger):
		case <-parent.Done():
		}
	}
	return res, nil
}

// drawProgress redraws one progress bar per peer on the board (native
// workers and tabs) until done; on a terminal in place, otherwise as a
// status line every 5 s.
func drawProgress(ctx context.Context, out io.Writer, board *www.Board, steps int, done <-chan struct{}, serveErr <-chan error) {
	tty := false
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	period := 5 * time.Second
	if tty {
		period = 300 * time.Millisecond
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	drawn := 0
	draw := func() {
		peers := board.Peers()
		var lines []string
		for _, p := range peers {
			total := steps
			if p.Kind != "native" {
				total = max(total, p.Round)
			}
			frac := 0.0
			if total > 0 {
				frac = min(float64(p.Round)/float64(total), 1)
			}
			const width = 24
			n := int(frac * width)
			bar := strings.Repeat("█", n) + strings.Repeat("░", width-n)
			acc := "   –  "
			if p.TestAcc > 0 {
				acc = fmt.Sprintf("%5.1f%%", 100*p.TestAcc)
			}
			st := p.State
			if p.Gone && st != "left" {
				st = "gone"
			}
			lines = append(lines, fmt.Sprintf("%-10s %s %4d/%-4d loss %6.3f  acc %s  %6.0f samples/s  %-8s %s",
				trunc(p.ID, 10), bar, p.Round, total, p.Loss, acc, p.Rate, st, trunc(p.Backend, 40)))
		}
		if tty {
			if drawn > 0 {
				fmt.Fprintf(out, "\x1b[%dA", drawn) // back to the first bar
			}
			for _, l := range lines {
				fmt.Fprintf(out, "\x1b[2K%s\n", l)
			}
			drawn = len(lines)
		} else {
			fmt.Fprintf(out, "%s\n", strings.Join(lines, "\n"))
		}
	}
	for {
		select {
		case <-done:
			draw()
			return
		case <-ctx.Done():
			return
		case err := <-serveErr:
			fmt.Fprintf(out, "relay stopped: %v\n", err)
			return
		case <-tick.C:
			draw()
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

func trunc(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
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
