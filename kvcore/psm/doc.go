// Package psm is webkv's parameter server as a deterministic state machine,
// in the style of etcd's raft: no goroutines, no I/O, no clock. The relay (or
// package inproc in tests) owns connections and time; it feeds a Job what
// arrives and carries out what the Job returns:
//
//	job, err := psm.New(psm.Config{Job: "mnist", Shard: 0, Shards: 1})
//	rd := job.Step(now, conn, frame)   // a message from connection conn
//	rd  = job.Disconnect(now, conn)    // conn closed
//	rd  = job.Tick(now)                // a timer fired (rd.Next says when)
//	for _, e := range rd.Msgs { send(e.To, e.Append(buf)) }  // before the next call
//	for _, c := range rd.Close { closeConn(c) }
//	for _, c := range rd.Joined { liftPreAuthLimits(c) }
//	if rd.Persist { maybeCheckpoint(job.AppendSnapshot(nil)) }
//	if rd.Expired { deleteJob() }
//
// Optionally: job.Connect(conn, token) for a token checked when the
// connection opened (it replaces the Hello's), and job.Heard(at, conn)
// before Tick when bytes of a frame still arriving were seen (see
// Liveness).
//
// now is any monotonic duration (time.Since(start)). Ready and the payloads
// of its messages alias the Job's memory: encode or copy them before the next
// call into the Job. One Job is one job on one shard; a relay keeps one per
// job id (the Hello names it, wire.DecodeHello reads it) and must not call a
// Job from two goroutines at once.
//
// # What a Job does
//
// Membership. The first message on a connection must be a Hello; anything
// else gets an error and the connection is closed. A Hello without a
// worker id joins: the worker gets the lowest free rank, a fresh id and a
// resume key (below). A job has one worker count (workers.go):
// Config.MinWorkers, else the Want of its run's first worker (at most
// Config.MaxWorkers: a larger one is refused with CodeLimit and changes
// nothing); a Hello asking for another is refused with CodeWorkerCount.
// The Welcome answers are held until that many workers joined (MXNet's
// start barrier), so ranks and NumWorkers are known to all. A job counts
// runs (runs.go): an Init of a key from an earlier run needs the worker's
// Hello.Resume. A
// Hello with a worker id and its resume key resumes that worker on the new
// connection (its held requests answer there). Leave removes a worker at
// once; silence removes it too (see Liveness): its rank is freed, it drops
// out of every open round, barrier and init wait, and its id can no longer
// resume.
//
// Identity. A Hello must carry the job's token (Config.Token), one of the
// participants' tokens (Config.WorkerTokens), or neither when the job has
// none; a token given to Connect replaces the Hello's. Every worker gets a
// resume key in its Welcome (wire.Welcome.ResumeKey, 128 bits from
// Config.Rand), and a Hello resuming its id must carry it
// (wire.Hello.ResumeKey) and the same participant's token: without them
// it is refused (CodeAuth) and only its own connection closes, so a client
// that knows the job token and guesses the sequential ids can never take
// over or lock out a live session. A participant's token admits one worker
// at a time: a second join is refused while the first is connected, and
// replaces it when it is not (its client lost the key, e.g. a reloaded
// tab). Every refusal is decided before anything changes.
//
// Liveness. Any message counts as a heartbeat, and so does Heard: the
// server calls it with the time bytes of a connection last arrived, so a
// worker whose big push takes longer than Config.Timeout to upload (its
// pings queue behind it) is not silent. A worker silent for Config.Timeout
// is removed, except while it waits at the start barrier with its
// connection open (waiting is not silence); when that connection closes,
// its silence starts.
// Every change of the member set (welcomes, removals, leaves) is told to
// each welcomed, connected worker with a membership notice
// (wire.AppendMembers), and a resumed worker gets one at its Welcome.
//
// Init. Every worker inits each key; rank 0's value creates it (or, when no
// live worker holds rank 0, the first init to arrive). Inits that arrive
// before the key exists are answered when it is created. A worker that
// inits a key twice gets CodeReinit, never a deadlock; a late joiner's first
// init of an existing key is answered at once.
//
// dist_sync rounds. Each key has a round counter. The first push of a round
// fixes the round's expected workers: the live, welcomed workers. Push acks
// are held until every expected worker pushed; then the pushes are summed in
// rank order (so the result equals a single process summing the same values
// as devices, bit for bit), the optimizer runs once (or, without one, the sum
// is assigned), and every push is answered; PushPull answers carry the new
// value. Pull is answered at once from the stored value. A worker that is
// not expected in the open round (a late joiner) or pushed already in it has
// its push queued for the next round. A worker removed mid-round is dropped
// from the expected set, so it never hangs the round; a push it made before
// leaving stays in the sum.
//
// Deadlines and quorum. With Config.RoundDeadline > 0, a round that has been
// open that long closes as soon as Quorum workers pushed:
// max(QuorumMin, ceil(QuorumFrac*expected), 1). The sum of the k pushes that
// arrived is then multiplied by expected/k (unless Config.NoRescale), so it
// estimates the full round's sum and the optimizer's rescale_grad (usually
// 1/(batch*workers)) stays right; such acks carry wire.FlagRescaled. A push
// that arrives for a round that already closed is acknowledged with
// wire.FlagLate and not applied (a stale gradient is dropped, as in backup-
// worker synchronous SGD); its ack tells the worker the current round. So a
// straggler makes fewer contributions than it makes pushes: workers that
// run a fixed number of steps must leave when done (Store.Close sends
// Leave), or the straggler's last rounds would wait for peers that already
// stopped pushing.
//
// A worker waits for its push's ack before pushing the key again, so at
// most one of its pushes per key waits behind the open round; a second one
// is refused (CodeBadRequest), which bounds the memory a peer can pin.
//
// Learning-rate schedules follow each key's own update count. MXNet's
// num_update (the largest count of any key) would depend on the order in
// which rounds of different keys close, which differs between runs; when
// every key is updated every step the two are equal, and equal to what a
// single process computes.
//
// dist_async. Every push is applied on arrival with the optimizer; a push
// before SetOptimizer gets CodeMode ("dist_async needs an optimizer").
//
// Exactly once. Requests carry per-worker sequence numbers. A request whose
// seq was answered is answered again from a cache (wire.FlagDup) without
// being applied again; one still held (a push waiting for its round) is
// ignored, because its answer will go to the worker's current connection.
// The header's ack field (the worker's lowest unanswered seq) lets the Job
// forget older answers. The cache is bounded in bytes
// (Config.MaxReplyBytes per worker, oldest answers evicted first; a
// client retries only its newest requests), and a cached error text is cut
// to 256 bytes.
//
// Budgets. A Job bounds what any peer can make it hold, and refuses what
// would exceed it with CodeLimit: elements of one key part
// (Config.MaxElems), keys plus inits waiting for their key (MaxKeys), key
// name bytes (MaxKeyName), and bytes of values, merge buffers, optimizer
// states and the copies kept by waiting inits (MaxBytes per job, and the
// shared Config.Budget across jobs): an Init, a SetOptimizer whose states
// would not fit, or a LoadStates is refused whole. An optimizer spec longer
// than the states codec reads (Limits.MaxString) is refused by
// SetOptimizer, so saved states always load again. An Init with 0 values
// is the client's error (CodeBadRequest). Error texts quote a peer's
// strings only up to 64 bytes. Pushes in flight are not in the budget:
// each worker has at most two per key (one in the open round, one queued),
// so they are bounded by workers times the key sizes. A custom updater's
// state arrays count as optimizer states: the first update of a key whose
// states would not fit fails with CodeLimit. (The module's own memory is
// bounded by its host, not by this budget: see package sandbox.)
//
// Values answered (Pull, PushPull) carry the version of the key's value in
// Envelope.Ver, so a server can encode a value once for every connection
// that asks while it is current.
//
// Idle jobs. Empty reports a Job that holds nothing (no worker, key,
// optimizer): a server may drop it. With Config.IdleExpiry, a Tick after
// that long without a worker sets Ready.Expired.
//
// Batches. A request batch (wire.TypePushes, TypePulls, TypePushPulls,
// TypeInits) is checked whole, then each entry is handled in the same Step
// as the request it stands for. A worker that sent a batch gets its
// replies of each call gathered into wire.TypeAnswers messages (batch.go).
// Init: an init without a value (wire.FlagNoValue, from a worker that is
// not rank 0) that would have to create the key is answered
// wire.CodeNeedValue.
//
// Commands. Head 0 (MXNet's kController) carries the optimizer spec (JSON,
// optimizer.Parse); installing one resets optimizer states, as a new
// MXNet updater does. Head 4 (kSetGradientCompression) carries "type,threshold"
// (compute.ParseCompression); compressed pushes are dequantized with it. Head
// 16 (updater.CommandHead) carries a custom updater module, loaded with
// Config.Updaters, which then runs in place of the optimizer (updater.go).
// Head 17 (CmdAggregate) carries the job's aggregation rule: how a
// dist_sync round combines its pushes before the optimizer step (sum,
// mean, median, trimmed-mean, optional norm clipping; aggregate.go, where
// the refusal of NaN and Inf pushes is described too).
// Other heads are acknowledged. SaveStates answers with a wire.States table;
// LoadStates installs one after checking all of it.
//
// Barrier. A barrier completes when every live worker entered it; a
// worker's newer barrier request replaces its older one.
//
// Sharding. Each Job holds the keys or key parts (wire.Place) its workers
// send it: Init and Push carry the part's offset and the key's total size,
// and the Job checks that every worker sends the same part. A Hello's
// RankHint gives a worker the rank shard 0 gave it, so ranks (and rank 0's
// init values) agree across shards. LAMB's norms, like MXNet's on a
// partitioned server, are per part.
//
// Persistence. Ready.Persist marks calls that changed durable state. A
// relay that writes AppendSnapshot durably before it sends the messages of
// such a Ready loses no acknowledged update in a crash; one that
// checkpoints every N rounds or seconds loses at most the rounds acknowledged
// since (their workers have moved on and do not resend them).
//
// Snapshots. AppendSnapshot writes values, optimizer spec and states, round
// counters, membership (with resume keys and participants), the answer
// cache and the aggregation rule; Restore rebuilds a Job from it (also
// from version-1 snapshots, whose workers have no resume key and join
// anew).
// Requests held in open rounds, barriers and init waits are not saved: they
// were not acknowledged, and their workers resend them (same seq) when they
// reconnect, so no acknowledged update is lost and none is applied twice.
package psm
