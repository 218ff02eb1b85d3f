// Package relay is webkv's parameter server over websockets
// (nhooyr.io/websocket v1.8.17) and its Go client.
//
// # Server
//
// A Server hosts many independent jobs. Each job is a psm.Job (the
// parameter server as a deterministic state machine, package kvcore/psm)
// owned by one goroutine: connection readers hand it frames, a timer hands
// it ticks, and it carries out what the state machine returns. Every
// connection has a writer goroutine with a bounded queue (Config.SendQueue)
// and a per-message write deadline (Config.WriteTimeout): a peer that reads
// too slowly is closed, and nobody else waits for it.
//
// Endpoints: /ws?job=<id> (the websocket, subprotocol "webkv.1"), /metrics
// (Prometheus text format), /status (JSON), and whatever is mounted with
// Handle or HandleFS (the browser app on "/").
//
// Safety, in the order a connection meets it: the connection limits
// (Config.MaxConns, MaxConnsPerJob: HTTP 503); the job's access token,
// offered as a "webkv.token.<token>" subprotocol or a token query parameter
// (browsers cannot set headers; HTTP 403 when wrong, except that a browser,
// which hides a 403 from its page, gets the websocket and in it an auth
// Error, seq 0, that its client treats as final; a browser must present a
// token at upgrade) or else required in the Hello; the Origin check (Config.Origins; requests without Origin, i.e.
// native clients, pass); then per frame: the 56-byte header is read and
// validated (wire.DecodeHeader against the limits) before a buffer of the
// announced size is taken, so a peer cannot make the relay allocate beyond
// Config.MaxMessage. A frame that fails validation gets an Error message
// naming the problem, then that connection (only) is closed with
// StatusPolicyViolation. TLS (wss://) when Config.TLSCert and TLSKey are set.
//
// # Persistence and the no-lost-update guarantee
//
// With Config.DataDir, each job's snapshot (values, optimizer and its
// states, round counters, membership, the per-worker answer cache) is
// written to a bbolt file in one fsynced transaction: after
// CheckpointRounds state-changing steps (a closed round, a new key, a join)
// or CheckpointInterval with changes, whichever comes first, on Shutdown
// (SIGTERM in the webkv command), and, with Config.Durable, before any
// acknowledgement that follows a state change leaves the relay. The job
// goroutine group-commits: it handles every frame already queued, takes one
// checkpoint, then releases all the answers. On start, every checkpointed
// job is restored and its workers resume their ranks when they reconnect.
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
// # Client
//
// Dial returns a Conn, a kvcore.Transport that reconnects by itself with
// exponential backoff and jitter and reports each new connection to the
// store (ErrReconnected), which then resumes its rank and resends what is
// unanswered; as a kvcore.ConnWatcher it also reports its reconnection
// attempts, which a store created with Options.Events passes on. It builds for
// native and GOOS=js (dial_js.go: the browser's
// WebSocket, token in the subprotocol). Create makes a dist store on one
// relay or, with a comma-separated URL list, on several shards.
//
// Natively the client's writes go through a coalescing buffer under the
// websocket library (see batchConn): the library masks client frames in
// 4 KiB pieces and would otherwise issue one write syscall per 4 KiB.
package relay
