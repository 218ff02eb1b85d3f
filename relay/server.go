//go:build !js && !wasip1

package relay

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
	"github.com/webkv/webkv/wasm/sandbox"
	"nhooyr.io/websocket"
)

// Config configures a relay Server. The zero value of every field has a
// working default (see withDefaults), except that a relay with no Tokens
// accepts any job without authentication, which is meant for loopback
// development and logged as a warning.
type Config struct {
	// Tokens maps a job id to its access token. When non-empty, only these
	// jobs exist and every connection must present its job's token (as a
	// "webkv.token.<token>" subprotocol, a token query parameter, or in
	// the Hello message).
	Tokens map[string]string
	// Origins are the Origin host patterns (path.Match syntax, e.g.
	// "example.com", "*.example.com", "localhost:8080") allowed besides
	// the relay's own host. Requests without an Origin header (native
	// clients) are always allowed.
	Origins []string
	// DataDir holds the checkpoint database; empty disables persistence.
	DataDir string
	// CheckpointRounds and CheckpointInterval trigger a checkpoint after
	// that many closed rounds or that much time with changes, whichever
	// comes first. Durable (below) checkpoints before every ack instead.
	CheckpointRounds   int
	CheckpointInterval time.Duration
	// Durable holds every acknowledgement that follows a state change
	// until a checkpoint containing that change is committed (group
	// commit: one transaction per job-goroutine turn). Without it, a
	// kill -9 can lose the updates acknowledged since the last periodic
	// checkpoint. Every acknowledged round then costs one snapshot write
	// (the whole job state, fsynced), which is the price of the guarantee;
	// big models may prefer periodic checkpoints. The webkv command turns
	// it on whenever -data is given.
	Durable bool

	// Heartbeat is the interval workers are told to ping at; Timeout is the
	// silence after which a worker is removed from its job's rounds.
	Heartbeat, Timeout time.Duration
	// RoundDeadline bounds a dist_sync round once Quorum is met: when it
	// passes, the round closes with the pushes it has.
	RoundDeadline time.Duration
	// Quorum is the minimum share of live workers (0 < q <= 1) or, when
	// > 1, the minimum count, that must have pushed for a round to close
	// at its deadline. 0 means all live workers.
	Quorum float64

	// MinWorkers holds every job's Welcome answers until that many workers
	// joined (MXNet's DMLC_NUM_WORKER start barrier); a Hello may ask for
	// more (DialOptions.Workers). 0: none.
	MinWorkers int

	// Shards lists the URLs of all relay shards of a sharded deployment;
	// ShardIndex is this relay's position in it. Empty means one relay.
	Shards     []string
	ShardIndex int

	// TLSCert and TLSKey are PEM file paths; when both are set the relay
	// serves wss:// (https).
	TLSCert, TLSKey string

	// Limits, checked before allocating.
	MaxMessage     int64 // bytes in one websocket message
	MaxKeys        int   // keys per job
	MaxElems       int64 // elements of one key
	MaxConns       int   // connections in total
	MaxConnsPerJob int   // connections per job
	MaxJobs        int   // jobs (an open relay creates one per new job id)

	// IdleTimeout closes a connection that sent nothing for that long (a
	// half-open TCP connection, a peer that stopped without closing); it
	// also bounds the transfer of one message. Default: 3*Timeout, at
	// least 2 minutes.
	IdleTimeout time.Duration

	// WriteTimeout bounds each message write; SendQueue is the number of
	// messages queued per connection before it is closed as too slow.
	WriteTimeout time.Duration
	SendQueue    int

	// Updaters configures custom updater modules (updaters.go).
	Updaters UpdaterConfig

	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Heartbeat <= 0 {
		c.Heartbeat = 2 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.RoundDeadline <= 0 {
		c.RoundDeadline = 30 * time.Second
	}
	if c.CheckpointRounds <= 0 {
		c.CheckpointRounds = 100
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = 30 * time.Second
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = 1 << 30
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = 1 << 16
	}
	if c.MaxElems <= 0 {
		c.MaxElems = 1 << 28
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 1024
	}
	if c.MaxJobs <= 0 {
		c.MaxJobs = 256
	}
	if c.MaxConnsPerJob <= 0 {
		c.MaxConnsPerJob = 256
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = max(3*c.Timeout, 2*time.Minute)
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 64
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Server is a relay: an http.Handler serving the websocket endpoint /ws,
// /metrics, /status and whatever is mounted with Handle (the www/ app on
// "/").
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	db      *checkpointDB
	started time.Time

	mu     sync.Mutex
	jobs   map[string]*job
	closed bool

	conns  atomic.Int64
	nextID atomic.Uint64
	wg     sync.WaitGroup // job goroutines

	httpSrv *http.Server
	ln      net.Listener

	upd      *sandbox.Host // runs custom updater modules (updaters.go)
	ownUpd   bool
	compiles sync.WaitGroup // compileFirst goroutines
}

// NewServer opens the checkpoint database (when cfg.DataDir is set),
// restores every checkpointed job and returns a server ready to be mounted
// or started with ListenAndServe.
func NewServer(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.Quorum < 0 {
		return nil, fmt.Errorf("relay: quorum %g must be >= 0", cfg.Quorum)
	}
	if len(cfg.Shards) > 0 && (cfg.ShardIndex < 0 || cfg.ShardIndex >= len(cfg.Shards)) {
		return nil, fmt.Errorf("relay: shard index %d outside the %d shards", cfg.ShardIndex, len(cfg.Shards))
	}
	for j, t := range cfg.Tokens {
		if j == "" || t == "" {
			return nil, fmt.Errorf("relay: token for job %q is empty", j)
		}
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		mux:     http.NewServeMux(),
		jobs:    map[string]*job{},
		started: time.Now(),
	}
	if len(cfg.Tokens) == 0 {
		s.log.Warn("relay has no job tokens: any job may connect without authentication")
	}
	if err := s.openUpdaters(); err != nil {
		return nil, err
	}
	if cfg.DataDir != "" {
		db, err := openCheckpointDB(cfg.DataDir)
		if err != nil {
			s.closeUpdaters()
			return nil, err
		}
		s.db = db
		cks, err := db.load()
		if err != nil {
			db.close()
			s.closeUpdaters()
			return nil, err
		}
		for name, ck := range cks {
			j, err := s.restoreJob(name, ck)
			if err != nil {
				db.close()
				s.closeUpdaters()
				return nil, fmt.Errorf("relay: restore job %q: %w", name, err)
			}
			s.jobs[name] = j
			s.log.Info("job restored", "job", name, "round", ck.Round, "checkpoint_time", ck.Time)
		}
	}
	s.mux.HandleFunc("/ws", s.serveWS)
	s.mux.HandleFunc("/metrics", s.serveMetrics)
	s.mux.HandleFunc("/status", s.serveStatus)
	return s, nil
}

// Handle mounts h at pattern (http.ServeMux syntax), e.g. the browser app
// at "/". /ws, /metrics and /status are taken.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleFS serves fsys at "/" (the embedded www/ app).
func (s *Server) HandleFS(fsys fs.FS) { s.mux.Handle("/", http.FileServerFS(fsys)) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Listen binds addr (host:port, port 0 picks one) and returns the relay's
// base URL (ws:// or wss://). Serve must be called to accept connections.
func (s *Server) Listen(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("relay: listen %s: %w", addr, err)
	}
	s.ln = ln
	scheme := "ws"
	if s.cfg.TLSCert != "" || s.cfg.TLSKey != "" {
		if s.cfg.TLSCert == "" || s.cfg.TLSKey == "" {
			ln.Close()
			return "", errors.New("relay: TLS needs both a certificate and a key")
		}
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return "", fmt.Errorf("relay: TLS: %w", err)
		}
		s.ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		scheme = "wss"
	}
	s.httpSrv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return scheme + "://" + ln.Addr().String(), nil
}

// Serve accepts connections until Shutdown; it returns nil after a clean
// shutdown.
func (s *Server) Serve() error {
	if s.httpSrv == nil {
		return errors.New("relay: Serve before Listen")
	}
	err := s.httpSrv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, stops every job, writes a final
// checkpoint of each and closes the database. In-flight dist_sync rounds
// are checkpointed as they stand; their workers resend on reconnect.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	jobs := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	var errs []error
	if s.httpSrv != nil {
		// Stop the listener first; hijacked websocket conns are closed by
		// the jobs below.
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		if err := s.httpSrv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			errs = append(errs, err)
		}
		cancel()
	}
	for _, j := range jobs {
		j.stop()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("relay: shutdown: %w", ctx.Err()))
	}
	for _, j := range jobs {
		if err := j.stopErr(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.db != nil {
		if err := s.db.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.closeUpdaters(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkToken compares in constant time. An empty want means an open relay.
func (s *Server) checkToken(job, got string) error {
	if len(s.cfg.Tokens) == 0 {
		return nil
	}
	want, ok := s.cfg.Tokens[job]
	if !ok {
		return fmt.Errorf("unknown job %q", job)
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
		return fmt.Errorf("wrong or missing token for job %q", job)
	}
	return nil
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	job := r.URL.Query().Get("job")
	if job == "" {
		http.Error(w, "webkv relay: missing job query parameter", http.StatusBadRequest)
		return
	}
	if len(job) > 256 {
		http.Error(w, "webkv relay: job id too long", http.StatusBadRequest)
		return
	}
	// A token given at upgrade is checked here, before anything is
	// allocated for the connection; a connection without one must
	// present it in its Hello.
	tok := tokenFrom(r)
	var refused error
	if tok != "" {
		refused = s.checkToken(job, tok)
	} else if len(s.cfg.Tokens) > 0 {
		if _, ok := s.cfg.Tokens[job]; !ok {
			refused = fmt.Errorf("unknown job %q", job)
		} else if r.Header.Get("Origin") != "" {
			// A browser cannot put the token in its Hello later (webkv.js
			// offers it as a subprotocol): refuse now, where it can see why.
			refused = fmt.Errorf("missing token for job %q", job)
		}
	}
	if refused != nil {
		s.log.Warn("connection refused", "job", job, "remote", r.RemoteAddr, "err", refused)
		if r.Header.Get("Origin") != "" {
			s.refuseBrowser(w, r, refused)
			return
		}
		http.Error(w, "webkv relay: "+refused.Error(), http.StatusForbidden)
		return
	}
	if n := s.conns.Add(1); n > int64(s.cfg.MaxConns) {
		s.conns.Add(-1)
		http.Error(w, "webkv relay: too many connections", http.StatusServiceUnavailable)
		return
	}
	defer s.conns.Add(-1)
	j, err := s.jobFor(job)
	if err != nil {
		http.Error(w, "webkv relay: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if n := j.m.conns.Add(1); n > int64(s.cfg.MaxConnsPerJob) {
		j.m.conns.Add(-1)
		http.Error(w, "webkv relay: too many connections for this job", http.StatusServiceUnavailable)
		return
	}
	defer j.m.conns.Add(-1)

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:    []string{Subprotocol},
		OriginPatterns:  s.cfg.Origins,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		// Accept has already written the HTTP error (403 for a bad Origin).
		s.log.Warn("websocket upgrade refused", "job", job, "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "err", err)
		return
	}
	ws.SetReadLimit(s.cfg.MaxMessage)
	p := newPeer(s.nextID.Add(1), ws, r.RemoteAddr, j.m, s.cfg.SendQueue)
	p.log = j.log
	p.authed = tok != ""
	s.log.Debug("peer connected", "job", job, "peer", p.id, "remote", p.remote)
	go p.writeLoop(s.cfg.WriteTimeout)
	j.serve(p)
}

// refuseBrowser refuses a browser's connection so that the page learns
// why and stops: browsers hide an HTTP refusal's status and body from the
// page (a 403 looks like a relay that is down, which a client retries), so
// the upgrade is accepted, an Error (wire.CodeAuth, seq 0) sent, and the
// connection held until the client closes it (at most refuseLinger): a
// close right after the Error could reach the page's reader first. The
// client treats a seq-0 Error as final.
func (s *Server) refuseBrowser(w http.ResponseWriter, r *http.Request, why error) {
	if n := s.conns.Add(1); n > int64(s.cfg.MaxConns) {
		s.conns.Add(-1)
		http.Error(w, "webkv relay: too many connections", http.StatusServiceUnavailable)
		return
	}
	defer s.conns.Add(-1)
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:    []string{Subprotocol},
		OriginPatterns:  s.cfg.Origins,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept wrote the HTTP error (a bad Origin)
	}
	ctx, cancel := context.WithTimeout(r.Context(), refuseLinger)
	defer cancel()
	msg := wire.AppendError(nil, 0, wire.CodeAuth, "webkv relay refused the connection: "+why.Error())
	if err := ws.Write(ctx, websocket.MessageBinary, msg); err != nil {
		ws.CloseNow()
		return
	}
	// Wait for the client's close (its reads are discarded).
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			break
		}
	}
	ws.Close(websocket.StatusPolicyViolation, "refused")
}

// refuseLinger bounds how long a refused browser connection is held for
// its client to read the Error and close.
const refuseLinger = 10 * time.Second

func (s *Server) jobFor(name string) (*job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("relay is shutting down")
	}
	if j, ok := s.jobs[name]; ok {
		return j, nil
	}
	if len(s.jobs) >= s.cfg.MaxJobs {
		return nil, fmt.Errorf("too many jobs (%d)", s.cfg.MaxJobs)
	}
	j, err := s.newJob(name)
	if err != nil {
		return nil, err
	}
	s.jobs[name] = j
	return j, nil
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ms := make(map[string]*jobMetrics, len(s.jobs))
	sts := make(map[string]JobStatus, len(s.jobs))
	for n, j := range s.jobs {
		ms[n] = j.m
		sts[n] = j.status()
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	writeMetrics(w, ms, s.conns.Load(), s.started)
	writeStateMetrics(w, sts)
}

// JobStatus is one job in /status.
type JobStatus struct {
	Job         string    `json:"job"`
	Mode        string    `json:"mode,omitempty"`
	LiveWorkers int64     `json:"live_workers"`
	Connections int64     `json:"connections"`
	Keys        int       `json:"keys"`
	Rounds      uint64    `json:"rounds"`
	Updates     uint64    `json:"updates"`
	LatePushes  uint64    `json:"late_pushes"`
	Rescaled    uint64    `json:"rescaled_rounds"`
	Duplicates  uint64    `json:"duplicate_requests"`
	Removed     uint64    `json:"removed_workers"`
	Pushes      uint64    `json:"pushes"`
	Pulls       uint64    `json:"pulls"`
	BytesIn     uint64    `json:"bytes_in"`
	BytesOut    uint64    `json:"bytes_out"`
	Checkpoints uint64    `json:"checkpoints"`
	LastCkpt    time.Time `json:"last_checkpoint,omitzero"`
}

// Status is the /status document.
type Status struct {
	Version     string      `json:"version"`
	Uptime      float64     `json:"uptime_seconds"`
	Connections int64       `json:"connections"`
	Shards      []string    `json:"shards,omitempty"`
	ShardIndex  int         `json:"shard_index"`
	Persistent  bool        `json:"persistent"`
	Jobs        []JobStatus `json:"jobs"`
}

// Status returns what /status serves.
func (s *Server) Status() Status {
	s.mu.Lock()
	jobs := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	st := Status{
		Version:     Subprotocol,
		Uptime:      time.Since(s.started).Seconds(),
		Connections: s.conns.Load(),
		Shards:      s.cfg.Shards,
		ShardIndex:  s.cfg.ShardIndex,
		Persistent:  s.db != nil,
		Jobs:        []JobStatus{},
	}
	for _, j := range jobs {
		st.Jobs = append(st.Jobs, j.status())
	}
	sort.Slice(st.Jobs, func(a, b int) bool { return st.Jobs[a].Job < st.Jobs[b].Job })
	return st
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s.Status())
}
