// Package worker is one native worker of the demo: it joins a relay job
// (or trains alone on a local store), trains the MNIST MLP of package mnist
// on its shard with an mnist.Engine (the WebGPU engine of package
// mnist/gpu, or the CPU reference), and reports its progress to the demo's
// dashboard. `webkv worker` and `webkv demo` (native/cmd/webkv, package
// demo) run it; browser tabs run the same loop in www/static/app.js.
//
// Federated training (local steps, as in FedAvg and DiLoCo) is a pattern
// on top of the MXNet API, not a store type:
//
//	pull w                          // the job's weights
//	w_start := w
//	repeat H times:                 // local steps, no traffic
//	    g := gradient of one batch at w
//	    w = inner optimizer step(w, g)   // SGD with momentum, or Adam
//	push w_start − w                // the "pseudo-gradient"
//
// and the job's optimizer, set once by rank 0, is the outer optimizer: it
// treats the aggregate of the pushed pseudo-gradients as a gradient.
// Nesterov momentum (MXNet's "nag") is DiLoCo's outer optimizer; plain
// averaging (FedAvg) is SGD with learning rate 1 and no momentum. With the
// sum aggregate each worker pushes its pseudo-gradient divided by the
// number of workers (the sum is then their mean); with mean, median or
// trimmed-mean (psm's robust rules, command psm.CmdAggregate) it pushes
// it whole. 2-bit compression quantizes the pushed pseudo-gradient with
// error feedback (the residual stays on the worker, MXNet's rule). H = 1
// with the outer optimizer on the relay is per-step data-parallel SGD,
// which is the default (LocalSteps <= 1): there the job's optimizer is
// SGD(LR, Momentum) and the worker pushes its gradient.
//
// One round costs a worker one pull and one push of the model whatever H
// is, so the traffic of a run is rounds × 2 × model size.
package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/relay"
	"github.com/webkv/webkv/www"
	"github.com/webkv/webkv/www/mnist"
)

// Config is one native worker's job. The zero values of the numeric fields
// are filled from www.DefaultJob (see Defaults), so a worker and the tabs
// of a demo train with the same settings.
type Config struct {
	URL, Job, Token string // relay; URL "" or "local": a local store, training alone
	ID              string // name on the dashboard
	Steps           int    // rounds to train
	Batch           int
	LR, Momentum    float64
	Shards          int  // split of the training set
	Shard           int  // this worker's shard; -1: rank % Shards
	IID             bool // IID or label-sorted split
	MaxPerShard     int  // cap on this worker's samples (0: whole shard)
	Seed            int64
	EvalEvery       int  // steps between test evaluations (0: only at the end)
	TestSize        int  // test samples for the periodic evaluations (the final one uses all 10000)
	FinalTestSize   int  // test samples of the final evaluation (0: all 10000; short tests use fewer)
	Barrier         bool // wait for every worker after set-up (workers started together)
	Workers         int  // hold the job's start until this many workers joined (0: no wait)
	WaitForRelay    bool // retry the first connection until the relay is up (relay.DialOptions.WaitForRelay)
	Resume          bool // continue a run the job's keys hold from earlier (relay.DialOptions.Resume)

	// Engine computes the gradients; nil: the CPU reference
	// (mnist.NewCPU). Backend describes it for the dashboard and the
	// result, e.g. "webgpu: llvmpipe (…)"; "" gives "cpu". The caller
	// owns Engine (the demo shares one device among its workers).
	Engine  mnist.Engine
	Backend string

	// Report receives progress (the demo's dashboard board); nil posts to
	// URL's /api/report when URL is a relay, else drops it.
	Report func(www.Report)
	// Log receives human-readable progress lines; nil: none.
	Log io.Writer

	// Federated training (federated.go). LocalSteps > 1: each round
	// trains LocalSteps batches with the inner optimizer (Inner "sgd" with
	// LR and Momentum, or "adam" with LR) and pushes the weight change;
	// the job's optimizer is the outer one (Outer "nag" with OuterLR and
	// OuterMomentum, defaults DefaultOuterLR and DefaultOuterMomentum, or
	// "fedavg"). Aggregate is the job's rule (psm.ParseAggregate; ""
	// keeps the relay's, sum), Compression the pushes' ("2bit,0.01").
	// Byzantine makes this worker push a corrupted update (flip, scale,
	// nan) instead of its own.
	LocalSteps    int
	Inner         string
	Outer         string
	OuterLR       float64
	OuterMomentum float64
	Aggregate     string
	Compression   string
	Byzantine     string
	// Traffic counts this worker's websocket bytes; nil: Run makes one.
	Traffic *relay.Traffic
}

