// Package www is webkv's federated-training demo. This package is its web
// app: the page a browser tab opens to join a job and train the MNIST MLP
// of package mnist (www/mnist) on WebGPU (or on the CPU), and the dashboard
// that shows every peer's state, the rounds, loss and test accuracy over
// time, throughput and backends. The rest of the demo lives beside it:
//
//	www/mnist       the model, its CPU reference, WGSL kernels and MNIST data shards (pure Go)
//	www/mnist/gpu   the model's WebGPU engine (cgo natively, or GOOS=js)
//	www/worker      one native worker's training loop against a relay job (or alone)
//	www/demo        a relay serving this app plus N native workers: `webkv demo`
//	www/localdemo   a single-process data-parallel example on a "local" store
//	www/static      the page's files, embedded here
//
// Handler returns one http.Handler holding
//
//	/                 the page (index.html, app.js, gpu.js, cpu.js, chart.js, style.css; embedded)
//	/mlp/*.wgsl       the model's WGSL kernels, the very sources native workers run
//	/data/shard, /data/test   MNIST shards (mnist.DataHandler)
//	/api/config       the job's training settings (JSON)
//	/api/report       POST: a peer's progress report (JSON Report)
//	/api/leave        POST: a peer leaves (sent with navigator.sendBeacon on unload)
//	/api/peers        GET: every peer's latest report and history, and the job's state (JSON)
//	/webkv/           the webkv JavaScript runtime (webkv.js, webkv.wasm, ...), when given,
//	                  with its precompressed twins (package www/serve)
//
// The demo mounts it on its relay at "/" (relay.Server.Handle("/", h)),
// next to the relay's own /ws, /status and /metrics. The package is pure Go
// (no cgo, no WebGPU), so a CGO_ENABLED=0 relay binary can serve it too.
package www

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"

	"github.com/webkv/webkv/www/mnist"
	"github.com/webkv/webkv/www/serve"
)

//go:embed static
var static embed.FS

// JobConfig is what a joining tab trains with; /api/config serves it.
type JobConfig struct {
	Job       string  `json:"job"`             // relay job id
	Token     string  `json:"token,omitempty"` // served only when Config.ShareToken
	Type      string  `json:"type"`            // store type, e.g. dist_sync
	Shards    int     `json:"shards"`          // split of the training set; a peer takes shard rank % Shards
	IID       bool    `json:"iid"`             // IID or label-sorted split
	Max       int     `json:"max_per_shard"`   // cap on samples fetched per shard (0: whole shard)
	Batch     int     `json:"batch"`           // samples per worker per round
	LR        float64 `json:"learning_rate"`   // SGD learning rate of the server-side optimizer
	Momentum  float64 `json:"momentum"`        // SGD momentum
	Rounds    int     `json:"rounds"`          // rounds each peer trains (0: until the page is closed)
	EvalEvery int     `json:"eval_every"`      // rounds between test evaluations
	TestSize  int     `json:"test_size"`       // test samples a peer evaluates on
	Seed      int64   `json:"seed"`            // initial weights and split seed
	// StartWorkers is the number of workers that start the job together
	// (the relay holds their joins until all arrived); those with rank
	// below it wait at a barrier after set-up so that nobody pushes before
	// rank 0 set the optimizer. 0: peers join whenever and skip it.
	StartWorkers int `json:"start_workers"`
	// Federated mode (www/worker's federated.go): LocalSteps > 1 makes a
	// round LocalSteps batches with the inner optimizer (Inner "sgd" with
	// LR and Momentum, or "adam") and a push of the weight change, which
	// the job's outer optimizer (Outer "nag" with OuterLR, OuterMomentum,
	// or "fedavg") applies to the Aggregate of the pushes (psm's rule, ""
	// = sum); Compression is the pushes' ("2bit,0.002"; "" none).
	LocalSteps    int     `json:"local_steps,omitempty"`
	Inner         string  `json:"inner,omitempty"`
	Outer         string  `json:"outer,omitempty"`
	OuterLR       float64 `json:"outer_learning_rate,omitempty"`
	OuterMomentum float64 `json:"outer_momentum,omitempty"`
	Aggregate     string  `json:"aggregate,omitempty"`
	Compression   string  `json:"compression,omitempty"`
}

// DefaultJob is the demo's job: 4 IID shards, batch 64, SGD 0.1 with
// momentum 0.9, 3000 rounds, a test evaluation every 250. Two workers
// reach 97.7% test accuracy in 3000 rounds (94.3% in 200, 96.2% in
// 1300): on the CPU reference that is about half a minute on a loaded
// 2-core machine (`make demo` picks the faster of WebGPU and the CPU), far
// inside the 5 minutes `make demo` may take. An evaluation of 2000 test
// images costs about 20 rounds' work, so one per 250 rounds costs the
// run under a tenth of its time.
func DefaultJob() JobConfig {
	return JobConfig{Job: "mnist", Type: "dist_sync", Shards: 4, IID: true, Max: 0, Batch: 64,
		LR: 0.1, Momentum: 0.9, Rounds: 3000, EvalEvery: 250, TestSize: 2000, Seed: 1}
}

// Config configures Handler.
type Config struct {
	// Job is what joining tabs train with.
	Job JobConfig
	// ShareToken serves Job.Token in /api/config so that a tab opened
	// on the printed URL can join without typing it (the demo on loopback).
	// Without it, a tab reads the token from the URL fragment (#token=…).
	ShareToken bool
	// Runtime holds webkv.js, webkv.wasm, webkv-go.js and their twins (built by
	// wasm/js/build.sh into bin/webkv-js); nil serves a 404 that says so,
	// and the page then trains alone.
	Runtime fs.FS
	// Board collects peer reports; nil makes a new one.
	Board *Board
}

// Handler returns the web app (see the package doc).
func Handler(o Config) http.Handler {
	if o.Board == nil {
		o.Board = NewBoard(nil)
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // "static" is embedded above
	}
	mux := http.NewServeMux()
	mux.Handle("GET /", serve.Handler(sub, nil))
	mux.Handle("GET /mlp/", http.StripPrefix("/mlp/", http.FileServerFS(mnist.KernelSources())))
	mux.Handle("GET /data/", mnist.DataHandler())
	cfg := o.Job
	if !o.ShareToken {
		cfg.Token = ""
	}
	mux.HandleFunc("GET /api/config", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(cfg) // an error is the client gone mid-answer
	})
	o.Board.token = o.Job.Token
	mux.Handle("GET /api/peers", o.Board)
	mux.Handle("POST /api/report", o.Board)
	mux.Handle("POST /api/leave", o.Board)
	if o.Runtime != nil {
		mux.Handle("GET /webkv/", http.StripPrefix("/webkv/", serve.Handler(o.Runtime, nil)))
	} else {
		mux.HandleFunc("GET /webkv/", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "webkv runtime not mounted: build it with wasm/js/build.sh and pass its folder (webkv demo -js bin/webkv-js)", http.StatusNotFound)
		})
	}
	return mux
}
