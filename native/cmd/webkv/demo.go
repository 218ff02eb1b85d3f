//go:build !js && !wasip1

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/webkv/webkv/www"
	"github.com/webkv/webkv/www/demo"
)

func init() {
	register("demo", "federated MNIST demo: a relay serving the web page, and N native workers training together", runDemo)
}

// lingerFlag is -linger: a duration (-linger 10m), or true (until
// Ctrl-C, held as a negative duration) or false (0), or auto: until Ctrl-C
// on a terminal, else 0 (the default; auto is set).
type lingerFlag struct {
	d    time.Duration
	auto bool
}

func (f *lingerFlag) String() string {
	switch {
	case f == nil:
		return ""
	case f.auto:
		return "auto"
	case f.d < 0:
		return "true"
	case f.d == 0:
		return "false"
	}
	return f.d.String()
}

func (f *lingerFlag) Set(s string) error {
	f.auto = s == "auto"
	if f.auto {
		return nil
	}
	if b, err := strconv.ParseBool(s); err == nil {
		f.d = 0
		if b {
			f.d = -1
		}
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("want true, false or a duration such as 10m")
	}
	f.d = d
	return nil
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// demoFlags are webkv demo's flags, into c, cpu and linger.
func demoFlags(c *demo.Config, cpu *bool, linger *lingerFlag) *flag.FlagSet {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.IntVar(&c.Workers, "workers", 2, "native workers to run")
	fs.IntVar(&c.Tabs, "tabs", 0, "browser tabs the job waits for before it starts (tabs opened later join a running job)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:7070", "relay and web page address (port 0 picks a free port)")
	fs.StringVar(&c.JSDir, "js", "bin/webkv-js", "folder with the webkv JS runtime (wasm/js/build.sh output)")
	*linger = lingerFlag{auto: true}
	fs.Var(linger, "linger", "keep serving the page after the workers finished: true (until Ctrl-C), false (exit), a duration (10m),\n"+
		"or auto: until Ctrl-C when stdout is a terminal, else exit (so that scripts and CI end)")
	fs.StringVar(&c.Token, "token", "", "job token (default: random; the page gets it from /api/config)")
	fs.StringVar(&c.Train.Job, "job", www.DefaultJob().Job, "job id")
	trainFlags(fs, &c.Train, cpu)
	fs.IntVar(&c.Byzantine, "byzantine", 0, "this many of the native workers push corrupted updates (see -byzantine-mode)")
	fs.StringVar(&c.ByzantineMode, "byzantine-mode", "flip", "what the -byzantine workers push: flip (their update times -10), scale (times 100) or nan")
	return fs
}

func runDemo(args []string) int {
	var c demo.Config
	var cpu bool
	var linger lingerFlag
	fs := demoFlags(&c, &cpu, &linger)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if c.Workers <= 0 {
		fmt.Fprintf(os.Stderr, "webkv demo: -workers %d, want > 0\n", c.Workers)
		return 2
	}
	c.Train.Shard = -1
	c.Out = os.Stdout
	c.Linger = linger.d
	if linger.auto {
		c.Linger = 0
		if isTerminal(os.Stdout) {
			c.Linger = -1
		}
	}
	e := chooseEngines(cpu, c.Workers, c.Train.Batch, os.Stdout)
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
