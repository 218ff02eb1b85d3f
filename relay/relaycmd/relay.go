//go:build !js && !wasip1

package relaycmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/webkv/webkv/relay"
	"github.com/webkv/webkv/www/serve"
)

// Summary is the one-line description of the relay command.
const Summary = "run a relay (parameter server and scheduler for dist_* stores)"

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

// Run runs the relay command with args (the flags, without the command
// name) until SIGTERM or an interrupt, and returns the process exit code:
// 0 after a clean shutdown, 1 on a failure, 2 on a usage error.
func Run(args []string) int {
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
		workers   = fs.Int("workers", 0, "every job's worker count (MXNet's DMLC_NUM_WORKER): a job starts once that many joined, every worker sees it, a worker asking for another count is refused (0: the first worker of a job sets it)")
		shardIdx  = fs.Int("shard-index", 0, "this relay's index in -shards")
		tlsCert   = fs.String("tls-cert", "", "PEM certificate file (serve wss:// with -tls-key)")
		tlsKey    = fs.String("tls-key", "", "PEM key file")
		maxMsg    = fs.Int64("max-message", relay.DefaultMaxMessage, "largest accepted message in bytes (once authenticated)")
		maxConns  = fs.Int("max-conns", 1024, "largest number of authenticated connections")
		maxPerJob = fs.Int("max-conns-per-job", 256, "largest number of authenticated connections of one job")
		maxJobs   = fs.Int("max-jobs", 256, "largest number of jobs")
		maxKeys   = fs.Int("max-keys", 1<<16, "largest number of keys per job")
		idle      = fs.Duration("idle-timeout", 0, "close a connection from which nothing arrived this long (0: 3x -timeout, at least 2m)")
		wTimeout  = fs.Duration("write-timeout", 30*time.Second, "close a connection to which a write made no progress this long (the peer stopped reading)")
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
		static    = fs.String("static", "", "serve this page folder at / (precompressed .br/.gz twins, ETags; see wasm/js/build.sh)")
		tokens    listFlag
		shards    listFlag
		origins   listFlag
	)
	hard := relayHardening(fs)
	fs.Var(&tokens, "token", "job=token (repeatable); with none, any job may connect unauthenticated")
	fs.Var(&shards, "shards", "comma-separated URLs of every relay shard, in order (empty: one relay)")
	fs.Var(&origins, "origins", "comma-separated Origin hosts allowed for pages served from elsewhere than the relay; a host without a port allows every port of it (127.0.0.1 allows http://127.0.0.1:8000), host:port only that port; * wildcards (*.example.org)")
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
	cfg := relay.Config{
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
		Updaters:           updaters(),
		Build:              Version(),
		Logger:             log,
	}
	adminLn, err := hard.apply(&cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "webkv relay: %v\n", err)
		return 2
	}
	srv, err := relay.NewServer(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "webkv relay: %v\n", err)
		return 1
	}
	if *static != "" {
		if st, err := os.Stat(*static); err != nil || !st.IsDir() {
			fmt.Fprintf(os.Stderr, "webkv relay: -static %q is not a folder\n", *static)
			_ = srv.Shutdown(context.Background()) // nothing served yet
			return 2
		}
		srv.Handle("/", serve.Handler(os.DirFS(*static), nil))
	}
	url, err := srv.Listen(*listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "webkv relay: %v\n", err)
		_ = srv.Shutdown(context.Background()) // nothing served yet: the Listen error is the one to report
		return 1
	}
	if adminLn != "" {
		addr, err := serveAdmin(adminLn, srv, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "webkv relay: %v\n", err)
			srv.Shutdown(context.Background())
			return 1
		}
		fmt.Printf("webkv relay admin endpoints on http://%s\n", addr)
	}
	// The URL on stdout is the readiness signal scripts and tests wait for.
	fmt.Printf("webkv relay listening on %s\n", url)
	logReady(log, url, srv, &cfg)

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

// The relay's flags for running on the open internet (issue 8): identity,
// admission before authentication, budgets, flow control, admin
// endpoints, checkpoint quarantine. RATIONALE.md says why each default is
// what it is.
type hardFlags struct {
	workerTokens    listFlag
	adminToken      *string
	adminTokenFile  *string
	adminListen     *string
	helloTimeout    *time.Duration
	preAuthMessage  *int64
	maxPreAuth      *int
	maxPreAuthAddr  *int
	maxWorkers      *int
	maxElems        *int64
	maxJobBytes     *int64
	maxBytes        *int64
	maxReplyBytes   *int
	sendBuffer      *int64
	window          *int
	jobExpiry       *time.Duration
	clearQuarantine *bool
}

