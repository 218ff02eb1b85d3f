//go:build !js && !wasip1

package relay

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/wire"
	"github.com/webkv/webkv/relay/internal/bufpool"
	"github.com/webkv/webkv/wasm/sandbox"
	"nhooyr.io/websocket"
)

// Config configures a relay Server. The zero value of every field has a
// working default (see withDefaults), except that a relay with no Tokens
// and no WorkerTokens accepts any job without authentication, which is
// meant for loopback development and logged as a warning. The package doc
// has the threat model these settings implement; RATIONALE.md says why
// each default is what it is.
type Config struct {
	// Tokens maps a job id to its access token. When non-empty (or with
	// WorkerTokens), only these jobs exist and every connection must
	// present its job's token (as a "webkv.token.<token>" subprotocol, a
	// token query parameter, or in the Hello message). A token given at
	// the upgrade replaces the Hello's.
	Tokens map[string]string
	// WorkerTokens maps a job id to per-participant tokens (participant
	// name -> token), for operators who hand out one token per
	// participant: each admits one worker at a time and resumes only its
	// own. They work beside or instead of the job's Tokens entry.
	WorkerTokens map[string]map[string]string
	// Origins are the Origin host patterns (path.Match syntax, e.g.
	// "example.com", "*.example.com", "localhost:8080") allowed besides
	// the relay's own host. A pattern without a port allows every port of
	// its hosts ("127.0.0.1" allows a page at http://127.0.0.1:8000); with
	// one, only that port. Requests without an Origin header (native
	// clients) are always allowed. A page from another origin is refused
	// inside the websocket (wire.CodeOrigin, close code 4403) with the
	// -origins value that would allow it.
	Origins []string
	// DataDir holds the checkpoint database; empty disables persistence.
	DataDir string
	// ClearQuarantine drops the record of jobs quarantined by an earlier
	// start (their checkpoint was corrupt), so their ids can be used again.
	// The corrupt data stays in the file it was found in.
	ClearQuarantine bool
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
	// Silence counts from the last byte received (a part of a message is
	// progress); a worker waiting for the start barrier is not silent.
	Heartbeat, Timeout time.Duration
	// RoundDeadline bounds a dist_sync round once Quorum is met: when it
	// passes, the round closes with the pushes it has.
	RoundDeadline time.Duration
	// Quorum is the minimum share of live workers (0 < q <= 1) or, when
	// > 1, the minimum count, that must have pushed for a round to close
	// at its deadline. 0 means all live workers.
	Quorum float64

	// MinWorkers is every job's worker count (MXNet's DMLC_NUM_WORKER):
	// Welcome answers wait until that many workers joined, every worker
	// sees it as its NumWorkers, and a worker asking for another count
	// (DialOptions.Workers) is refused (kvcore.ErrWorkerCount). 0: each
	// job's first worker sets its count (DialOptions.Workers, 0 for none:
	// NumWorkers then follows the membership).
	MinWorkers int

	// Shards lists the URLs of all relay shards of a sharded deployment;
	// ShardIndex is this relay's position in it. Empty means one relay.
	Shards     []string
	ShardIndex int

	// TLSCert and TLSKey are PEM file paths; when both are set the relay
	// serves wss:// (https).
	TLSCert, TLSKey string

	// Limits, checked before allocating.
	MaxMessage     int64 // bytes in one websocket message, once authenticated
	MaxKeys        int   // keys per job
	MaxElems       int64 // elements of one key (part)
	MaxConns       int   // authenticated connections in total
	MaxConnsPerJob int   // authenticated connections per job
	MaxWorkers     int   // workers per job, and the largest start barrier a Hello may ask for (default MaxConnsPerJob)
	MaxJobs        int   // jobs (an open relay creates one per new job id)

	// Budgets of memory for values, merge buffers, optimizer states and
	// waiting inits: MaxJobBytes per job, MaxBytes for all jobs together.
	// An init, set-optimizer or load-states that would exceed them is
	// refused (wire.CodeLimit).
	MaxJobBytes int64
	MaxBytes    int64
	// MaxReplyBytes bounds each worker's answer cache (exactly-once
	// answers for retried requests).
	MaxReplyBytes int

	// Before authentication. A connection that did not present a valid
	// token at the upgrade must send its Hello within HelloTimeout; until
	// the Hello is accepted its frames are capped at PreAuthMessage bytes
	// and it holds one of MaxPreAuth slots (MaxPreAuthPerAddr per remote
	// address; negative: no per-address limit, e.g. behind a reverse
	// proxy where every peer has the proxy's address), never one of the
	// slots authenticated peers need. Refused browsers hold one while
	// they read why.
	HelloTimeout      time.Duration
	PreAuthMessage    int64
	MaxPreAuth        int
	MaxPreAuthPerAddr int

	// IdleTimeout closes a connection from which no byte arrived for that
	// long (a half-open TCP connection, a peer that stopped without
	// closing). Default: 3*Timeout, at least 2 minutes.
	IdleTimeout time.Duration

	// Flow control. WriteTimeout closes a connection to which a write made
	// no progress for that long (the peer stopped reading). SendBuffer
	// bounds the bytes of answers queued to one connection: over it, the
	// relay handles none of that connection's requests until they drain
	// (back-pressure, never a disconnect). Welcomes advertise Window
	// requests and SendBuffer bytes in flight (wire.Welcome.Window,
	// WindowBytes), which a client keeps to.
	WriteTimeout time.Duration
	SendBuffer   int64
	Window       int

	// JobExpiry deletes a job (and its checkpoint) that has had no worker
	// for that long. Default: 15 minutes on an open relay (no tokens),
	// where anyone can create jobs; never on a relay with tokens.
	// Negative: never.
	JobExpiry time.Duration

	// AdminToken guards /status and /metrics: with it (Authorization:
	// Bearer <token>) they show every job; without it, only relay-wide
	// figures, no job names. AdminHandler serves the full view without a
	// token, for a separate listener (the webkv command's -admin-listen).
	// OpenAdmin serves the full view to anyone: only for a relay on
	// loopback (the demo).
	AdminToken string
	OpenAdmin  bool

	// Updaters configures custom updater modules (updaters.go).
	Updaters UpdaterConfig

	// Build describes the relay's build in /status (the webkv command
	// sets relaycmd.Version()).
	Build string

	Logger *slog.Logger
}

