// Package wire is the versioned binary codec between webkv dist stores
// (kvcore's remote) and their parameter servers (package psm, run by the
// relay). It is pure Go and does no I/O: a Transport carries one encoded
// message per transport message (one websocket binary message, one pipe
// message).
//
// # Message layout (protocol Version 1)
//
// Every message is a fixed 56-byte little-endian header followed by PLen
// bytes of payload; the message is exactly HeaderSize+PLen bytes long.
//
//	off size field
//	  0   2  magic   0x6B77 ("wk" in memory)
//	  2   1  version protocol version (1)
//	  3   1  type    Type: Hello, Welcome, Init, Push, Pull, PushPull, ...
//	  4   2  flags   Flag bits (FlagStrKey, FlagLate, FlagDup, FlagRescaled)
//	  6   1  dtype   DType of the data at the end of the payload
//	  7   1  code    Code of an Error reply (0 otherwise)
//	  8   8  seq     request id; replies carry the seq of their request
//	 16   8  ack     sender's lowest unanswered seq (older seqs are settled)
//	 24   8  key     int key as int64 bits, StrKeyID of a string key, or a
//	                 command head
//	 32   8  round   dist_sync round of the key
//	 40   4  count   elements this message's data stands for
//	 44   4  offset  element offset of this part in the whole key
//	 48   4  total   elements of the whole key
//	 52   4  plen    payload bytes
//
// The data of a message (DType != DTypeNone) is the last Header.DataBytes()
// bytes of the payload, raw, with no per-element encoding: float32 values
// little-endian (DTypeF32), or the packed 32-bit words of a 2bit/1bit
// compressed gradient (kvcore's packing, MXNet's). A compressed part of a key
// split over shards carries the words that hold its elements (PackedSpan):
// from the word holding element offset, whose first offset%PerWord elements
// belong to the previous part and are skipped. Bytes
// before the data are the message's metadata: the Init metadata (key name
// and shape), a Hello, a Welcome, a States table, an error text, a command
// body. Metadata encodings use uvarints for lengths and counts and
// little-endian fixed-width numbers; see AppendHello, AppendWelcome,
// AppendInitMeta, AppendStates.
//
// # Conversation
//
// A client opens with Hello (protocol version, job id, role, auth token,
// worker id to resume or "" to join, sync/async mode, expected workers, the
// rank it holds on shard 0, a per-client Hello counter, declared keys and
// shapes); the server answers Welcome (worker id, rank,
// number of workers, heartbeat interval and silence timeout) or an Error.
// Then the client sends requests with increasing seq numbers (per worker,
// never reused, also across reconnects) and the server answers each with
// Ack (payload: the value for Pull and PushPull, a States table for
// SaveStates) or Error. Ping (seq 0) keeps a worker alive and is answered by
// Pong. A retried request (same seq) is answered without being applied
// twice; ack lets the server forget answers the client no longer needs.
//
// Many small keys travel together: TypePushes, TypePulls, TypePushPulls and
// TypeInits carry a table of requests (each with its own seq) and their
// data in one message, and a server answers a worker that sent such a
// batch with TypeAnswers, many replies in one message (batch.go). A list
// request (TypePushList, TypePullList) is ONE request for many whole keys:
// one seq, the key ids, one dense value buffer, one Ack (list.go). An Init
// with FlagNoValue carries the key and its shape only: only rank 0 sends
// the value that wins; a server that needs one answers CodeNeedValue.
//
// Key placement over shards (Place) lives here so that clients and servers
// agree on it.
//
// # Limits
//
// Decode and the metadata decoders check Limits before they allocate: the
// payload size against MaxPayload, every string length against MaxString,
// shape ranks against MaxDims, key counts against MaxKeys. A message that
// fails validation yields an *Error with CodeBadFrame or CodeLimit; the
// server answers it with an Error message (seq 0 if it could not be read)
// and closes only that connection.
//
// # Zero copy
//
// Decode does not copy: Msg.Payload aliases the frame. Float32View turns
// data bytes into a []float32 without copying where that is safe (a
// little-endian machine and a 4-byte aligned slice) and decodes into a
// caller buffer otherwise. Encoding appends to caller buffers, which the
// caller may pool.
package wire