func relayHardening(fs *flag.FlagSet) *hardFlags {
	h := &hardFlags{
		adminToken:      fs.String("admin-token", "", "bearer token for the full /status and /metrics (job names, traffic); without it they show relay-wide figures only (also: $WEBKV_ADMIN_TOKEN)"),
		adminTokenFile:  fs.String("admin-token-file", "", "file holding the admin token (keeps it out of the process list)"),
		adminListen:     fs.String("admin-listen", "", "serve the full /status and /metrics without a token on this address (e.g. 127.0.0.1:7071), only for the operator"),
		helloTimeout:    fs.Duration("hello-timeout", relay.DefaultHelloTimeout, "a new connection must send its Hello within this"),
		preAuthMessage:  fs.Int64("preauth-message", relay.DefaultPreAuthMessage, "largest message accepted before a connection's Hello is accepted"),
		maxPreAuth:      fs.Int("max-preauth", relay.DefaultMaxPreAuth, "connections without a token at the upgrade whose Hello is not accepted yet (and refused browsers), in total"),
		maxPreAuthAddr:  fs.Int("max-preauth-per-addr", relay.DefaultMaxPreAuthPerAddr, "the same per remote address (-1: no per-address limit, e.g. behind a reverse proxy)"),
		maxWorkers:      fs.Int("max-workers", 0, "workers per job and the largest start barrier a worker may ask for (0: -max-conns-per-job)"),
		maxElems:        fs.Int64("max-elems", relay.DefaultMaxElems, "largest key (part) in elements"),
		maxJobBytes:     fs.Int64("max-job-bytes", relay.DefaultMaxJobBytes, "bytes of values, merge buffers, optimizer states and waiting inits per job"),
		maxBytes:        fs.Int64("max-bytes", relay.DefaultMaxBytes, "the same for all jobs together"),
		maxReplyBytes:   fs.Int("max-reply-bytes", 256<<10, "bytes of each worker's cache of answers (for retried requests)"),
		sendBuffer:      fs.Int64("send-buffer", relay.DefaultSendBuffer, "bytes of answers queued to a connection before the relay stops reading its requests (advertised as the window)"),
		window:          fs.Int("window", relay.DefaultWindow, "requests in flight per connection advertised to clients"),
		jobExpiry:       fs.Duration("job-expiry", 0, "delete a job without workers after this long (0: 15m on an open relay, never with tokens; negative: never)"),
		clearQuarantine: fs.Bool("clear-quarantine", false, "forget the jobs quarantined for a corrupt checkpoint (their data stays where it was found)"),
	}
	fs.Var(&h.workerTokens, "worker-token", "job/participant=token (repeatable): one token per participant, each admitting one worker at a time")
	return h
}

// apply sets cfg from the flags and returns the admin listen address.
func (h *hardFlags) apply(cfg *relay.Config) (string, error) {
	for _, t := range h.workerTokens {
		id, secret, ok := strings.Cut(t, "=")
		job, name, ok2 := strings.Cut(id, "/")
		if !ok || !ok2 || job == "" || name == "" || secret == "" {
			return "", fmt.Errorf("-worker-token %q: want job/participant=token", t)
		}
		if cfg.WorkerTokens == nil {
			cfg.WorkerTokens = map[string]map[string]string{}
		}
		if cfg.WorkerTokens[job] == nil {
			cfg.WorkerTokens[job] = map[string]string{}
		}
		cfg.WorkerTokens[job][name] = secret
	}
	tok := *h.adminToken
	if tok == "" {
		tok = os.Getenv("WEBKV_ADMIN_TOKEN")
	}
	if *h.adminTokenFile != "" {
		b, err := os.ReadFile(*h.adminTokenFile)
		if err != nil {
			return "", fmt.Errorf("-admin-token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
		if tok == "" {
			return "", errors.New("-admin-token-file: the file is empty")
		}
	}
	cfg.AdminToken = tok
	cfg.HelloTimeout = *h.helloTimeout
	cfg.PreAuthMessage = *h.preAuthMessage
	cfg.MaxPreAuth = *h.maxPreAuth
	cfg.MaxPreAuthPerAddr = *h.maxPreAuthAddr
	cfg.MaxWorkers = *h.maxWorkers
	cfg.MaxElems = *h.maxElems
	cfg.MaxJobBytes = *h.maxJobBytes
	cfg.MaxBytes = *h.maxBytes
	cfg.MaxReplyBytes = *h.maxReplyBytes
	cfg.SendBuffer = *h.sendBuffer
	cfg.Window = *h.window
	cfg.JobExpiry = *h.jobExpiry
	cfg.ClearQuarantine = *h.clearQuarantine
	return *h.adminListen, nil
}

// serveAdmin serves the relay's admin endpoints on addr until the process
// ends; it returns the bound address.
func serveAdmin(addr string, srv *relay.Server, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("-admin-listen %s: %w", addr, err)
	}
	hs := &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go hs.Serve(ln)
	return ln.Addr().String(), nil
}

// logReady writes the startup line: jobs counts the jobs the relay holds
// (restored from -data), not the tokens (token_jobs: jobs with a -token or
// -worker-token; quarantined: jobs refused for a corrupt checkpoint).
func logReady(log *slog.Logger, url string, srv *relay.Server, cfg *relay.Config) {
	st := srv.Status()
	named := map[string]bool{}
	for j := range cfg.Tokens {
		named[j] = true
	}
	for j := range cfg.WorkerTokens {
		named[j] = true
	}
	log.Info("relay ready", "url", url, "data", cfg.DataDir, "jobs", st.NumJobs, "quarantined", st.NumQuarantined,
		"token_jobs", len(named), "durable", cfg.Durable, "workers", cfg.MinWorkers, "version", Version())
}
