// Package wsm is the worker side of webkv's dist protocol as a
// deterministic state machine, the mirror of kvcore/psm on the server: no
// goroutines, no I/O, no clock. kvcore's dist driver owns the transport and
// the time; it feeds a Machine what happens and carries out what it asks:
//
//	m, _ := wsm.New(wsm.Config{Shards: 2, Mode: wire.ModeSync, Join: join})
//	m.Start()                                  // shard 0's Hello is due
//	m.Recv(shard, epoch, frame)                // a message arrived
//	m.Reconnected(shard, epoch)                // the transport replaced a connection
//	m.Lost(shard, err)                         // ... or gave up on it
//	m.Tick(now)                                // a timer fired (Ready.Next says when)
//	k, _ := m.InitKey(tok, spec, value)        // user calls: InitKey, Push, Pull, PushPull,
//	m.Push(tok, k, dtype, words, n)            //   Barrier, Command, SaveStates, LoadStates,
//	                                           //   Leave, Cancel
//	out, ok := m.Next(shard)                   // the next message to send on shard ...
//	transport.Send(ctx, shard, out.Epoch, out.Head, out.Body)
//	m.Written(shard)                           // ... and that it was handed over
//	rd := m.Ready()                            // completions, events, shards to wake, next tick
//
// A Machine must not be called from two goroutines at once; Ready's slices
// and Next's bytes are valid until the next call that changes them (Ready:
// the next Ready; Next: the shard's Written).
//
// # What a Machine does
//
// Joining. Start makes shard 0's Hello due; its Welcome gives the rank, and
// then every other shard's Hello asks for that rank (wire.Hello.RankHint),
// so ranks agree across shards. Ready.Joined is set once every shard
// welcomed the worker; a shard that refuses first sets Ready.JoinErr.
//
// Epochs and the Hello-first rule. Every shard's connection has an epoch
// (package kvcore/transport); every message Next returns names the epoch it
// is for. When a shard's connection is replaced (Reconnected), the first
// message Next gives for the new epoch is the Hello resuming the shard's
// worker id; pings follow it, and requests wait for the Welcome. Then every
// request sent before and not answered yet is resent, once per epoch, in
// sequence order, before any new request: the server answers a request it
// already applied from its cache, so every request takes effect exactly
// once. This holds for every shard, in whatever order shards reconnect.
//
// Requests. Each shard numbers its requests (seq, never reused, also across
// epochs) and every request header carries the lowest unanswered seq (the
// ack), so the server can forget older answers. Requests on one part of one
// key leave in issue order, one at a time (a pull after a push sees the
// push's round); a push carries the round of its key part the previous
// answer gave. Init sends the value only from rank 0 (MXNet: rank 0's value
// wins); other workers send the key and shape (wire.FlagNoValue), and send
// their value only if the server asks (wire.CodeNeedValue: no rank 0 to
// create the key). Big keys are split over the shards with wire.Place.
//
// Flow control. Per shard, requests in flight are bounded by a window of
// requests and bytes (request data, expected answer data and a fixed cost
// per request; a request bigger than the window goes when nothing else is in
// flight). dist_sync pushes are the exception: the server holds them until
// every worker pushed the key, so two workers pushing keys in different
// orders could each fill their window with pushes the other must complete
// first; they are bounded instead by one outstanding push per key part,
// and their answers by the model's size.
//
// Batching. Small pushes, pulls and pushpulls waiting for the same shard
// leave together in one request batch (wire.TypePushes etc.), each entry a
// request of its own: the many keys of one call (or of calls issued while
// the shard was busy) cost one message, as ps-lite's KVPairs do.
//
// Heartbeats. A shard that sent nothing for the server's heartbeat interval
// (from its Welcome; 100 ms before one) gets a ping, from the moment its
// Hello went out, so waiting for a job's other workers is not silence.
package wsm