// Defaults; RATIONALE.md says why each is what it is.
const (
	DefaultMaxMessage        = 1<<30 + 4096
	DefaultMaxElems          = psm.DefaultMaxElems
	DefaultMaxJobBytes       = psm.DefaultMaxBytes
	DefaultMaxBytes          = 4 << 30
	DefaultHelloTimeout      = 5 * time.Second
	DefaultPreAuthMessage    = 64 << 10
	DefaultMaxPreAuth        = 256
	DefaultMaxPreAuthPerAddr = 16
	DefaultSendBuffer        = 64 << 20
	DefaultWindow            = 1024
	DefaultJobExpiry         = 15 * time.Minute
)

func (c Config) open() bool { return len(c.Tokens) == 0 && len(c.WorkerTokens) == 0 }

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
		c.MaxMessage = DefaultMaxMessage
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = 1 << 16
	}
	if c.MaxElems <= 0 {
		c.MaxElems = DefaultMaxElems
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
	if c.MaxWorkers <= 0 {
		c.MaxWorkers = c.MaxConnsPerJob
	}
	if c.MaxJobBytes <= 0 {
		c.MaxJobBytes = DefaultMaxJobBytes
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxReplyBytes <= 0 {
		c.MaxReplyBytes = psm.DefaultMaxReplyBytes
	}
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = DefaultHelloTimeout
	}
	if c.PreAuthMessage <= 0 {
		c.PreAuthMessage = DefaultPreAuthMessage
	}
	if c.MaxPreAuth <= 0 {
		c.MaxPreAuth = DefaultMaxPreAuth
	}
	if c.MaxPreAuthPerAddr == 0 {
		c.MaxPreAuthPerAddr = DefaultMaxPreAuthPerAddr
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = max(3*c.Timeout, 2*time.Minute)
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.SendBuffer <= 0 {
		c.SendBuffer = DefaultSendBuffer
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.JobExpiry == 0 && c.open() {
		c.JobExpiry = DefaultJobExpiry
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// relayMetrics are relay-wide counters (no job label).
type relayMetrics struct {
	refusedFull    atomic.Uint64 // upgrades refused: authenticated slots full
	refusedPreAuth atomic.Uint64 // upgrades refused: unauthenticated slots full
	refusedAuth    atomic.Uint64 // upgrades refused: bad token, unknown job
	refusedOrigin  atomic.Uint64 // upgrades refused: a browser's Origin is not allowed
	noHello        atomic.Uint64 // connections closed before a Hello was accepted
	expired        atomic.Uint64 // jobs deleted after the idle expiry
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
	epoch   time.Time // the monotonic base of peers' progress clocks
	budget  *psm.Budget
	rm      relayMetrics
	preM    jobMetrics // traffic of connections before their job is known
	slots   slots
	changes changes // the counts Status reports moved (admin.go)

	mu         sync.Mutex
	jobs       map[string]*job
	quarantine map[string]string // job -> why its checkpoint was not restored
	closed     bool

	nextID atomic.Uint64
	wg     sync.WaitGroup // job goroutines

	pmu      sync.Mutex
	live     map[*peer]struct{} // every connection, to close at Shutdown
	handlers sync.WaitGroup     // websocket handler goroutines

	httpSrv *http.Server
	ln      net.Listener

	metricsPublic, metricsFull http.Handler // metrics.go

	upd      *sandbox.Host // runs custom updater modules (updaters.go)
	ownUpd   bool
	compiles sync.WaitGroup // compileFirst goroutines

	hooks *testHooks // tests only
}

// NewServer opens the checkpoint database (when cfg.DataDir is set),
// restores every checkpointed job and returns a server ready to be mounted
// or started with ListenAndServe. A corrupt checkpoint file is an error
// naming the file; a corrupt job is quarantined (logged, listed in
// /status, refused) while the healthy ones start.
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
	for j, ps := range cfg.WorkerTokens {
		for name, t := range ps {
			if j == "" || name == "" || t == "" {
				return nil, fmt.Errorf("relay: worker token %q of job %q: empty job, participant or token", name, j)
			}
		}
	}
	if cfg.MinWorkers > cfg.MaxWorkers {
		return nil, fmt.Errorf("relay: -workers %d exceeds the %d workers a job may have", cfg.MinWorkers, cfg.MaxWorkers)
	}
	if cfg.PreAuthMessage > cfg.MaxMessage {
		cfg.PreAuthMessage = cfg.MaxMessage
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		mux:        http.NewServeMux(),
		jobs:       map[string]*job{},
		quarantine: map[string]string{},
		started:    time.Now(),
		epoch:      time.Now(),
		budget:     psm.NewBudget(cfg.MaxBytes),
		slots:      slots{perJob: map[string]int{}, preAddr: map[string]int{}},
		live:       map[*peer]struct{}{},
	}
	if cfg.open() {
		s.log.Warn("relay has no job tokens: any job may connect without authentication")
	}
	if err := s.openUpdaters(); err != nil {
		return nil, err
	}
	if cfg.DataDir != "" {
		if err := s.openData(); err != nil {
			s.closeUpdaters()
			return nil, err
		}
	}
	s.metricsPublic, s.metricsFull = s.metricsHandlers()
	s.mux.HandleFunc("/ws", s.serveWS)
	s.mux.HandleFunc("/metrics", s.serveMetrics)
	s.mux.HandleFunc("/status", s.serveStatus)
	jobs := func(w http.ResponseWriter, r *http.Request) { s.serveJobs(w, r, s.adminOK(r)) }
	s.mux.HandleFunc("/jobs", jobs)
	s.mux.HandleFunc("/jobs/", jobs)
	return s, nil
}

// openData opens the checkpoint database and restores its jobs; a job
// whose checkpoint does not restore is quarantined.
func (s *Server) openData() error {
	db, cks, quar, err := openCheckpointDB(s.cfg.DataDir, s.log, s.cfg.ClearQuarantine)
	if err != nil {
		return err
	}
	s.db = db
	for name, why := range quar {
		s.quarantine[name] = why
	}
	for name, ck := range cks {
		j, err := s.restoreJob(name, ck)
		if err != nil {
			why := fmt.Sprintf("checkpoint in %s does not restore: %v", db.path, err)
			s.log.Error("job quarantined", "job", name, "file", db.path, "err", err)
			if err := db.quarantine(name, why); err != nil {
				s.closeJobs()
				db.close()
				return err
			}
			s.quarantine[name] = why
			continue
		}
		s.jobs[name] = j
		s.log.Info("job restored", "job", name, "round", ck.Round, "checkpoint_time", ck.Time)
	}
	for name, why := range s.quarantine {
		s.log.Error("job quarantined: connections to it are refused until the relay is started with -clear-quarantine", "job", name, "reason", why)
	}
	return nil
}

// closeJobs stops the jobs started so far (a failed start).
func (s *Server) closeJobs() {
	for _, j := range s.jobs {
		j.stop()
	}
	s.wg.Wait()
	s.jobs = map[string]*job{}
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
	// Connections not (or no longer) in a job: handshakes in progress.
	s.pmu.Lock()
	for p := range s.live {
		p.close(websocket.StatusGoingAway, errShuttingDown)
	}
	s.live = nil
	s.pmu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); s.handlers.Wait(); close(done) }()
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

// knownJob reports whether a relay with tokens has job.
func (s *Server) knownJob(job string) bool {
	_, ok := s.cfg.Tokens[job]
	return ok || len(s.cfg.WorkerTokens[job]) > 0
}

// checkToken reports whether tok admits someone to job (its token or one
// of its participants'), in constant time per token.
func (s *Server) checkToken(job, tok string) error {
	if !s.knownJob(job) {
		return fmt.Errorf("unknown job %s", quote(job))
	}
	ok := false
	if want, has := s.cfg.Tokens[job]; has && subtle.ConstantTimeCompare([]byte(want), []byte(tok)) == 1 {
		ok = true
	}
	for _, want := range s.cfg.WorkerTokens[job] {
		if subtle.ConstantTimeCompare([]byte(want), []byte(tok)) == 1 {
			ok = true
		}
	}
	if !ok {
		return fmt.Errorf("wrong or missing token for job %s", quote(job))
	}
	return nil
}

func (s *Server) quarantined(job string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quarantine[job]
}

// track registers a live connection (false after Shutdown).
func (s *Server) track(p *peer) bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.live == nil {
		return false
	}
	s.live[p] = struct{}{}
	s.handlers.Add(1)
	return true
}

func (s *Server) untrack(p *peer) {
	s.pmu.Lock()
	delete(s.live, p)
	s.pmu.Unlock()
	p.close(websocket.StatusNormalClosure, nil)
	s.handlers.Done()
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("job")
	if err := checkJobName(name); err != nil {
		httpRefuse(w, http.StatusBadRequest, err)
		return
	}
	browser := r.Header.Get("Origin") != ""
	if err := s.checkOrigin(r); err != nil {
		// Before any token: a page from an origin the operator did not
		// allow learns why (a 403 would look like a relay that is down).
		s.rm.refusedOrigin.Add(1)
		s.log.Warn("connection refused", "job", name, "remote", r.RemoteAddr, "err", err)
		s.refuseBrowser(w, r, wire.CodeOrigin, err)
		return
	}
	// A token given at upgrade is checked here, before anything is
	// allocated for the connection; a connection without one must
	// present it in its Hello.
	tok := tokenFrom(r)
	authed := false
	var refused error
	if !s.cfg.open() {
		switch {
		case !s.knownJob(name):
			refused = fmt.Errorf("unknown job %s", quote(name))
		case tok != "":
			refused = s.checkToken(name, tok)
			authed = refused == nil
		case browser:
			// A browser cannot put the token in its Hello later (webkv.js
			// offers it as a subprotocol): refuse now, where it can see why.
			refused = fmt.Errorf("missing token for job %s", quote(name))
		}
	}
	if refused != nil {
		s.rm.refusedAuth.Add(1)
		s.log.Warn("connection refused", "job", name, "remote", r.RemoteAddr, "err", refused)
		if browser {
			s.refuseBrowser(w, r, wire.CodeAuth, refused)
			return
		}
		httpRefuse(w, http.StatusForbidden, refused)
		return
	}
	if why := s.quarantined(name); why != "" {
		err := fmt.Errorf("job %s is quarantined: %s", quote(name), why)
		if browser {
			s.refuseBrowser(w, r, wire.CodeClosed, err)
			return
		}
		httpRefuse(w, http.StatusServiceUnavailable, err)
		return
	}
	var sl *slot
	var err error
	if authed {
		sl, err = s.admitAuthed(name)
	} else {
		sl, err = s.admitPreAuth(r.RemoteAddr)
	}
	if err != nil {
		httpRefuse(w, http.StatusServiceUnavailable, err)
		return
	}
	defer sl.release()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{Subprotocol},
		// checkOrigin decided the Origin above.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		// Accept has already written the HTTP error.
		s.log.Warn("websocket upgrade refused", "job", name, "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "err", err)
		return
	}
	ws.SetReadLimit(s.cfg.PreAuthMessage)
	p := newPeer(s.nextID.Add(1), ws, r.RemoteAddr, &s.preM, s.epoch, s.cfg.SendBuffer)
	p.log = s.log.With("job", name)
	p.authed, p.token = authed, tok
	p.deadline.Store(p.clock() + int64(s.cfg.HelloTimeout))
	s.log.Debug("peer connected", "job", name, "peer", p.id, "remote", p.remote)
	if !s.track(p) {
		p.close(websocket.StatusGoingAway, errShuttingDown)
		return
	}
	defer s.untrack(p)
	go p.writeLoop()
	go p.watch(s.cfg.IdleTimeout, s.cfg.WriteTimeout)
	s.servePeer(p, name, sl)
}

// servePeer runs the handshake of a new connection, then its job's reader.
func (s *Server) servePeer(p *peer, name string, sl *slot) {
	hello, err := s.readHello(p, name)
	if err != nil {
		s.rm.noHello.Add(1)
		var we *wire.Error
		if errors.As(err, &we) {
			p.log.Warn("bad handshake; closing connection", "peer", p.id, "remote", p.remote, "err", err)
			refuse(p, we, s.cfg.WriteTimeout)
		} else {
			p.close(websocket.StatusPolicyViolation, err)
		}
		return
	}
	// The peer did its part; from here on the relay holds it (a busy job
	// may take a while to judge the Hello): that is not the peer's silence.
	p.deadline.Store(0)
	if err := sl.promote(name); err != nil {
		bufpool.Put(hello)
		refuse(p, wire.Errorf(wire.CodeLimit, "%v", err), s.cfg.WriteTimeout)
		return
	}
	// Only now, with a well-formed Hello in hand, may a job be created.
	j, err := s.jobFor(name)
	if err != nil {
		bufpool.Put(hello)
		code := wire.CodeLimit
		if errors.Is(err, errShuttingDown) || errors.Is(err, ErrJobWiping) {
			code = wire.CodeClosed
		}
		refuse(p, wire.Errorf(code, "%v", err), s.cfg.WriteTimeout)
		return
	}
	defer s.unuse(j)
	j.m.conns.Add(1)
	s.changes.note()
	defer func() {
		j.m.conns.Add(-1)
		s.changes.note()
	}()
	j.serve(p, hello, func() {
		// Accepted: the full frame size from now on.
		p.lastRead.Store(p.clock())
		p.ws.SetReadLimit(s.cfg.MaxMessage)
	})
}

// readHello reads a new connection's first frame, which must be a Hello
// for job name, within the Hello deadline (the watchdog's) and the
// pre-authentication frame cap.
func (s *Server) readHello(p *peer, name string) (*[]byte, error) {
	lim := s.limits()
	lim.MaxPayload = int(s.cfg.PreAuthMessage) - wire.HeaderSize
	var hdr [wire.HeaderSize]byte
	b, h, err := readFrame(p, &lim, hdr[:], func(n int) bool { return p.acquire(n) })
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeLimit {
			err = wire.Errorf(wire.CodeLimit, "%s before the Hello was accepted (the first message of a connection is at most %d bytes)", we.Msg, s.cfg.PreAuthMessage)
		}
		if p.closedReason() != nil {
			return nil, p.closedReason()
		}
		return nil, err
	}
	p.release(len(*b)) // the job acquires it again when it is posted
	fail := func(err error) (*[]byte, error) {
		bufpool.Put(b)
		return nil, err
	}
	if h.Type != wire.TypeHello {
		return fail(wire.Errorf(wire.CodeNotJoined, "%v before the handshake: the first message on a connection must be a Hello", h.Type))
	}
	hl, err := wire.DecodeHello((*b)[wire.HeaderSize:], &lim)
	if err != nil {
		return fail(err)
	}
	if hl.Job != name {
		return fail(wire.Errorf(wire.CodeBadRequest, "hello names job %s on a connection for job %s", quote(hl.Job), quote(name)))
	}
	s.preM.msgsIn.Add(1)
	s.preM.bytesIn.Add(uint64(len(*b)))
	return b, nil
}