// Result is what a finished worker reached.
type Result struct {
	Rank, Workers int
	Steps         int
	Samples       int64
	Backend       string
	TestAcc       float64 // on the whole test set, with the final weights
	TestLoss      float64
	Elapsed       time.Duration
	TrainTime     time.Duration // the rounds alone: no set-up, data loading or final evaluation
	// Phases is the mean time of one round's parts: pull (weights from
	// the store), upload (weights to the engine), grad (the gradient:
	// kernels and readback), push (the gradient to the store).
	Phases map[string]time.Duration
	// Mode is the training mode (Config.Mode); Bytes what this worker
	// sent and received on its websocket connections (0 on a local store).
	Mode  string
	Bytes int64
}

// Defaults fills the zero fields that have a default: Batch, LR, Shards,
// TestSize and Job from www.DefaultJob, ID from the host name and process
// id. Run calls it.
func (c *Config) Defaults() {
	d := www.DefaultJob()
	if c.Batch <= 0 {
		c.Batch = d.Batch
	}
	if c.LR <= 0 {
		c.LR = d.LR
	}
	if c.Shards <= 0 {
		c.Shards = d.Shards
	}
	if c.TestSize <= 0 {
		c.TestSize = d.TestSize
	}
	if c.Job == "" {
		c.Job = d.Job
	}
	if c.ID == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "host" // only a dashboard label
		}
		c.ID = fmt.Sprintf("native-%s-%d", host, os.Getpid())
	}
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, format+"\n", args...)
	}
}

func isLocal(u string) bool { return u == "" || u == "local" }

// openStore returns a dist_sync store on the relay at cfg.URL, or a local
// store when there is none.
func openStore(ctx context.Context, cfg *Config) (*kvcore.Store, error) {
	if isLocal(cfg.URL) {
		return kvcore.Create(ctx, "local", nil)
	}
	return relay.Create(ctx, "dist_sync", cfg.URL, relay.DialOptions{Job: cfg.Job, Token: cfg.Token, Workers: cfg.Workers, Traffic: cfg.Traffic,
		WaitForRelay: cfg.WaitForRelay, Resume: cfg.Resume}, nil)
}

// HTTPBase turns a relay URL (ws://host/ws, http://host) into its http(s)
// origin, where the demo's page and its /api and /data routes live.
func HTTPBase(u string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	switch p.Scheme {
	case "ws":
		p.Scheme = "http"
	case "wss":
		p.Scheme = "https"
	case "http", "https":
	default:
		return "", fmt.Errorf("worker: relay URL %q: want ws://, wss://, http:// or https://", u)
	}
	return p.Scheme + "://" + p.Host, nil
}

// postReporter posts reports to the relay's dashboard at most once a
// second (and always for state changes and evaluations).
func postReporter(base, token string) func(www.Report) {
	var mu sync.Mutex
	var last time.Time
	var lastState string
	var lastAcc float64
	cl := &http.Client{Timeout: 3 * time.Second}
	return func(r www.Report) {
		mu.Lock()
		if time.Since(last) < time.Second && r.State == lastState && r.TestAcc == lastAcc {
			mu.Unlock()
			return
		}
		last, lastState, lastAcc = time.Now(), r.State, r.TestAcc
		mu.Unlock()
		r.Token = token
		b, err := json.Marshal(r)
		if err != nil {
			return // a Report has no field json cannot encode; NaN loss is the one way: skip it
		}
		resp, err := cl.Post(base+"/api/report", "application/json", bytes.NewReader(b))
		if err == nil {
			resp.Body.Close() // best effort: a relay without the web app answers 404
		}
	}
}

