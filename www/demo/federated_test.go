//go:build !js && !wasip1

package demo

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/www/worker"
)

// Federated training through a real relay on the CPU reference, short
// runs with the demo's fixed seed (the data split, the initial weights and
// the batch order are seeded; the rounds of dist_sync are deterministic,
// so only the float order of the CPU kernels could move a figure, and the
// margins below are wide). The thresholds were measured with these
// settings: what each test checks is printed with its figure.

// fedRun runs the demo and returns worker 0's result (every honest worker
// ends with the job's weights).
func fedRun(t *testing.T, cfg Config) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg.Listen, cfg.Out = "127.0.0.1:0", io.Discard
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	honest := cfg.Workers - cfg.Byzantine
	for i, r := range res.Results[:honest] {
		if r.TestAcc != res.Results[0].TestAcc {
			t.Errorf("worker %d: accuracy %.4f differs from worker 0's %.4f: the workers do not share the job's weights", i, r.TestAcc, res.Results[0].TestAcc)
		}
	}
	return res
}

// small is the tests' training: 8 rounds of batches of 32 from shards
// capped at 3000 samples (evenly spaced: a non-IID shard keeps its
// digits), evaluated on 2000 test images, small enough for the race
// detector.
func small(localSteps int) worker.Config {
	return worker.Config{Steps: 8, LocalSteps: localSteps, Batch: 32, Shard: -1, IID: true, Momentum: 0.9, MaxPerShard: 3000, FinalTestSize: 2000}
}

// Local steps: 2 workers × 8 rounds of 8 local steps learn far more than
// 8 per-step rounds, for the same traffic (one pull and one push of the
// model per round).
func TestFederatedLocalSteps(t *testing.T) {
	perStep := fedRun(t, Config{Workers: 2, Train: small(1)}).Results[0]
	local := fedRun(t, Config{Workers: 2, Train: small(8)}).Results[0]
	t.Logf("8 rounds: per-step %.2f%% (%d bytes), 8 local steps %.2f%% (%d bytes)", 100*perStep.TestAcc, perStep.Bytes, 100*local.TestAcc, local.Bytes)
	if local.TestAcc < 0.82 || local.TestAcc < perStep.TestAcc+0.1 {
		t.Errorf("8 local steps: %.2f%%, want >= 82%% and 10 points above per-step training (%.2f%%)", 100*local.TestAcc, 100*perStep.TestAcc)
	}
	// The model is 101,770 floats: a round pulls and pushes it once.
	const model = 4 * 101770
	for _, r := range []worker.Result{perStep, local} {
		if r.Bytes < 2*8*model || r.Bytes > 3*8*model {
			t.Errorf("%s: %d bytes over 8 rounds, want about 2 × 8 × %d", r.Mode, r.Bytes, model)
		}
	}
}

// Non-IID shards (label-sorted: each worker sees two or three digits):
// local steps with the outer optimizer still learn every digit.
func TestFederatedNonIID(t *testing.T) {
	train := small(8)
	train.IID = false
	r := fedRun(t, Config{Workers: 4, Train: train}).Results[0]
	t.Logf("4 non-IID workers, 8 rounds of 8 local steps: %.2f%%", 100*r.TestAcc)
	if r.TestAcc < 0.75 {
		t.Errorf("test accuracy %.2f%%, want >= 75%% (a worker alone sees 2 or 3 digits: under 35%%)", 100*r.TestAcc)
	}
}

// One Byzantine worker of 4 pushing its update times −10: the trimmed
// mean cuts it and training proceeds; the plain sum (the same run) is
// wrecked by it, so the attack is real.
func TestFederatedByzantineTrimmedMean(t *testing.T) {
	train := small(8)
	sum := fedRun(t, Config{Workers: 4, Byzantine: 1, ByzantineMode: worker.ByzantineFlip, Train: train}).Results[0]
	train.Aggregate = "trimmed-mean"
	trim := fedRun(t, Config{Workers: 4, Byzantine: 1, ByzantineMode: worker.ByzantineFlip, Train: train}).Results[0]
	t.Logf("1 of 4 workers flips: sum %.2f%%, trimmed-mean %.2f%%", 100*sum.TestAcc, 100*trim.TestAcc)
	if trim.TestAcc < 0.8 {
		t.Errorf("trimmed-mean: %.2f%%, want >= 80%%", 100*trim.TestAcc)
	}
	if sum.TestAcc > 0.5 {
		t.Errorf("sum: %.2f%% with a Byzantine worker: want it wrecked (< 50%%), or the test shows nothing", 100*sum.TestAcc)
	}
}

// A worker pushing NaN: the relay refuses and counts its pushes, never
// aggregates them, and the honest workers' rounds go on without waiting
// for it (mean of the accepted pushes).
func TestFederatedNaNRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	urlc := make(chan string, 1)
	out := &resultWriter{urlWriter: urlWriter{c: urlc}, done: make(chan struct{})}
	done := make(chan error, 1)
	var res Result
	nanTrain := small(8)
	nanTrain.Aggregate = "mean"
	go func() {
		var err error
		res, err = Run(ctx, Config{Workers: 3, Byzantine: 1, ByzantineMode: worker.ByzantineNaN, Listen: "127.0.0.1:0", Out: out, Linger: time.Hour,
			Train: nanTrain})
		done <- err
	}()
	var u string
	select {
	case u = <-urlc:
	case err := <-done:
		t.Fatalf("demo returned before printing its URL: %v", err)
	}
	// The result is printed before the demo lingers: the job is done.
	select {
	case <-out.done:
	case err := <-done:
		t.Fatalf("demo ended: %v", err)
	}
	var st struct {
		Jobs []struct {
			Job       string `json:"job"`
			Aggregate string `json:"aggregate"`
			NonFinite uint64 `json:"non_finite_pushes"`
			Updates   uint64 `json:"updates"`
		} `json:"jobs"`
	}
	resp, err := http.Get(u + "status")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || len(st.Jobs) != 1 {
		t.Fatalf("status: %v, %+v", err, st)
	}
	cancel()
	<-done
	j := st.Jobs[0]
	r := res.Results[0]
	t.Logf("status: %+v; worker 0: %.2f%%", j, 100*r.TestAcc)
	if j.Aggregate != "mean" || j.NonFinite == 0 || j.Updates < 4*8 {
		t.Errorf("status %+v: want aggregate mean, 32 updates and refused non-finite pushes counted", j)
	}
	if r.TestAcc < 0.82 {
		t.Errorf("test accuracy %.2f%% beside a NaN-pushing worker, want >= 82%%", 100*r.TestAcc)
	}
}

// resultWriter is a urlWriter that also closes done once the demo printed
// its result.
type resultWriter struct {
	urlWriter
	done chan struct{}
	seen bool
}

func (w *resultWriter) Write(p []byte) (int, error) {
	if !w.seen && strings.Contains(string(p), "test accuracy reached") {
		w.seen = true
		close(w.done)
	}
	return w.urlWriter.Write(p)
}