// refuseBrowser refuses a browser's connection so that the page learns
// why and stops: browsers hide an HTTP refusal's status and body from the
// page (a 403 looks like a relay that is down, which a client retries), so
// the upgrade is accepted, an Error (code, seq 0) sent, and the
// connection held until the client closes it (at most refuseLinger): a
// close right after the Error could reach the page's reader first. Then
// the relay closes with an application close code (closeCode: 4401 for a
// token or job refusal, 4403 for an Origin) and the reason, cut to what a
// close frame holds, for pages that read CloseEvent.code and .reason
// without webkv's runtime. The client treats a seq-0 Error as final. It
// holds an unauthenticated slot meanwhile, so refused browsers cannot
// fill the slots honest peers need.
func (s *Server) refuseBrowser(w http.ResponseWriter, r *http.Request, code wire.Code, why error) {
	sl, err := s.admitPreAuth(r.RemoteAddr)
	if err != nil {
		httpRefuse(w, http.StatusServiceUnavailable, err)
		return
	}
	defer sl.release()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:       []string{Subprotocol},
		InsecureSkipVerify: true, // the refusal itself must reach any origin
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept wrote the HTTP error
	}
	ws.SetReadLimit(1 << 10)
	ctx, cancel := context.WithTimeout(r.Context(), refuseLinger)
	defer cancel()
	text := refusedPrefix + why.Error()
	msg := wire.AppendError(nil, 0, code, text)
	if err := ws.Write(ctx, websocket.MessageBinary, msg); err != nil {
		ws.CloseNow()
		return
	}
	// Wait for the client's close (its reads are discarded), at most
	// refuseLinger; then close with the code (the library bounds the
	// close handshake), which also ends the reader.
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	select {
	case <-read:
	case <-ctx.Done():
	}
	ws.Close(closeCode(code), closeReason(code, text))
	ws.CloseNow()
	<-read
}

