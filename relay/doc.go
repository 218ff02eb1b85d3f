// Package relay is webkv's parameter server over websockets
// (nhooyr.io/websocket v1.8.17) and its Go client.
//
// # Server
//
// A Server hosts many independent jobs. Each job is a psm.Job (the
// parameter server as a deterministic state machine, package kvcore/psm)
// owned by one goroutine: connection readers hand it frames, a timer hands
// it ticks, and it carries out what the state machine returns. Identity,
// membership and budgets are decided in psm; the server carries out its
// verdicts and owns connections, bytes and time.
//
// Endpoints: /ws?job=<id> (the websocket, subprotocol "webkv.1"), /metrics
// (Prometheus, through prometheus/client_golang: go_*, process_*,
// go_build_info and webkv_*), /status (JSON, below), /jobs (list, reset and
// delete jobs; see Server.Jobs), and whatever is mounted with Handle or
// HandleFS (the browser app on "/"). AdminHandler serves /metrics, /status
// and /jobs with every job for a separate listener.
//
// # /status
//
// GET /status answers one JSON object (the Status type; the public view,
// without the admin credential, leaves out "shards", "jobs" and
// "quarantined"):
//
//	version              string   wire protocol ("webkv.1")
//	build                string   the relay's build (relaycmd.Version: module version, revision, Go)
//	uptime_seconds       number   since the relay started
//	connections          integer  open websocket connections (authenticated and not)
//	preauth_connections  integer  of which the Hello is not accepted yet
//	shards               [string] every shard's URL (sharded relays)
//	shard_index          integer  this relay's position in shards
//	persistent           bool     a data directory keeps checkpoints
//	num_jobs             integer  jobs in memory
//	num_quarantined      integer  jobs refused for a corrupt checkpoint
//	budget_bytes         integer  bytes of the relay's budget in use
//	jobs                 [object] one per job, sorted by id:
//	  job                string   its id
//	  mode               string   "sync" or "async" (absent before the first worker)
//	  run                integer  its run (a run starts when a worker joins a job without any)
//	  workers            integer  its worker count (the relay's -workers or its first worker's; 0: none)
//	  live_workers       integer  members now
//	  connections        integer  open connections
//	  keys               integer  keys (parts on this shard)
//	  rounds             integer  dist_sync rounds closed, summed over keys
//	  updates            integer  updates applied (rounds, async pushes)
//	  late_pushes        integer  pushes that came after their round closed
//	  rescaled_rounds    integer  rounds closed at the deadline without every worker
//	  duplicate_requests integer  retried requests answered from the cache
//	  removed_workers    integer  workers removed (silence, leave)
//	  pushes, pulls      integer  requests received
//	  bytes_in, bytes_out integer message bytes
//	  checkpoints        integer  checkpoints written
//	  last_checkpoint    string   RFC 3339 time of the last one (absent before)
//	  budget_bytes       integer  bytes of the job's budget in use
//	  flow_stalls        integer  times a connection's requests waited for its answers to drain
//	  aggregate          string   the job's aggregation rule (sum, mean, median, trimmed-mean=f[,clip=C]; absent: sum)
//	  non_finite_pushes  integer  pushes refused for holding NaN or Inf (never aggregated)
//	quarantined          [object] {job, reason}: jobs refused until deleted (DELETE /jobs/{job}) or -clear-quarantine
//
// TestStatusSchemaDocumented keeps this list and the types in step.
//
// # Threat model: who is trusted with what
//
// The relay is where browser tabs on home connections meet, so it assumes
// any peer on the internet may be hostile, and honest peers may be slow or
// bursty.
//
//   - Anyone (no token): may open connections and learn that a relay runs
//     (the public /status and /metrics show relay-wide figures, never job
//     names). Such a connection is cheap and short-lived: it holds one of a
//     small, separate budget of slots (Config.MaxPreAuth, and
//     MaxPreAuthPerAddr per remote address) and never one of the slots
//     authenticated peers need; its first message must be a Hello, within
//     Config.HelloTimeout and Config.PreAuthMessage bytes (64 KiB, checked
//     from its header, before a buffer is taken); anything else closes it.
//     A refused browser holds such a slot for at most 5 s while it reads
//     why. On a relay without tokens (an "open" relay, meant for loopback
//     and trusted networks) anyone is a job member as below; limits and
//     idle expiry (Config.JobExpiry) keep it up against accidents and cheap
//     floods, not against a determined attacker with many addresses.
//   - A holder of a job's token (Config.Tokens): may join that job as a
//     new worker and use its budgets: keys, elements and bytes of values
//     and optimizer states (Config.MaxKeys, MaxElems, MaxJobBytes), workers
//     and the start barrier (MaxWorkers), connections (MaxConnsPerJob), its
//     answer cache (MaxReplyBytes). It can slow its own job (a worker that
//     never pushes holds dist_sync rounds until its silence timeout or the
//     round deadline), which is inherent to synchronous training; it cannot
//     take over or lock out another worker, read or change another job, or
//     make the relay hold more than the budgets say. Every job's budget is
//     also drawn from the relay's (Config.MaxBytes), so the operator sizes
//     that for the jobs it hosts. With per-participant tokens
//     (Config.WorkerTokens) a token admits one worker at a time.
//   - A worker: its session is resumed only with the resume key its
//     Welcome gave (128 random bits), so neither another token holder nor a
//     guess of its sequential id can displace it; a wrong key closes only
//     the guesser's connection.
//   - The operator: holds the admin token (Config.AdminToken), or reaches
//     the admin listener, and sees every job; owns the data directory.
//   - Local files: relay.db is inspected before use (size against its
//     meta page, page size, every job's bucket, bbolt's consistency check);
//     damage becomes an error naming the file, or a quarantined job
//     (reported in /status and the log, its connections refused) while the
//     healthy jobs start. Nothing in the file can crash the process.
//
// Authentication, in the order a connection meets it: the job's token,
// offered as a "webkv.token.<token>" subprotocol or a token query parameter
// (browsers cannot set headers), checked before the upgrade (HTTP 403 when
// wrong; a browser, which hides a 403 from its page, gets the websocket and
// in it an auth Error, seq 0, that its client treats as final); a token
// given there replaces the one in the Hello. A connection without one must
// carry it in its Hello. The Origin check comes first (Config.Origins;
// requests without Origin, i.e. native clients, pass): a page from an
// origin that is not allowed gets the websocket and in it an Error (seq 0,
// wire.CodeOrigin) naming the origin and the -origins value that would
// allow it, then close code 4403 with that reason; a token refusal closes
// with 4401 (the close codes are 4400 + the HTTP status a native client
// gets; pages without webkv's runtime read CloseEvent.code and .reason). Then per frame: the 56-byte header is
// read and validated (wire.DecodeHeader against the limits) before a buffer
// of the announced size is taken. A frame that fails validation gets an
// Error message naming the problem, then that connection (only) is closed
// with StatusPolicyViolation. TLS (wss://) when Config.TLSCert and TLSKey
// are set.
//
// # Flow control and liveness
//
// Slowness is back-pressure, never a disconnect. Every connection has a
// writer goroutine with a queue bounded in bytes: while a connection's
// queued answers exceed Config.SendBuffer, the job handles none of its
// requests (they wait, in order, and the reader stops once its inbound
// credit is used, so TCP pushes back on the peer); they resume when the
// answers drain. Answers that carry a key's value share one immutable,
// reference-counted copy per version of the value. Welcomes advertise the
// window a client should keep to (wire.Welcome.Window and WindowBytes). A
// connection is closed only when a write made no progress for
// Config.WriteTimeout (a peer that stopped reading), or nothing at all
// arrived from it for Config.IdleTimeout.
//
// Silence is measured in bytes: a part of a frame is progress, so a worker
// uploading a big push over a slow link is alive though its pings wait
// behind the push. A worker waiting at the start barrier (its Welcome
// held) is not silent, nor one the relay owes answers (held for a durable
// checkpoint, queued, or held back by flow control): its silence counts
// from the end of the relay's last write to it.
//
// # Persistence and the no-lost-update guarantee
//
// With Config.DataDir, each job's snapshot (values, optimizer and its
// states, round counters, membership with resume keys, the per-worker
// answer cache) is written to a bbolt file in one fsynced transaction:
// after CheckpointRounds state-changing steps (a closed round, a new key, a
// join) or CheckpointInterval with changes, whichever comes first, on
// Shutdown (SIGTERM in the webkv command), and, with Config.Durable, before
// any acknowledgement that follows a state change leaves the relay. The
// job goroutine group-commits: it handles every frame already queued, takes
// one checkpoint, then releases all the answers. On start, every
// checkpointed job is restored and its workers resume their ranks when they
// reconnect.
//
// The guarantee, precisely: with Durable, an update whose acknowledgement a
// worker received is in the checkpoint, so a relay killed at any instant
// (kill -9, power loss with an fsync-honest disk) restarts with it. Updates
// not yet acknowledged may or may not be in the checkpoint; their workers
// resend them with the same sequence numbers after reconnecting, and the
// restored answer cache makes the relay answer an already-applied request
// without applying it again. So every push is applied exactly once.
// Without Durable, a crash loses the updates since the last periodic
// checkpoint (workers that joined since then cannot resume and get
// CodeRemoved); a clean shutdown loses nothing.
//
// A job that holds nothing (no worker, key, optimizer) is dropped, with
// its checkpoint, when its last connection closes; on an open relay a job
// without workers for Config.JobExpiry is deleted too. Otherwise a job id
// outlives its workers, so a job counts runs: an Init of a key from an
// earlier run fails (kvcore.ErrEarlierRun) unless the worker asked to
// resume (DialOptions.Resume); the operator lists, resets and deletes jobs
// at /jobs.
//
// # Client
//
// Dial returns a Conn, a transport.Transport (package kvcore/transport) of
// one shard that reconnects by itself with exponential backoff and jitter
// once a session existed; a first connection that cannot reach the relay
// fails at once (kvcore.ErrUnreachable) unless DialOptions.WaitForRelay,
// and a refusal is final (kvcore.ErrAuth for a bad token or unknown job,
// with the relay's reason).
// Each connection is an epoch: a send for a replaced connection writes
// nothing, and Recv announces each new connection (transport.ErrReconnected
// with its epoch) before anything read from it; the store's worker state
// machine then says Hello first, resumes its rank (with the resume key its
// Welcome gave) and resends what is unanswered. The Conn never reads the
// messages it carries. As a transport.Watcher it reports its reconnection
// attempts, which a store created with Options.Events passes on. It builds
// for native and GOOS=js (link_js.go: the page's WebSocket, token in the
// subprotocol, sends waiting while the browser buffers more than
// DialOptions.MaxBuffered). Create makes a dist store on one relay or, with
// a comma-separated URL list, on several shards (transport.Shards).
//
// Natively the client's writes go through a coalescing buffer under the
// websocket library (see batchConn): the library masks client frames in
// 4 KiB pieces and would otherwise issue one write syscall per 4 KiB.
package relay
