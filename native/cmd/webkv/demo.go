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
	"github.com/webkv/webkv/www/demo"
)

func init() {
	register("demo", "federated MNIST demo: a relay serving the web page, and N native workers training together", runDemo)
}

func runDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var c demo.Config
	var cpu bool
	fs.IntVar(&c.Workers, "workers", 2, "native workers to run")
	fs.IntVar(&c.Tabs, "tabs", 0, "browser tabs the job waits for before it starts (tabs opened later join a running job)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:7070", "relay and web page address (port 0 picks a free port)")
	fs.StringVar(&c.JSDir, "js", "bin/webkv-js", "folder with the webkv JS runtime (wasm/js/build.sh output)")
	fs.DurationVar(&c.Linger, "linger", 0, "keep serving the page this long after the workers finished")
	fs.StringVar(&c.Token, "token", "", "job token (default: random; the page gets it from /api/config)")
	fs.StringVar(&c.Train.Job, "job", www.DefaultJob().Job, "job id")
	trainFlags(fs, &c.Train, &cpu)
	fs.IntVar(&c.Byzantine, "byzantine", 0, "this many of the native workers push corrupted updates (see -byzantine-mode)")
	fs.StringVar(&c.ByzantineMode, "byzantine-mode", "flip", "what the -byzantine workers push: flip (their update times -10), scale (times 100) or nan")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if c.Workers <= 0 {
		fmt.Fprintf(os.Stderr, "webkv demo: -workers %d, want > 0\n", c.Workers)
		return 2
	}
	c.Train.Shard = -1
	c.Out = os.Stdout
	e := chooseEngines(cpu, c.Workers, max(c.Train.Batch, 256), os.Stdout)
	c.Engines, c.Backend = e.list, e.backend
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err := demo.Run(ctx, c)
	err = errors.Join(err, e.close())
	if err != nil {
		fmt.Fprintf(os.Stderr, "webkv demo: %v\n", err)
		return 1
	}
	return 0
}