// refusedPrefix starts every refusal's text, in the HTTP body (native
// clients) and in the Error frame (browsers) alike, so that both read the
// same words.
const refusedPrefix = "webkv relay refused the connection: "

// Application close codes of a refused browser connection (RFC 6455
// reserves 4000-4999 for applications): 4400 + the HTTP status a native
// client gets for the same refusal.
const (
	closeAuth   websocket.StatusCode = 4401 // wrong or missing token, unknown job
	closeOrigin websocket.StatusCode = 4403 // the page's Origin is not allowed
	closeOther  websocket.StatusCode = 4400 // any other refusal (quarantined job)
)

func closeCode(c wire.Code) websocket.StatusCode {
	switch c {
	case wire.CodeAuth:
		return closeAuth
	case wire.CodeOrigin:
		return closeOrigin
	}
	return closeOther
}

// closeReason is "<code name>: <text>" cut to the 123 bytes a close frame
// holds, at a UTF-8 boundary.
func closeReason(c wire.Code, text string) string {
	r := c.String() + ": " + strings.TrimPrefix(text, refusedPrefix)
	if len(r) <= 123 {
		return r
	}
	r = r[:123]
	for !utf8.ValidString(r) {
		r = r[:len(r)-1]
	}
	return r
}

// refuseLinger bounds how long a refused browser connection is held for
// its client to read the Error and close.
const refuseLinger = 5 * time.Second