// loadShard returns this worker's shard and the test set: from the MNIST
// files of the GoMNIST module, or, when they are not on this machine, from
// the relay's /data routes.
func loadShard(ctx context.Context, cfg *Config, shard int) (*mnist.Set, *mnist.Set, error) {
	train, test, err := mnist.Load()
	if err == nil {
		parts, err := mnist.Split(train.Labels, cfg.Shards, cfg.IID, cfg.Seed)
		if err != nil {
			return nil, nil, err
		}
		s, err := train.Subset(mnist.Cap(parts[shard], cfg.MaxPerShard))
		return s, test, err
	}
	if isLocal(cfg.URL) {
		return nil, nil, err
	}
	base, berr := HTTPBase(cfg.URL)
	if berr != nil {
		return nil, nil, berr
	}
	cfg.logf("%s: MNIST not on this machine (%v); fetching shard %d from %s", cfg.ID, err, shard, base)
	iid := 0
	if cfg.IID {
		iid = 1
	}
	s, err := fetchSet(ctx, fmt.Sprintf("%s/data/shard?i=%d&n=%d&iid=%d&seed=%d&max=%d", base, shard, cfg.Shards, iid, cfg.Seed, cfg.MaxPerShard))
	if err != nil {
		return nil, nil, err
	}
	t, err := fetchSet(ctx, base+"/data/test")
	return s, t, err
}

func fetchSet(ctx context.Context, u string) (*mnist.Set, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close() // read to the end below, or an error is being returned anyway
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	s, _, err := mnist.DecodeShard(b)
	return s, err
}

