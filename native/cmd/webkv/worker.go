//go:build !js && !wasip1

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/webkv/webkv/www"
	"github.com/webkv/webkv/www/worker"
)

func init() {
	register("worker", "train the demo's MNIST MLP as a native worker of a relay job (or alone)", runWorker)
}

// trainFlags registers the training flags shared by worker and demo.
func trainFlags(fs *flag.FlagSet, c *worker.Config, cpu *bool) {
	d := www.DefaultJob()
	fs.IntVar(&c.Steps, "steps", d.Rounds, "rounds to train")
	fs.IntVar(&c.Batch, "batch", d.Batch, "samples per worker per round")
	fs.Float64Var(&c.LR, "lr", d.LR, "SGD learning rate (the relay's optimizer; with -local-steps > 1 the inner one)")
	fs.Float64Var(&c.Momentum, "momentum", d.Momentum, "SGD momentum (likewise)")
	fs.IntVar(&c.Shards, "shards", d.Shards, "split the training set into this many shards")
	fs.BoolVar(&c.IID, "iid", d.IID, "IID split (false: label-sorted, each shard holds one or two digits)")
	fs.IntVar(&c.MaxPerShard, "max-per-shard", d.Max, "cap on each worker's samples (0: the whole shard)")
	fs.Int64Var(&c.Seed, "seed", d.Seed, "seed of the initial weights, split and batch order")
	fs.IntVar(&c.EvalEvery, "eval-every", d.EvalEvery, "steps between test evaluations (0: only at the end)")
	fs.IntVar(&c.TestSize, "test-size", d.TestSize, "test images in the periodic evaluations (the final one uses all 10000)")
	fs.BoolVar(cpu, "cpu", false, "compute on the CPU reference even when a WebGPU adapter exists")
	// Federated training (www/worker's federated.go).
	fs.IntVar(&c.LocalSteps, "local-steps", 1, "local steps per round: each worker trains this many batches with the inner optimizer (-lr, -momentum), then pushes its weight change to the outer optimizer (1: per-step SGD on the relay)")
	fs.StringVar(&c.Inner, "inner", "sgd", "inner optimizer with -local-steps > 1: sgd or adam")
	fs.StringVar(&c.Outer, "outer", "nag", "outer optimizer with -local-steps > 1: nag (Nesterov momentum, as DiLoCo) or fedavg (plain averaging)")
	fs.Float64Var(&c.OuterLR, "outer-lr", worker.DefaultOuterLR, "outer learning rate (nag)")
	fs.Float64Var(&c.OuterMomentum, "outer-momentum", worker.DefaultOuterMomentum, "outer momentum (nag)")
	fs.StringVar(&c.Aggregate, "aggregate", "", "the relay's aggregation of each round's pushes: sum (default), mean, median, trimmed-mean[=fraction], optionally ,clip=norm")
	fs.StringVar(&c.Compression, "compress", "", "compression of the pushes with error feedback, type,threshold (e.g. 2bit,0.002)")
}

// parse parses args into fs; ok false means return code (0 for -h).
func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "webkv %s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return 2, false
	}
	return 0, true
}

func runWorker(args []string) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	var c worker.Config
	var cpu bool
	fs.StringVar(&c.URL, "url", "local", `relay URL (ws://host:port, http://host:port); "local" trains alone on a local store`)
	fs.StringVar(&c.Job, "job", www.DefaultJob().Job, "job id on the relay")
	fs.StringVar(&c.Token, "token", "", "the job's access token")
	fs.StringVar(&c.ID, "id", "", "name on the dashboard (default native-<host>-<pid>)")
	fs.IntVar(&c.Shard, "shard", -1, "shard to train on (-1: rank % shards)")
	fs.BoolVar(&c.Barrier, "barrier", false, "wait for all workers after set-up (for workers started together)")
	fs.IntVar(&c.Workers, "workers", 0, "the job's worker count (MXNet's DMLC_NUM_WORKER): its start waits until that many joined; every worker must give the same (0: the job's)")
	fs.BoolVar(&c.WaitForRelay, "wait", false, "keep retrying the first connection until the relay is up (default: fail at once when it cannot be reached)")
	fs.BoolVar(&c.Resume, "resume", false, "continue the run the job holds from earlier (default: an earlier run's keys are an error; reset the job or pass -resume)")
	fs.StringVar(&c.Byzantine, "byzantine", "", "misbehave: push flip (-10x), scale (100x) or nan updates instead of the real ones")
	trainFlags(fs, &c, &cpu)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	c.Log = os.Stdout
	e := chooseEngines(cpu, 1, c.Batch, os.Stdout)
	if e.list != nil {
		c.Engine = e.list[0]
	}
	c.Backend = e.backend
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := worker.Run(ctx, c)
	err = errors.Join(err, e.close())
	if err != nil {
		fmt.Fprintf(os.Stderr, "webkv worker: %v\n", err)
		return 1
	}
	fmt.Printf("test accuracy %.2f%% after %d rounds (%d samples on this worker, %d workers) on %s; %.1f rounds/s\n",
		100*res.TestAcc, res.Steps, res.Samples, res.Workers, res.Backend, float64(res.Steps)/res.TrainTime.Seconds())
	fmt.Printf("traffic: %d bytes (%s)\n", res.Bytes, res.Mode)
	return 0
}