var errShuttingDown = errors.New("relay is shutting down")

// jobFor returns job name, created if need be, and holds it (see unuse).
func (s *Server) jobFor(name string) (*job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errShuttingDown
	}
	if why := s.quarantine[name]; why != "" {
		return nil, fmt.Errorf("job %s is quarantined: %s", quote(name), why)
	}
	if j, ok := s.jobs[name]; ok {
		if j.wiping {
			return nil, fmt.Errorf("job %s: %w", quote(name), ErrJobWiping)
		}
		j.users++
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
	j.users++
	s.changes.note()
	return j, nil
}

// unuse lets go of a job held by jobFor; the job re-checks whether it may
// be dropped once nobody holds it.
func (s *Server) unuse(j *job) {
	s.mu.Lock()
	j.users--
	idle := j.users == 0
	s.mu.Unlock()
	if idle {
		j.kick()
	}
}

// dropJob removes j from the server if nobody holds it; the job goroutine
// calls it when the job is idle (expired, or holding nothing).
func (s *Server) dropJob(j *job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.users > 0 || s.closed || s.jobs[j.name] != j {
		return false
	}
	delete(s.jobs, j.name)
	if j.expired {
		s.rm.expired.Add(1)
	}
	s.changes.note()
	return true
}

// quote quotes a peer-given string for a message, cut to 64 bytes.
func quote(s string) string {
	if len(s) <= 64 {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:64]) + fmt.Sprintf("...(%d bytes)", len(s))
}