// Run runs one worker to the end: join, initialize (rank 0's weights win),
// set the optimizer (rank 0), then Steps rounds of pull weights → gradient
// of one batch → push gradient, with periodic test evaluations, and a final
// one on the whole test set.
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	cfg.Defaults()
	if cfg.Steps <= 0 {
		return res, fmt.Errorf("worker: -steps %d, want > 0", cfg.Steps)
	}
	if cfg.Shard >= cfg.Shards {
		return res, fmt.Errorf("worker: shard %d of %d", cfg.Shard, cfg.Shards)
	}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	if cfg.Traffic == nil {
		cfg.Traffic = new(relay.Traffic)
	}
	res.Mode = cfg.Mode()
	report := cfg.Report
	if report == nil {
		report = func(www.Report) {}
		if !isLocal(cfg.URL) {
			if base, err := HTTPBase(cfg.URL); err == nil {
				report = postReporter(base, cfg.Token)
			}
		}
	}
	rep := www.Report{ID: cfg.ID, Kind: "native", Rank: -1, State: "joining", Mode: res.Mode}
	defer func() {
		if err != nil {
			rep.State, rep.Message = "error", err.Error()
		} else {
			rep.State = "done"
		}
		report(rep)
	}()
	start := time.Now()
	engine, backend := cfg.Engine, cfg.Backend
	if engine == nil {
		if engine, err = mnist.NewCPU(mnist.MLP); err != nil {
			return res, err
		}
		if backend == "" {
			backend = "cpu"
		}
	}
	rep.Backend, res.Backend = backend, backend
	report(rep)

	kv, err := openStore(ctx, &cfg)
	if err != nil {
		return res, fmt.Errorf("worker: join %s: %w", cfg.URL, err)
	}
	defer func() {
		if cerr := kv.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("worker: close store: %w", cerr)
		}
	}()
	res.Rank, res.Workers = kv.Rank(), kv.NumWorkers()
	rep.Rank, rep.Workers = res.Rank, res.Workers
	cfg.logf("%s: rank %d of %d on %s, store %s", cfg.ID, res.Rank, res.Workers, backend, kv.Type())

	// Keys and optimizer.
	p, err := mnist.InitParams(mnist.MLP, cfg.Seed)
	if err != nil {
		return res, err
	}
	shapes := mnist.MLP.TensorShapes()
	var wArr, gArr [4]*kvcore.Array
	for i, t := range p.Tensors() {
		if wArr[i], err = kvcore.FromSlice(kvcore.CPU(0), t, shapes[i]...); err != nil {
			return res, err
		}
		if gArr[i], err = kvcore.NewArray(kvcore.CPU(0), shapes[i]...); err != nil {
			return res, err
		}
		if err := kv.Init(ctx, kvcore.StrKey(mnist.TensorNames[i]), wArr[i]); err != nil {
			return res, fmt.Errorf("worker: init %s: %w", mnist.TensorNames[i], err)
		}
	}
	if err := setUpJob(ctx, kv, &cfg); err != nil {
		return res, err
	}
	if cfg.Barrier {
		if err := kv.Barrier(ctx); err != nil {
			return res, fmt.Errorf("worker: barrier after set-up: %w", err)
		}
	}

	// Data.
	shard := cfg.Shard
	if shard < 0 {
		shard = res.Rank % cfg.Shards
	}
	rep.State = "loading"
	report(rep)
	set, test, err := loadShard(ctx, &cfg, shard)
	if err != nil {
		return res, fmt.Errorf("worker: data: %w", err)
	}
	bt, err := mnist.NewBatcher(set, cfg.Batch, cfg.Seed+int64(res.Rank)+1)
	if err != nil {
		return res, err
	}
	tx, ty := test.Head(cfg.TestSize).Inputs()
	g, err := mnist.NewParams(mnist.MLP)
	if err != nil {
		return res, err
	}
	keys := make([]kvcore.Key, 4)
	for i, n := range mnist.TensorNames {
		keys[i] = kvcore.StrKey(n)
	}
	// Where a round's time goes: totals by phase (see workerResult.Phases).
	var tot [4]time.Duration
	const phPull, phUpload, phGrad, phPush = 0, 1, 2, 3
	pull := func() error {
		t0 := time.Now()
		for i, k := range keys {
			if err := kv.Pull(k, wArr[i]); err != nil {
				return err
			}
		}
		for i, t := range p.Tensors() {
			if err := wArr[i].CopyTo(ctx, t); err != nil {
				return err
			}
		}
		t1 := time.Now()
		err := engine.SetParams(p)
		tot[phPull] += t1.Sub(t0)
		tot[phUpload] += time.Since(t1)
		return err
	}

	local := &localSteps{cfg: &cfg, engine: engine, bt: bt}
	if cfg.federated() {
		local.inner = newInnerOpt(&cfg, p)
		if local.g, err = mnist.NewParams(mnist.MLP); err != nil {
			return res, err
		}
	}
	rep.State = "training"
	cfg.logf("%s: shard %d of %d (%d samples, %s), batch %d, SGD lr %g momentum %g", cfg.ID, shard, cfg.Shards, set.Len(),
		map[bool]string{true: "IID", false: "non-IID"}[cfg.IID], cfg.Batch, cfg.LR, cfg.Momentum)
	tStart := time.Now()
	t0, s0 := tStart, int64(0)
	for step := 1; step <= cfg.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := pull(); err != nil {
			return res, fmt.Errorf("worker: pull at step %d: %w", step, err)
		}
		g0 := time.Now()
		// The round's update: one batch's gradient, or with local steps
		// the weight change of LocalSteps batches (federated.go).
		loss, err := local.update(p, g)
		if err != nil {
			return res, fmt.Errorf("worker: gradient at step %d: %w", step, err)
		}
		if cfg.Byzantine != "" {
			for _, t := range g.Tensors() {
				byzantine(cfg.Byzantine, t)
			}
		}
		g1 := time.Now()
		tot[phGrad] += g1.Sub(g0)
		// dist_sync sums the round's pushes by default: push this
		// worker's share of the mean; the averaging rules take it whole.
		nw := max(kv.NumWorkers(), 1)
		inv := 1 / float32(nw)
		for i, t := range g.Tensors() {
			if nw > 1 && !cfg.pushesWhole() {
				for j := range t {
					t[j] *= inv
				}
			}
			if err := gArr[i].CopyFrom(ctx, t); err != nil {
				return res, err
			}
			if err := kv.Push(keys[i], gArr[i]); err != nil {
				return res, fmt.Errorf("worker: push at step %d: %w", step, err)
			}
		}
		if cfg.Byzantine == ByzantineNaN {
			// The relay refuses its pushes (that is the point): their
			// errors are this worker's to ignore, not to stop on.
			_ = kv.WaitAll(ctx)
		}
		tot[phPush] += time.Since(g1)
		res.Steps, res.Samples = step, res.Samples+int64(cfg.Batch*cfg.LocalSteps)
		res.Bytes, rep.Bytes = cfg.Traffic.Total(), cfg.Traffic.Total()
		res.Phases = map[string]time.Duration{"pull": tot[phPull] / time.Duration(step), "upload": tot[phUpload] / time.Duration(step),
			"grad": tot[phGrad] / time.Duration(step), "push": tot[phPush] / time.Duration(step)}
		rep.Phases = map[string]float64{}
		for k, v := range res.Phases {
			rep.Phases[k] = float64(v.Microseconds()) / 1000
		}
		if rep.Round == 0 {
			rep.Loss = loss
		} else {
			rep.Loss = 0.9*rep.Loss + 0.1*loss
		}
		rep.Round, rep.Samples, rep.Workers = step, res.Samples, nw
		if dt := time.Since(t0); dt > time.Second {
			rep.Rate = float64(res.Samples-s0) / dt.Seconds() // over the last second or so
			t0, s0 = time.Now(), res.Samples
		} else if s0 == 0 {
			rep.Rate = float64(res.Samples) / time.Since(tStart).Seconds() // first second: since the start
		}
		if cfg.EvalEvery > 0 && step%cfg.EvalEvery == 0 && step < cfg.Steps {
			if err := pull(); err != nil {
				return res, fmt.Errorf("worker: pull for evaluation: %w", err)
			}
			if rep.TestLoss, rep.TestAcc, err = engine.Evaluate(tx, ty); err != nil {
				return res, err
			}
			cfg.logf("%s: step %d/%d  loss %.3f  test accuracy %.2f%% (%d images)  %.0f samples/s", cfg.ID, step, cfg.Steps, rep.Loss, 100*rep.TestAcc, len(ty), rep.Rate)
		}
		report(rep)
	}
	if err := kv.WaitAll(ctx); err != nil {
		return res, err
	}
	res.TrainTime = time.Since(tStart)
	rep.State = "evaluating"
	report(rep)
	if err := pull(); err != nil {
		return res, fmt.Errorf("worker: final pull: %w", err)
	}
	fx, fy := test.Inputs()
	if cfg.FinalTestSize > 0 {
		fx, fy = test.Head(cfg.FinalTestSize).Inputs()
	}
	if res.TestLoss, res.TestAcc, err = engine.Evaluate(fx, fy); err != nil {
		return res, err
	}
	rep.TestAcc, rep.TestLoss = res.TestAcc, res.TestLoss
	res.Elapsed = time.Since(start)
	res.Bytes, rep.Bytes = cfg.Traffic.Total(), cfg.Traffic.Total()
	cfg.logf("%s: done: %d steps, %d samples, test accuracy %.2f%% on %d images, %.1fs", cfg.ID, res.Steps, res.Samples, 100*res.TestAcc, len(fy), res.Elapsed.Seconds())
	return res, nil
}
