package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/webkv/webkv/relay"
)

func init() {
	register("relay", "run a relay (parameter server and scheduler for dist_* stores)", runRelay)
}

// listFlag collects a repeatable or comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func runRelay(args []string) int {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	var (
		listen    = fs.String("listen", "127.0.0.1:7070", "listen address host:port (port 0 picks a free port)")
		dataDir   = fs.String("data", "", "data directory for checkpoints (empty: no persistence)")
		heartbeat = fs.Duration("heartbeat", 2*time.Second, "interval at which workers ping")
		timeout   = fs.Duration("timeout", 10*time.Second, "silence after which a worker leaves its job's rounds")
		deadline  = fs.Duration("round-deadline", 30*time.Second, "a dist_sync round closes this long after its first push once the quorum is in")
		quorum    = fs.Float64("quorum", 0, "pushes needed to close a round at its deadline: a share of live workers (0,1] or a count (>1); 0 = all")
		ckRounds  = fs.Int("checkpoint-rounds", 100, "checkpoint after this many state-changing steps (closed rounds, new keys, joins)")
		ckEvery   = fs.Duration("checkpoint-interval", 30*time.Second, "checkpoint at least this often while the state changes")
		durable   = fs.Bool("durable", true, "acknowledge an update only after it is checkpointed (needs -data)")
		workers   = fs.Int("workers", 0, "hold each job's start until this many workers joined (0: none; a worker may ask for more)")
		shardIdx  = fs.Int("shard-index", 0, "this relay's index in -shards")
		tlsCert   = fs.String("tls-cert", "", "PEM certificate file (serve wss:// with -tls-key)")
		tlsKey    = fs.String("tls-key", "", "PEM key file")
		maxMsg    = fs.Int64("max-message", 1<<30+4096, "largest accepted message in bytes")
		maxConns  = fs.Int("max-conns", 1024, "largest number of connections")
		maxPerJob = fs.Int("max-conns-per-job", 256, "largest number of connections of one job")
		maxJobs   = fs.Int("max-jobs", 256, "largest number of jobs")
		maxKeys   = fs.Int("max-keys", 1<<16, "largest number of keys per job")
		idle      = fs.Duration("idle-timeout", 0, "close a connection silent this long (0: 3x -timeout, at least 2m)")
		wTimeout  = fs.Duration("write-timeout", 30*time.Second, "a peer that takes longer to accept one message is disconnected")
		sendQueue = fs.Int("send-queue", 64, "messages queued per connection before a slow peer is disconnected")
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
		tokens    listFlag
		shards    listFlag
		origins   listFlag
	)
	fs.Var(&tokens, "token", "job=token (repeatable); with none, any job may connect unauthenticated")
	fs.Var(&shards, "shards", "comma-separated URLs of every relay shard, in order (empty: one relay)")
	fs.Var(&origins, "origins", "comma-separated Origin host patterns allowed for browsers (e.g. example.com,*.example.org)")
	updaters := updaterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "webkv relay: -log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	tok := map[string]string{}
	for _, t := range tokens {
		job, secret, ok := strings.Cut(t, "=")
		if !ok || job == "" || secret == "" {
			fmt.Fprintf(os.Stderr, "webkv relay: -token %q: want job=token\n", t)
			return 2
		}
		tok[job] = secret
	}
	if *durable && *dataDir == "" {
		*durable = false
	}
	srv, err := relay.NewServer(relay.Config{
		Tokens:             tok,
		Origins:            origins,
		DataDir:            *dataDir,
		CheckpointRounds:   *ckRounds,
		CheckpointInterval: *ckEvery,
		Durable:            *durable,
		Heartbeat:          *heartbeat,
		Timeout:            *timeout,
		RoundDeadline:      *deadline,
		Quorum:             *quorum,
		MinWorkers:         *workers,
		Shards:             shards,
		ShardIndex:         *shardIdx,
		TLSCert:            *tlsCert,
		TLSKey:             *tlsKey,
		MaxMessage:         *maxMsg,
		MaxConns:           *maxConns,
		MaxConnsPerJob:     *maxPerJob,
		MaxJobs:            *maxJobs,
		MaxKeys:            *maxKeys,
		WriteTimeout:       *wTimeout,
		IdleTimeout:        *idle,
		SendQueue:          *sendQueue,
		Updaters:           updaters(),
		Logger:             log,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "webkv relay: %v\n", err)
		return 1
	}
	url, err := srv.Listen(*listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "webkv relay: %v\n", err)
		srv.Shutdown(context.Background())
		return 1
	}
	// The URL on stdout is the readiness signal scripts and tests wait for.
	fmt.Printf("webkv relay listening on %s\n", url)
	log.Info("relay ready", "url", url, "data", *dataDir, "jobs", len(tok), "durable", *durable)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	code := 0
	select {
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
	case err := <-errc:
		if err != nil {
			log.Error("serve failed", "err", err)
			code = 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown", "err", err)
		code = 1
	}
	log.Info("relay stopped")
	return code
}
