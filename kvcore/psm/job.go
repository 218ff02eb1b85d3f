package psm

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/kernels"
	"github.com/webkv/webkv/kvcore/internal/optstate"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/kvcore/wire"
)

// ConnID names a connection; the caller assigns them (never 0).
type ConnID uint64

// Config configures a Job. Zero values take the defaults named.
type Config struct {
	Job    string // job id, for messages
	Token  string // if set, a Hello must carry it
	Shard  int    // this Job's shard index
	Shards int    // number of shards (default 1)

	Backend compute.Backend // where values live and updates run (default: a CPU backend of the Job)

	Heartbeat time.Duration // how often workers ping (default 1s)
	Timeout   time.Duration // silence after which a worker is removed (default 10s)

	// RoundDeadline, if > 0, lets a dist_sync round close once it has been
	// open this long and Quorum workers pushed (see the package doc).
	RoundDeadline time.Duration
	QuorumMin     int
	QuorumFrac    float64
	NoRescale     bool // leave a deadline round's sum unscaled

	MinWorkers int // the job's worker count (workers.go): Welcomes wait until that many joined; 0: the run's first worker sets it

	MaxKeys    int // keys per job (default 1<<16)
	MaxWorkers int // workers per job (default 1024); also bounds a Hello's Want
	Limits     *wire.Limits

	// Identity (see the package doc). Rand draws the resume keys that
	// Welcomes carry (default crypto/rand.Reader; scripts use a fixed
	// stream). WorkerTokens maps participant names to tokens: a Hello may
	// carry one of them instead of Token, and a participant holds at most
	// one worker.
	Rand         io.Reader
	WorkerTokens map[string]string

	// Budgets (see the package doc). MaxElems bounds one key part's
	// elements (default DefaultMaxElems); MaxBytes the bytes the job holds
	// in values, merge buffers, optimizer states and held inits (default
	// DefaultMaxBytes); Budget, if set, is shared with other jobs and
	// bounds them together. MaxReplyBytes bounds each worker's answer
	// cache (default DefaultMaxReplyBytes), MaxKeyName a string key's
	// name (default DefaultMaxKeyName).
	MaxElems      int
	MaxBytes      int64
	Budget        *Budget
	MaxReplyBytes int
	MaxKeyName    int

	// Window and WindowBytes are the flow-control window Welcomes
	// advertise (wire.Welcome.Window, WindowBytes; 0: none). The Job does
	// not enforce them: the server carrying it out back-pressures a
	// client over them.
	Window      int
	WindowBytes int64

	// IdleExpiry, if > 0, marks a job that has had no worker for that long
	// as expired (Ready.Expired): a server for anyone (no tokens) deletes
	// such jobs so that abandoned ones do not hold its job slots forever.
	IdleExpiry time.Duration

	// Updaters loads custom updater modules (command updater.CommandHead;
	// see updater.go). Nil: modules are refused.
	Updaters updater.Loader

	// Aggregate is how a dist_sync round combines its pushes until a
	// worker sets another rule (command CmdAggregate; aggregate.go).
	// The zero value is MXNet's sum.
	Aggregate Aggregate
}

func (c *Config) fill() error {
	if c.Shards == 0 {
		c.Shards = 1
	}
	if c.Shards < 1 || c.Shard < 0 || c.Shard >= c.Shards {
		return fmt.Errorf("psm: shard %d of %d", c.Shard, c.Shards)
	}
	if c.Backend == nil {
		c.Backend = compute.NewCPU(nil)
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Timeout < c.Heartbeat {
		return fmt.Errorf("psm: timeout %v is shorter than the heartbeat %v", c.Timeout, c.Heartbeat)
	}
	if c.QuorumFrac < 0 || c.QuorumFrac > 1 || math.IsNaN(c.QuorumFrac) {
		return fmt.Errorf("psm: quorum fraction %v outside [0, 1]", c.QuorumFrac)
	}
	if c.QuorumMin < 0 || c.MinWorkers < 0 || c.RoundDeadline < 0 {
		return fmt.Errorf("psm: negative quorum, min workers or deadline")
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = 1 << 16
	}
	if c.MaxWorkers <= 0 {
		c.MaxWorkers = 1024
	}
	if c.MinWorkers > c.MaxWorkers {
		return fmt.Errorf("psm: min workers %d exceed the job's limit of %d workers", c.MinWorkers, c.MaxWorkers)
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.MaxElems <= 0 {
		c.MaxElems = DefaultMaxElems
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxReplyBytes <= 0 {
		c.MaxReplyBytes = DefaultMaxReplyBytes
	}
	if c.MaxKeyName <= 0 {
		c.MaxKeyName = DefaultMaxKeyName
	}
	if err := c.Aggregate.validate(); err != nil {
		return fmt.Errorf("psm: %v", err)
	}
	if c.Window < 0 || c.WindowBytes < 0 || c.IdleExpiry < 0 {
		return fmt.Errorf("psm: negative window or idle expiry")
	}
	for name, tok := range c.WorkerTokens {
		if name == "" || tok == "" {
			return fmt.Errorf("psm: worker token %q: empty participant name or token", name)
		}
	}
	return nil
}

// Envelope is a message to send to connection To. Msg.Payload may alias the
// Job's memory: encode it (Append) before the next call into the Job.
type Envelope struct {
	To  ConnID
	Msg wire.Msg
	// Ver, when not 0, identifies the content of Msg's data: a key part's
	// value at one version. Two envelopes with the same Ver carry the same
	// data bytes (within one Job), so a server may encode that data once
	// and share it between connections and over later calls.
	Ver uint64
}

// Append appends the encoded message to b.
func (e *Envelope) Append(b []byte) []byte { return wire.Append(b, &e.Msg) }

// Ready is what a call into a Job asks the caller to do. It is reused by
// the next call.
type Ready struct {
	// Msgs to send, in order (per connection, the order matters).
	Msgs []Envelope
	// Close lists connections to close after sending their messages (bad
	// frames, a connection replaced by a resume).
	Close []ConnID
	// Persist says that durable state changed (a round closed, a key was
	// created, membership or the optimizer changed): a checkpoint taken now
	// would capture it.
	Persist bool
	// Next is when Tick should run next (0: no timer needed).
	Next time.Duration
	// Joined lists connections whose Hello was accepted in this call (the
	// worker joined or resumed, also while its Welcome is held at the
	// start barrier): a server lifts its pre-authentication limits on them.
	Joined []ConnID
	// Expired says that the job has had no worker for Config.IdleExpiry:
	// the caller may delete it (and its checkpoint).
	Expired bool
	// Notes are what happened that an operator wants in the log: joins,
	// resumes, leaves, removals, new runs, rounds closed at their
	// deadline without every worker (notes.go).
	Notes []Note
}

// Stats are counters for metrics.
type Stats struct {
	Workers     int    // live workers
	Keys        int    // keys
	Rounds      uint64 // dist_sync rounds closed (all keys)
	Updates     uint64 // updates applied (rounds or async pushes)
	Pushes      uint64 // pushes received (duplicates excluded)
	Pulls       uint64
	BytesIn     uint64 // data bytes of pushes and inits
	BytesOut    uint64 // data bytes of values sent
	Removed     uint64 // workers removed after a timeout or leave
	LatePushes  uint64 // pushes that arrived after their round closed
	Rescaled    uint64 // rounds closed at a deadline without every worker
	Duplicates  uint64 // retried requests answered from the cache
	BadMessages uint64
	NonFinite   uint64 // pushes refused for holding NaN or Inf (aggregate.go)
	Lists       uint64 // list requests taken (list.go; their keys count in Pushes and Pulls)
}

// reply is a cached answer to a request, for retries.
type reply struct {
	typ   wire.Type // Ack or Error
	code  wire.Code
	flags uint16
	round uint64
	count uint32
	key   uint64
	req   wire.Type // the request's type
	msg   string
}

type worker struct {
	id       string
	rank     int
	conn     ConnID
	lastSeen time.Duration
	welcomed bool
	attempt  uint32 // Attempt of the worker's latest Hello
	mark     uint64 // lowest unanswered seq, from the worker's ack field
	maxSeq   uint64 // newest answered seq
	done     map[uint64]reply
	held     map[uint64]bool // requests held (round, barrier, init)
	batches  bool            // it sent a batch: its replies go out in Answers (batch.go)

	key         string   // resume key (secret), given in every Welcome
	participant string   // the WorkerTokens name it joined with ("": the job token)
	resume      bool     // its Hello said Resume: its inits may continue an earlier run
	order       []uint64 // done's seqs in the order answered (eviction order)
	doneBytes   int      // what done costs (see reply.cost)
}

// arrival is a push in a round. A round holds one inline (round.arr1), so
// it is small (56 bytes): what only refused and row-sparse pushes carry
// is in ext.
type arrival struct {
	w    *worker
	buf  compute.Buffer
	lr   *listReq // the push list it is a key of (list.go), or nil
	seq  uint64
	li   int32 // its index in lr
	pull bool
	rsp  bool // a row-sparse push
	ext  *arrivalExt
}

// arrivalExt is the rest of an arrival that has any.
type arrivalExt struct {
	bad  string   // refused (NaN or Inf): the error it is answered with; buf is nil
	rows []uint32 // a row-sparse push's rows (rows.go)
}

// bad is the refusal text of an arrival without a buffer.
func (a *arrival) bad() string {
	if a.ext == nil {
		return ""
	}
	return a.ext.bad
}

// rows is a row-sparse arrival's rows.
func (a *arrival) rows() []uint32 {
	if a.ext == nil {
		return nil
	}
	return a.ext.rows
}

// round is a key's open round (key.cur). Rounds are the job's, not the
// key's: a key holds a pointer while its round is open, and a closed
// round goes back to the job's free list for the next key's round
// (issue 12, many small keys: a round that opens and closes within one
// push reuses the same round, in cache, for every key of a list). The
// arrivals start in a one-element array inside the round; they move to
// the heap if a round has more, and the round keeps them when it is
// reused. The workers a round expects are the job's members when it
// opened (mem, shared by every round opened under that membership), less
// those whose bit in done is set (pushed, or removed before they did).
type round struct {
	mem     *members      // the workers it expects, by rank
	done    uint64        // ranks 0-63 of mem that pushed or were removed
	doneHi  []uint64      // the same for ranks from 64 (kept on reuse)
	nexp    int           // workers expected
	waiting int           // expected workers that have not pushed yet
	opened  time.Duration // when it opened (kept with a round deadline only)
	arrived []arrival
	queued  []arrival // pushes for later rounds (none without an open round)
	arr1    [1]arrival
	list    *lround // the list round whose keys share it (listround.go), or nil
	seq     uint64  // its deadline entry's (openEnt), with a round deadline only
}

// newRound returns an empty round from the job's free list, or a new one.
func (j *Job) newRound() *round {
	if l := len(j.roundFree); l > 0 {
		r := j.roundFree[l-1]
		j.roundFree[l-1] = nil
		j.roundFree = j.roundFree[:l-1]
		return r
	}
	r := new(round)
	r.arrived = r.arr1[:0]
	return r
}

// freeRound gives r, closed and emptied (no arrival, nothing queued),
// back to the job's free list. Its members stay until the next openRound
// sets them (remove drops them from the free rounds).
func (j *Job) freeRound(r *round) {
	r.arrived, r.queued = r.arrived[:0], nil
	j.roundFree = append(j.roundFree, r)
}

// members is the job's welcomed workers by rank, the workers a round
// that opens expects: built once per change of membership (Job.mem, nil
// until then) and shared, never changed, by every round opened under it,
// so opening a round writes no entry per rank (issue 12, many small
// keys).
type members struct {
	w []*worker // by rank; nil: no welcomed worker holds the rank
	n int       // workers in w
}

// members returns the job's members, built again after a change
// (membersChanged).
func (j *Job) members() *members {
	if m := j.mem; m != nil {
		return m
	}
	m := &members{w: make([]*worker, len(j.ranks))}
	for rank, w := range j.ranks {
		if w != nil && w.welcomed && w.rank == rank {
			m.w[rank] = w
			m.n++
		}
	}
	j.mem = m
	return m
}

// membersChanged drops the job's members: a worker joined, was welcomed
// or was removed. Rounds already open keep the members they opened with.
func (j *Job) membersChanged() { j.mem = nil }

// isDone reports whether rank's bit in done is set.
func (r *round) isDone(rank int) bool {
	if rank < 64 {
		return r.done&(1<<uint(rank)) != 0
	}
	rank -= 64
	return r.doneHi[rank/64]&(1<<uint(rank%64)) != 0
}

func (r *round) setDone(rank int) {
	if rank < 64 {
		r.done |= 1 << uint(rank)
		return
	}
	rank -= 64
	r.doneHi[rank/64] |= 1 << uint(rank%64)
}

// expects reports whether the round expects a push from w that has not
// arrived yet.
func (r *round) expects(w *worker) bool {
	m := r.mem
	return uint(w.rank) < uint(len(m.w)) && m.w[w.rank] == w && !r.isDone(w.rank)
}

// missing reports whether the round expects rank's worker and it has not
// pushed.
func (r *round) missing(rank int) bool {
	return r.mem.w[rank] != nil && !r.isDone(rank)
}

// arrive records w's push (w expected, see expects).
func (r *round) arrive(w *worker) {
	r.setDone(w.rank)
	r.waiting--
}

// add returns a new arrival of the round, zero (closeRound clears the
// arrivals it settles, and growing the slice zeroes the new room): the
// caller writes its fields in place instead of copying 56 bytes in.
func (r *round) add() *arrival {
	n := len(r.arrived)
	if n < cap(r.arrived) {
		r.arrived = r.arrived[:n+1]
	} else {
		r.arrived = append(r.arrived, arrival{})
	}
	return &r.arrived[n]
}

// unexpect stops expecting w (removed before it pushed; see expects).
func (r *round) unexpect(w *worker) {
	r.setDone(w.rank)
	r.nexp--
	r.waiting--
}

type heldInit struct {
	w     *worker
	seq   uint64
	str   bool
	name  string
	shape []int64
	off   uint32
	total uint32
	n     uint32    // elements of the part
	data  []float32 // copied value (only kept for a creator candidate; nil for a FlagNoValue init)
	resv  int64     // bytes of data reserved from the budget
}

// key is a key part of the job. Its fields are split by how often a
// round touches them (issue 12, many small keys): key holds what a list
// request reads or writes for every key, in 80 bytes (TestKeyLayout), the
// open round is the job's (round), and keyCold holds the rest, in a
// separate chunk. A list of 100,000 keys walks the keys in order, and
// every line of key it touches is a miss; the fewer lines, the faster a
// round.
type key struct {
	rounds uint64 // completed rounds (or applied async pushes)
	ver    uint64 // version of stored (Envelope.Ver), from Job.verSeq
	n      int    // elements of this part
	stored compute.Buffer
	spare  compute.Buffer // a free arrival buffer (more in keyCold.free)
	cur    *round         // the open round, nil if none
	str    bool
	dirty  bool
	whole  bool // off == 0 && n == total: the part is the whole key

	*keyCold
}

// keyCold is the part of a key that a plain round does not touch.
type keyCold struct {
	off    int
	total  int
	free   []compute.Buffer // arrival buffers for reuse, after key.spare
	id     uint64
	merge  compute.Buffer
	slot   optstate.Slot // optimizer states (shared code with the store)
	name   string
	oname  string // optName of an int key, once made
	shape  []int64
	host   []float32 // host copy of stored (valid unless dirty)
	inited map[string]bool
	deq    []float32 // host scratch for dequantizing
	resv   int64     // bytes reserved from the budget (keyBytes)
	rs     *keyRows  // row-sparse scratch (rows.go)
	run    uint64    // the run that created or resumed it (runs.go)
}

// putFree keeps b, an arrival buffer of k, for reuse (bufferOf).
func (k *key) putFree(b compute.Buffer) {
	if k.spare == nil {
		k.spare = b
		return
	}
	k.free = append(k.free, b)
}

// keyChunk is the most keys newKey allocates at once: a chunk holds as
// many keys as the job has (at least 8), so a small job does not carry
// hundreds of unused keys.
const keyChunk = 256

// newKey returns a zeroed key. Keys
// come from chunks allocated together, so that the keys created in a
// row (0, 1, 2, ... as workers init them) lie next to each other in
// memory and a list of them reads memory in order. A key is never
// deleted from a live Job, so a chunk lives as long as the Job; a key
// whose creation failed goes back with dropKey.
func (j *Job) newKey() *key {
	if j.keyNext == len(j.keyBuf) {
		n := min(keyChunk, max(8, len(j.keys)))
		j.keyBuf, j.coldBuf, j.keyNext = make([]key, n), make([]keyCold, n), 0
	}
	k := &j.keyBuf[j.keyNext]
	k.keyCold = &j.coldBuf[j.keyNext]
	j.keyNext++
	return k
}

// dropKey gives back k, the latest newKey, which was not used.
func (j *Job) dropKey(k *key) {
	if j.keyNext > 0 && k == &j.keyBuf[j.keyNext-1] {
		*k.keyCold = keyCold{}
		*k = key{}
		j.keyNext--
	}
}

// openEnt is a round that opened at at; stale once it closed. The round
// is k's with sequence number seq (an entry stands for that round alone,
// not for a later one of its key that opened at the same time), or list
// round l.
type openEnt struct {
	k   *key
	l   *lround // a list round's entry (listround.go), instead of k
	at  time.Duration
	seq uint64
}

func (e openEnt) stale() bool {
	if e.l != nil {
		return e.l.closed
	}
	return e.k.cur == nil || e.k.cur.seq != e.seq
}

// dropStale drops the closed rounds at the queue's front in one step
// (nextTimer, after every Step: a list closes thousands of rounds, and a
// pop each cost a call and a store per round).
func (j *Job) dropStale() {
	q := j.openQ
	i := 0
	for i < len(q) && q[i].stale() {
		i++
	}
	if i == 0 {
		return
	}
	clear(q[:i])
	if i == len(q) {
		j.openQ = j.openBuf[:0]
		return
	}
	j.openQ = q[i:]
}

func (j *Job) popOpen() {
	j.openQ[0] = openEnt{}
	j.openQ = j.openQ[1:]
	if len(j.openQ) == 0 {
		// Empty: start again at the front of the buffer (a round per
		// key of 100,000 keys would otherwise regrow it every time).
		j.openQ = j.openBuf[:0]
	}
}

// Job is the parameter server of one job on one shard.
type Job struct {
	cfg    Config
	be     compute.Backend
	lim    *wire.Limits
	mode   wire.Mode
	nextID uint64
	// started is set once want workers joined in this run; want is the
	// job's worker count (workers.go), 0 when it has none.
	started bool
	want    int

	workers map[string]*worker
	conns   map[ConnID]*worker
	ranks   []*worker // by rank; nil = free

	keys      map[uint64]*key
	byID      []keyRef  // keys with small ids, indexed by id (see setKey)
	openQ     []openEnt // open rounds in the order they opened (some stale)
	openBuf   []openEnt // the biggest buffer openQ had, for reuse once it is empty
	heldInits map[uint64][]heldInit

	barrier   map[*worker]uint64 // worker -> seq of its barrier request
	opt       *optimizer.Spec
	optJSON   []byte
	numUpdate int
	comp      compute.Compression
	cu        *custom // custom updater module, instead of opt (updater.go)

	rd      Ready
	bt      batchState // batch.go
	scratch []byte
	srcs    []compute.Buffer
	stats   Stats
	closed  bool

	used     int64                        // bytes reserved from the budgets
	ptok     map[[sha256.Size]byte]string // participant by token hash
	connTok  map[ConnID]string            // tokens presented at connection (Connect)
	idle     bool                         // no worker since idleFrom
	idleFrom time.Duration
	verSeq   uint64 // last value version handed out

	agg       Aggregate // aggregate.go
	aggBuf    []float32 // the order statistics' host scratch
	aggFactor []float32
	aggResv   int64                // aggBuf's bytes, reserved from the budgets
	run       uint64               // the current run (runs.go)
	restored  bool                 // restored from a snapshot, no Hello since (runs.go)
	rowUnion  []uint32             // a lazy update's rows, reused (rows.go)
	ls        listState            // list.go
	fw        compute.FiniteWriter // be, if it is one (writeArrival)
	cpu       bool                 // be is the CPU backend itself (pushList's checked runs)
	cpuLoops  bool                 // be is the CPU backend without an accelerator (combine's reduce)
	keyBuf    []key                // the chunk newKey takes keys from
	coldBuf   []keyCold            // and their cold parts
	keyNext   int                  // keyBuf's first unused key
	mem       *members             // the members a round opens with (nil: build them; members)
	roundFree []*round             // closed rounds for reuse (newRound)
	perKey    bool                 // no list rounds (tests compare the two)
	roundSeq  uint64               // the last round sequence number (openEnt)
}

// New returns an empty Job.
func New(cfg Config) (*Job, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	j := &Job{cfg: cfg, be: cfg.Backend, lim: cfg.Limits, workers: map[string]*worker{},
		conns: map[ConnID]*worker{}, keys: map[uint64]*key{}, heldInits: map[uint64][]heldInit{},
		barrier: map[*worker]uint64{}}
	j.want = cfg.MinWorkers
	j.agg = cfg.Aggregate
	j.fw, _ = j.be.(compute.FiniteWriter)
	_, j.cpu = j.be.(*compute.CPU)
	j.cpuLoops = j.cpu && j.be.Name() == "cpu"
	j.indexTokens()
	return j, nil
}

// Mode is the job's mode, fixed by its first Hello (0 before).
func (j *Job) Mode() wire.Mode { return j.mode }

// Stats returns the job's counters.
func (j *Job) Stats() Stats {
	s := j.stats
	s.Workers = len(j.workers)
	s.Keys = len(j.keys)
	return s
}

// Close frees the Job's buffers. The Job must not be used afterwards.
func (j *Job) Close() {
	if j.closed {
		return
	}
	j.closed = true
	j.listSplitAll() // the slots' buffers go with their keys' rounds
	j.closeCustom()
	for _, k := range j.keys {
		j.freeKey(k)
	}
	j.keys, j.byID, j.keyBuf, j.coldBuf = nil, nil, nil, nil
	for _, hs := range j.heldInits {
		for _, h := range hs {
			j.release(h.resv)
		}
	}
	j.heldInits = nil
	j.release(j.aggResv)
	j.aggResv, j.aggBuf = 0, nil
}

func (j *Job) freeKey(k *key) {
	for _, b := range []compute.Buffer{k.stored, k.merge} {
		if b != nil {
			j.be.Free(b)
		}
	}
	k.slot.Reset(j.be)
	j.freeRows(k)
	if k.spare != nil {
		j.be.Free(k.spare)
	}
	for _, b := range k.free {
		j.be.Free(b)
	}
	if r := k.cur; r != nil {
		for _, a := range r.arrived {
			if a.buf != nil {
				j.be.Free(a.buf)
			}
		}
		for _, a := range r.queued {
			j.be.Free(a.buf)
		}
	}
	j.release(k.resv)
	k.resv = 0
}

func (j *Job) begin() *Ready {
	rd := &j.rd
	for i := range rd.Msgs {
		rd.Msgs[i] = Envelope{}
	}
	rd.Msgs, rd.Close, rd.Persist, rd.Next = rd.Msgs[:0], rd.Close[:0], false, 0
	rd.Joined, rd.Expired = rd.Joined[:0], false
	clear(rd.Notes)
	rd.Notes = rd.Notes[:0]
	j.scratch = j.scratch[:0]
	return rd
}

func (j *Job) end(now time.Duration) Ready {
	j.coalesce()
	j.rd.Next = j.nextTimer(now)
	return j.rd
}

func (j *Job) send(to ConnID, m wire.Msg) {
	if to == 0 {
		return
	}
	m.PLen = uint32(len(m.Payload))
	j.rd.Msgs = append(j.rd.Msgs, Envelope{To: to, Msg: m})
}

func (j *Job) fail(to ConnID, seq uint64, err *wire.Error) {
	j.send(to, wire.Msg{Header: wire.Header{Type: wire.TypeError, Code: err.Code, Seq: seq}, Payload: []byte(cutText(err.Msg, maxErrorText))})
}

func (j *Job) closeConn(c ConnID) {
	for _, x := range j.rd.Close {
		if x == c {
			return
		}
	}
	j.rd.Close = append(j.rd.Close, c)
}

// Step handles frame, one message that arrived on connection from.
func (j *Job) Step(now time.Duration, from ConnID, frame []byte) Ready {
	j.begin()
	var m wire.Msg
	if err := wire.Decode(frame, j.lim, &m); err != nil {
		j.badMessage(from, 0, err.(*wire.Error))
		return j.end(now)
	}
	j.step(now, from, &m)
	return j.end(now)
}

func (j *Job) badMessage(from ConnID, seq uint64, err *wire.Error) {
	j.stats.BadMessages++
	j.fail(from, seq, err)
	j.closeConn(from)
	if w := j.conns[from]; w != nil {
		delete(j.conns, from)
		w.conn = 0
	}
}

func (j *Job) step(now time.Duration, from ConnID, m *wire.Msg) {
	if j.closed {
		j.fail(from, m.Seq, wire.Errorf(wire.CodeClosed, "job %q is closed", j.cfg.Job))
		return
	}
	if m.Type == wire.TypeHello {
		j.hello(now, from, m)
		return
	}
	if m.Type.IsBatch() {
		j.batch(now, from, m)
		return
	}
	w := j.conns[from]
	if w == nil {
		// Anything but a Hello first closes the connection: before its
		// Hello is accepted a connection is nobody's, and cheap to drop.
		if m.Type.IsRequest() || m.Type == wire.TypePing {
			j.badMessage(from, m.Seq, wire.Errorf(wire.CodeNotJoined, "%v before the handshake: the first message on a connection must be a Hello", m.Type))
			return
		}
		j.badMessage(from, m.Seq, wire.Errorf(wire.CodeBadRequest, "unexpected %v from a client", m.Type))
		return
	}
	w.lastSeen = now
	if m.Type == wire.TypePing {
		j.send(from, wire.Msg{Header: wire.Header{Type: wire.TypePong, Seq: m.Seq}})
		return
	}
	if !m.Type.IsRequest() {
		j.badMessage(from, m.Seq, wire.Errorf(wire.CodeBadRequest, "unexpected %v from a worker", m.Type))
		return
	}
	if m.Seq == 0 {
		j.badMessage(from, 0, wire.Errorf(wire.CodeBadFrame, "%v with seq 0 (requests number from 1)", m.Type))
		return
	}
	if !w.welcomed {
		j.fail(from, m.Seq, wire.Errorf(wire.CodeNotJoined, "%v before the Welcome: the job waits for %d workers", m.Type, j.want))
		return
	}
	j.advanceMark(w, m.Ack)
	if m.Seq < w.mark {
		return // settled long ago; the worker no longer waits for it
	}
	if w.held[m.Seq] {
		return // answered when it completes, on the worker's current connection
	}
	if r, ok := w.done[m.Seq]; ok {
		j.stats.Duplicates++
		j.resend(w, m, r)
		return
	}
	j.request(now, w, m)
}

func (j *Job) advanceMark(w *worker, ack uint64) {
	if ack <= w.mark {
		return
	}
	w.mark = ack
	for s := range w.done {
		if s < ack {
			w.forget(s)
		}
	}
	w.compactOrder()
}

// resend answers a retried request from the cache; reads are re-executed.
func (j *Job) resend(w *worker, m *wire.Msg, r reply) {
	if r.typ == wire.TypeError {
		j.fail(w.conn, m.Seq, &wire.Error{Code: r.code, Msg: r.msg})
		return
	}
	h := wire.Header{Type: wire.TypeAck, Seq: m.Seq, Flags: r.flags | wire.FlagDup, Round: r.round, Count: r.count, Key: r.key}
	switch r.req {
	case wire.TypePushPull:
		if k := j.key(r.key); k != nil {
			j.sendValue(w.conn, h, k)
			return
		}
	case wire.TypeSaveStates:
		j.saveStates(w, m)
		return
	case wire.TypePushList:
		j.send(w.conn, wire.Msg{Header: h, Payload: []byte(r.msg)})
		return
	}
	j.send(w.conn, wire.Msg{Header: h})
}

// maxAnswers bounds a worker's answer cache: a worker that never advances
// its ack field loses exactly-once for requests this far behind its newest.
const maxAnswers = 1 << 16

func (j *Job) answer(w *worker, seq uint64, req wire.Type, h wire.Header) {
	h.Type, h.Seq = wire.TypeAck, seq
	delete(w.held, seq)
	j.remember(w, seq, reply{typ: wire.TypeAck, flags: h.Flags, round: h.Round, count: h.Count, key: h.Key, req: req})
	j.send(w.conn, wire.Msg{Header: h})
}

func (j *Job) answerValue(w *worker, seq uint64, req wire.Type, h wire.Header, k *key) {
	h.Type, h.Seq = wire.TypeAck, seq
	delete(w.held, seq)
	j.remember(w, seq, reply{typ: wire.TypeAck, flags: h.Flags, round: h.Round, key: k.id, req: req})
	j.sendValue(w.conn, h, k)
}

func (j *Job) reject(w *worker, seq uint64, err *wire.Error) {
	delete(w.held, seq)
	j.remember(w, seq, reply{typ: wire.TypeError, code: err.Code, msg: err.Msg})
	j.fail(w.conn, seq, err)
}

func (j *Job) hold(w *worker, seq uint64) {
	if w.held == nil {
		w.held = map[uint64]bool{}
	}
	w.held[seq] = true
}

// sendValue sends h with k's current value as data.
func (j *Job) sendValue(to ConnID, h wire.Header, k *key) {
	vals, err := j.hostValue(k)
	if err != nil {
		j.fail(to, h.Seq, wire.Errorf(wire.CodeInternal, "key %s: reading the value: %v", k.label(), err))
		return
	}
	var p []byte
	if b, ok := wire.Float32Bytes(vals); ok {
		p = b
	} else {
		start := len(j.scratch)
		j.scratch = wire.AppendFloat32s(j.scratch, vals)
		p = j.scratch[start:]
	}
	h.Key, h.DType, h.Count, h.Offset, h.Total = k.id, wire.DTypeF32, uint32(k.n), uint32(k.off), uint32(k.total)
	if k.str {
		h.Flags |= wire.FlagStrKey
	}
	j.stats.BytesOut += uint64(len(p))
	j.send(to, wire.Msg{Header: h, Payload: p})
	if to != 0 {
		j.rd.Msgs[len(j.rd.Msgs)-1].Ver = k.ver
	}
}

// cpuValue is k's value when a CPU backend holds it: its buffer itself
// (small enough to inline: a pull list reads every key's value).
func cpuValue(k *key) ([]float32, bool) {
	cb, ok := k.stored.(*compute.CPUBuffer)
	if !ok {
		return nil, false
	}
	return cb.Float32s()[:k.n], true
}

// hostValue is k's value on the host: cpuValue, or else the value read
// from the backend into k.host (again only after it changed).
func (j *Job) hostValue(k *key) ([]float32, error) {
	if v, ok := cpuValue(k); ok {
		return v, nil
	}
	if k.host == nil {
		k.host = make([]float32, k.n)
		k.dirty = true
	}
	if k.dirty {
		if err := j.be.Read(k.stored, 0, k.host); err != nil {
			return nil, err
		}
		k.dirty = false
	}
	return k.host, nil
}

// touch marks k's value changed: a new version (Envelope.Ver).
func (j *Job) touch(k *key) {
	k.dirty = true
	j.verSeq++
	k.ver = j.verSeq
}

func (k *key) label() string {
	if k.str {
		return short(k.name)
	}
	return strconv.FormatInt(int64(k.id), 10)
}

func keyLabel(m *wire.Msg) string {
	if m.Flags&wire.FlagStrKey != 0 {
		return fmt.Sprintf("#%016x", m.Key)
	}
	return strconv.FormatInt(int64(m.Key), 10)
}

// optName is the key as optimizer specs name it (lr_mult, wd_mult): the
// string key's name, or the int key in decimal (made once, kept).
func (k *key) optName() string {
	if k.str {
		return k.name
	}
	if k.oname == "" {
		k.oname = strconv.FormatInt(int64(k.id), 10)
	}
	return k.oname
}

// ---- membership ----

func (j *Job) hello(now time.Duration, from ConnID, m *wire.Msg) {
	h, err := wire.DecodeHello(m.Payload, j.lim)
	if err != nil {
		j.badMessage(from, 0, err.(*wire.Error))
		return
	}
	if w := j.conns[from]; w != nil {
		// A reconnecting client may say Hello twice on one connection (it
		// learns of the reconnect after sending on the new connection):
		// the same worker is welcomed again; another is an error.
		if h.WorkerID != "" && h.WorkerID != w.id {
			j.badMessage(from, 0, wire.Errorf(wire.CodeBadRequest, "hello as %s on the connection of worker %s", short(h.WorkerID), short(w.id)))
			return
		}
		w.lastSeen = now
		if w.welcomed {
			j.welcome(w)
			j.notifyMembers(w)
		}
		return
	}
	if h.Role != "" && h.Role != "worker" {
		j.badMessage(from, 0, wire.Errorf(wire.CodeBadRequest, "role %s: only workers join a job", short(h.Role)))
		return
	}
	// Everything is checked before anything changes: a refused Hello
	// leaves no trace (no worker, no want, no mode).
	var w *worker
	if h.WorkerID != "" {
		w = j.workers[h.WorkerID]
		if w == nil {
			// A bad token is told as such; a good one learns the id is gone.
			_, e := j.checkIdentity(from, h, nil)
			if e == nil {
				e = wire.Errorf(wire.CodeRemoved, "worker %s is not in job %s (removed after a silence timeout or a leave, or never joined): join as a new worker", short(h.WorkerID), short(j.cfg.Job))
			}
			j.badMessage(from, 0, e)
			return
		}
	}
	part, e := j.checkIdentity(from, h, w)
	if e != nil {
		// Only this connection is closed: a live session of the worker it
		// tried to resume is untouched.
		j.badMessage(from, 0, e)
		return
	}
	if j.mode != 0 && h.Mode != j.mode {
		j.badMessage(from, 0, wire.Errorf(wire.CodeMode, "job %s runs %v, this worker wants %v", short(j.cfg.Job), j.mode, h.Mode))
		return
	}
	if int64(h.Want) > int64(j.cfg.MaxWorkers) {
		j.badMessage(from, 0, wire.Errorf(wire.CodeLimit, "want %d workers: job %s admits at most %d", h.Want, short(j.cfg.Job), j.cfg.MaxWorkers))
		return
	}
	if e := j.checkWant(h, w); e != nil {
		j.badMessage(from, 0, e)
		return
	}
	for _, d := range h.Keys {
		if k := j.keys[d.Key]; k != nil && !sameShape(k.shape, d.Shape) {
			j.badMessage(from, 0, wire.Errorf(wire.CodeShape, "declared key %s has shape %v, the job has %v", k.label(), d.Shape, k.shape))
			return
		}
	}
	if w != nil {
		if h.Attempt != 0 && h.Attempt < w.attempt {
			// An older Hello read after a newer one (the old connection's
			// reader was slower): that connection is stale.
			j.closeConn(from)
			return
		}
		w.attempt = h.Attempt
		if w.conn != from {
			j.note(Note{Kind: NoteResumed, Worker: w.id, Rank: w.rank})
		}
		if w.conn != 0 && w.conn != from {
			// The old connection is stale (its client moved on): close it
			// without a word, the client reads nothing more from it.
			delete(j.conns, w.conn)
			j.closeConn(w.conn)
		}
	} else {
		if old := j.participantWorker(part); old != nil {
			if old.conn != 0 {
				j.badMessage(from, 0, wire.Errorf(wire.CodeLimit, "participant %s already has worker %s connected in job %s (one worker per participant token)", short(part), short(old.id), short(j.cfg.Job)))
				return
			}
			// The participant's earlier worker lost its connection (and
			// its client its resume key, or it would resume): it makes
			// way for the new one instead of holding the token until its
			// silence timeout.
			j.note(Note{Kind: NoteRemoved, Worker: old.id, Rank: old.rank, Why: "its participant joined again"})
			j.remove(now, old)
		}
		if len(j.workers) >= j.cfg.MaxWorkers {
			j.badMessage(from, 0, wire.Errorf(wire.CodeLimit, "job %s has %d workers, the limit", short(j.cfg.Job), j.cfg.MaxWorkers))
			return
		}
		key, err := j.newResumeKey()
		if err != nil {
			j.badMessage(from, 0, wire.Errorf(wire.CodeInternal, "drawing a resume key: %v", err))
			return
		}
		j.nextID++
		rank := j.freeRank()
		if h.RankHint > 0 && int(h.RankHint) <= j.cfg.MaxWorkers {
			// The rank the worker holds on shard 0, if free here.
			if r := int(h.RankHint - 1); r >= len(j.ranks) || j.ranks[r] == nil {
				rank = r
			}
		}
		if j.runOver() {
			j.newRun(h)
		}
		w = &worker{id: fmt.Sprintf("%s/%d", j.cfg.Job, j.nextID), rank: rank, attempt: h.Attempt, key: key, participant: part}
		j.workers[w.id] = w
		j.markIdle(now)
		for len(j.ranks) <= w.rank {
			j.ranks = append(j.ranks, nil)
		}
		j.ranks[w.rank] = w
		j.membersChanged()
		j.rd.Persist = true
		j.note(Note{Kind: NoteJoined, Worker: w.id, Rank: w.rank})
	}
	if j.mode == 0 {
		j.mode = h.Mode
	}
	j.restored = false
	w.resume = h.Resume
	w.conn, w.lastSeen = from, now
	j.conns[from] = w
	j.rd.Joined = append(j.rd.Joined, from)
	if w.welcomed {
		j.welcome(w)
		j.notifyMembers(w)
		return
	}
	if !j.started && len(j.workers) >= j.want {
		j.started = true
	}
	if j.started {
		// Welcome everyone waiting, in rank order.
		for _, x := range j.ranks {
			if x != nil && !x.welcomed {
				x.welcomed = true
				j.membersChanged()
				j.welcome(x)
			}
		}
		j.notifyMembers(nil)
	}
}

// notifyMembers sends a membership notice (wire.AppendMembers: the ranks of
// every member) to w, or with w nil to every welcomed, connected worker, so
// clients learn of joins and departures as they happen.
func (j *Job) notifyMembers(w *worker) {
	ranks := make([]int, 0, len(j.workers))
	for r, x := range j.ranks {
		if x != nil {
			ranks = append(ranks, r)
		}
	}
	start := len(j.scratch)
	j.scratch = wire.AppendMembers(j.scratch, ranks)
	var m wire.Msg
	if err := wire.Decode(j.scratch[start:], j.lim, &m); err != nil {
		panic("psm: own membership notice does not decode: " + err.Error())
	}
	if w != nil {
		if w.conn != 0 {
			j.send(w.conn, m)
		}
		return
	}
	for _, x := range j.ranks {
		if x != nil && x.welcomed && x.conn != 0 {
			j.send(x.conn, m)
		}
	}
}

func (j *Job) welcome(w *worker) {
	start := len(j.scratch)
	j.scratch = wire.AppendWelcome(j.scratch, &wire.Welcome{WorkerID: w.id, Rank: uint32(w.rank),
		NumWorkers: uint32(len(j.workers)), Shard: uint32(j.cfg.Shard), Heartbeat: uint32(j.cfg.Heartbeat / time.Millisecond),
		Timeout: uint32(j.cfg.Timeout / time.Millisecond), Mode: j.mode,
		ResumeKey: w.key, Window: uint32(min(j.cfg.Window, math.MaxUint32)), WindowBytes: uint64(j.cfg.WindowBytes)})
	var m wire.Msg
	if err := wire.Decode(j.scratch[start:], j.lim, &m); err != nil {
		panic("psm: own welcome does not decode: " + err.Error())
	}
	j.send(w.conn, m)
}

func (j *Job) freeRank() int {
	for r, x := range j.ranks {
		if x == nil {
			return r
		}
	}
	return len(j.ranks)
}

// Disconnect tells the Job that connection conn closed. Its worker stays a
// member until Timeout passes without it resuming.
func (j *Job) Disconnect(now time.Duration, conn ConnID) Ready {
	j.begin()
	delete(j.connTok, conn)
	if w := j.conns[conn]; w != nil {
		delete(j.conns, conn)
		if w.conn == conn {
			w.conn = 0
			if !w.welcomed && now > w.lastSeen {
				// It waited at the start barrier, which is not silence;
				// its silence starts now.
				w.lastSeen = now
			}
		}
	}
	return j.end(now)
}

// Tick removes silent workers and closes rounds whose deadline passed.
func (j *Job) Tick(now time.Duration) Ready {
	j.begin()
	var gone []*worker
	for _, w := range j.workers {
		if now-w.lastSeen >= j.cfg.Timeout && !waiting(w) {
			gone = append(gone, w)
		}
	}
	sort.Slice(gone, func(a, b int) bool { return gone[a].rank < gone[b].rank })
	for _, w := range gone {
		j.note(Note{Kind: NoteRemoved, Worker: w.id, Rank: w.rank, Why: fmt.Sprintf("silent for %v", now-w.lastSeen)})
		j.remove(now, w)
	}
	if j.cfg.RoundDeadline > 0 {
		// Rounds in the order they opened: the due ones are at the front.
		// A due round without its quorum leaves the queue too: it closes
		// when a push or a removal brings the quorum (maybeClose runs
		// then), so it needs no timer (which would fire at once, again
		// and again).
		for len(j.openQ) > 0 {
			e := j.openQ[0]
			if e.stale() {
				j.popOpen()
				continue
			}
			if now-e.at < j.cfg.RoundDeadline {
				break
			}
			if e.l != nil {
				// Due: its keys' own rounds take its place.
				j.listSplit(e.l)
				continue
			}
			j.popOpen()
			j.maybeClose(now, e.k)
		}
	}
	j.markIdle(now)
	j.rd.Expired = j.expired(now)
	return j.end(now)
}

// waiting reports a worker whose Welcome is held at the start barrier
// while its connection is open: waiting is not silence (the connection's
// own liveness is the server's business), so it is not removed.
func waiting(w *worker) bool { return !w.welcomed && w.conn != 0 }

// sortedKeys returns the keys in id order. The keys in byID are already
// in it; only the others (large and string ids) are sorted, then merged
// in. A job of 100,000 dense keys (issue 12) paid a sort of all of them,
// tens of milliseconds, on every worker removal and snapshot.
func (j *Job) sortedKeys() []*key {
	ks := make([]*key, 0, len(j.keys))
	for i := range j.byID {
		if k := j.byID[i].k; k != nil {
			ks = append(ks, k)
		}
	}
	if len(ks) == len(j.keys) {
		return ks
	}
	rest := make([]*key, 0, len(j.keys)-len(ks))
	for id, k := range j.keys {
		if id >= uint64(len(j.byID)) || j.byID[id].k != k {
			rest = append(rest, k)
		}
	}
	sort.Slice(rest, func(a, b int) bool { return rest[a].id < rest[b].id })
	out := make([]*key, 0, len(j.keys))
	for len(ks) > 0 && len(rest) > 0 {
		if ks[0].id < rest[0].id {
			out, ks = append(out, ks[0]), ks[1:]
		} else {
			out, rest = append(out, rest[0]), rest[1:]
		}
	}
	out = append(out, ks...)
	return append(out, rest...)
}

func (j *Job) nextTimer(now time.Duration) time.Duration {
	var next time.Duration
	min := func(t time.Duration) {
		if t <= now {
			t = now + 1
		}
		if next == 0 || t < next {
			next = t
		}
	}
	for _, w := range j.workers {
		if !waiting(w) {
			min(w.lastSeen + j.cfg.Timeout)
		}
	}
	if j.cfg.RoundDeadline > 0 {
		j.dropStale()
		if len(j.openQ) > 0 {
			min(j.openQ[0].at + j.cfg.RoundDeadline)
		}
	}
	if j.cfg.IdleExpiry > 0 && len(j.workers) == 0 {
		if !j.idle {
			min(now) // the next Tick starts the idle clock
		} else {
			min(j.idleFrom + j.cfg.IdleExpiry)
		}
	}
	return next
}

// remove drops w from the job: its rank is freed, it leaves every wait.
func (j *Job) remove(now time.Duration, w *worker) {
	j.listSplitAll()
	j.stats.Removed++
	delete(j.workers, w.id)
	if w.conn != 0 {
		delete(j.conns, w.conn)
		j.fail(w.conn, 0, wire.Errorf(wire.CodeRemoved, "worker %s removed from job %s", short(w.id), short(j.cfg.Job)))
		j.closeConn(w.conn)
	}
	if w.rank < len(j.ranks) && j.ranks[w.rank] == w {
		j.ranks[w.rank] = nil
	}
	j.membersChanged()
	delete(j.barrier, w)
	j.rd.Persist = true
	for id, hs := range j.heldInits {
		out := hs[:0]
		for _, h := range hs {
			if h.w != w {
				out = append(out, h)
			} else {
				j.release(h.resv)
			}
		}
		if len(out) == 0 {
			delete(j.heldInits, id)
		} else {
			j.heldInits[id] = out
		}
	}
	// Free rounds keep their members for the next openRound to replace;
	// a free round that is not reused soon must not keep a removed worker
	// (and all it holds) alive.
	for _, r := range j.roundFree {
		r.mem = nil
	}
	for _, k := range j.sortedKeys() {
		r := k.cur
		if r == nil {
			continue // nothing queued either: pushes queue behind an open round
		}
		q := r.queued[:0]
		for _, a := range r.queued {
			if a.w == w {
				j.be.Free(a.buf)
				continue
			}
			q = append(q, a)
		}
		clear(r.queued[len(q):])
		r.queued = q
		if r.expects(w) {
			r.unexpect(w)
		}
		j.maybeClose(now, k)
	}
	// Inits waiting for a rank 0 that is gone: the first waiting one creates.
	if j.ranks0() == nil {
		ids := make([]uint64, 0, len(j.heldInits))
		for id := range j.heldInits {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
		for _, id := range ids {
			j.createFromHeld(id)
		}
	}
	j.checkBarrier()
	j.notifyMembers(nil)
	j.markIdle(now)
}

func (j *Job) ranks0() *worker {
	if len(j.ranks) == 0 {
		return nil
	}
	return j.ranks[0]
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ---- requests ----

func (j *Job) request(now time.Duration, w *worker, m *wire.Msg) {
	switch m.Type {
	case wire.TypeInit:
		j.init(w, m)
	case wire.TypePush, wire.TypePushPull:
		j.push(now, w, m)
	case wire.TypePull:
		j.pull(w, m)
	case wire.TypeRowPush:
		j.rowPush(now, w, m)
	case wire.TypeRowPull:
		j.rowPull(w, m)
	case wire.TypePushList:
		j.pushList(now, w, m)
	case wire.TypePullList:
		j.pullList(w, m)
	case wire.TypeBarrier:
		if old, ok := j.barrier[w]; ok {
			delete(w.held, old) // a barrier its worker gave up on
		}
		j.hold(w, m.Seq)
		j.barrier[w] = m.Seq
		j.checkBarrier()
	case wire.TypeCommand:
		j.command(w, m)
	case wire.TypeSaveStates:
		j.saveStates(w, m)
	case wire.TypeLoadStates:
		j.loadStates(w, m)
	case wire.TypeLeave:
		j.answer(w, m.Seq, m.Type, wire.Header{})
		// A clean leave: the connection stays open for the worker to
		// close, but no longer belongs to a member.
		delete(j.conns, w.conn)
		w.conn = 0
		j.note(Note{Kind: NoteLeft, Worker: w.id, Rank: w.rank})
		j.remove(now, w)
	}
}

func (j *Job) checkBarrier() {
	if len(j.barrier) == 0 {
		return
	}
	for _, w := range j.workers {
		if w.welcomed {
			if _, ok := j.barrier[w]; !ok {
				return
			}
		}
	}
	n := uint32(len(j.workers))
	ws := make([]*worker, 0, len(j.barrier))
	for w := range j.barrier {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(a, b int) bool { return ws[a].rank < ws[b].rank })
	for _, w := range ws {
		j.answer(w, j.barrier[w], wire.TypeBarrier, wire.Header{Count: n})
	}
	clear(j.barrier)
}

func (j *Job) init(w *worker, m *wire.Msg) {
	noValue := m.Flags&wire.FlagNoValue != 0
	if m.DType != wire.DTypeF32 && !noValue {
		j.badMessage(w.conn, m.Seq, wire.Errorf(wire.CodeBadFrame, "init of key %s with dtype %v (want float32)", keyLabel(m), m.DType))
		return
	}
	meta, err := wire.DecodeInitMeta(m.Meta(), j.lim)
	if err != nil {
		j.badMessage(w.conn, m.Seq, err.(*wire.Error))
		return
	}
	str := m.Flags&wire.FlagStrKey != 0
	if len(meta.Name) > j.cfg.MaxKeyName {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeLimit, "string key %s: a name of %d bytes exceeds the limit of %d", short(meta.Name), len(meta.Name), j.cfg.MaxKeyName))
		return
	}
	if m.Count == 0 {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeBadRequest, "init of key %s with 0 values (a key part holds at least one element)", keyLabel(m)))
		return
	}
	if int64(m.Count) > int64(j.cfg.MaxElems) {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeLimit, "init of key %s: %d elements exceed the limit of %d per key part", keyLabel(m), m.Count, j.cfg.MaxElems))
		return
	}
	if str && wire.StrKeyID(meta.Name) != m.Key {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeBadRequest, "string key %s does not hash to key id %d", short(meta.Name), m.Key))
		return
	}
	if !str && meta.Name != "" {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeBadRequest, "int key %d with a name", int64(m.Key)))
		return
	}
	total := 1
	for _, d := range meta.Shape {
		total *= int(d)
	}
	if total != int(m.Total) {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeShape, "key %s: shape %v has %d elements, message says %d", keyLabel(m), meta.Shape, total, m.Total))
		return
	}
	if k := j.key(m.Key); k != nil {
		if e := k.matches(str, meta.Name, meta.Shape); e != nil {
			j.reject(w, m.Seq, e)
			return
		}
		if int(m.Offset) != k.off || int(m.Count) != k.n {
			j.reject(w, m.Seq, wire.Errorf(wire.CodeShape, "key %s: init of elements [%d, +%d), this shard holds [%d, +%d) (workers disagree on the big-array bound or the number of shards)",
				k.label(), m.Offset, m.Count, k.off, k.n))
			return
		}
		if k.inited[w.id] {
			j.reject(w, m.Seq, wire.Errorf(wire.CodeReinit, "key %s: this worker initialized it already (init and broadcast work once per key)", k.label()))
			return
		}
		if e := j.checkRun(w, k); e != nil {
			j.reject(w, m.Seq, e)
			return
		}
		k.inited[w.id] = true
		j.answer(w, m.Seq, wire.TypeInit, wire.Header{Key: k.id, Round: k.rounds})
		return
	}
	h := heldInit{w: w, seq: m.Seq, str: str, name: meta.Name, shape: meta.Shape, off: m.Offset, total: m.Total, n: m.Count}
	if w.rank == 0 || j.ranks0() == nil {
		if noValue {
			// This init must create the key, but its sender (not rank 0
			// on shard 0) sent no value: it resends one.
			j.reject(w, m.Seq, wire.Errorf(wire.CodeNeedValue, "key %s: no live worker holds rank 0 here: send the value", keyLabel(m)))
			return
		}
		if len(j.keys) >= j.cfg.MaxKeys {
			j.reject(w, m.Seq, wire.Errorf(wire.CodeLimit, "job %s has %d keys, the limit", short(j.cfg.Job), j.cfg.MaxKeys))
			return
		}
		j.create(m.Key, str, h, wire.Float32View(m.Data(), nil))
		return
	}
	for _, x := range j.heldInits[m.Key] {
		if x.w == w {
			return // the same worker, a second request for a key still waiting: wait
		}
	}
	if _, ok := j.heldInits[m.Key]; !ok && len(j.keys)+len(j.heldInits) >= j.cfg.MaxKeys {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeLimit, "job %s has %d keys and waiting inits, the limit", short(j.cfg.Job), j.cfg.MaxKeys))
		return
	}
	if !noValue {
		// The value is kept (a creator candidate if rank 0 leaves): it
		// counts against the budget until the key exists.
		h.resv = 4 * int64(m.Count)
		if !j.reserve(h.resv, false) {
			j.reject(w, m.Seq, j.errBudget("the waiting init of key "+keyLabel(m), h.resv))
			return
		}
		h.data = append([]float32(nil), wire.Float32View(m.Data(), nil)...)
	}
	j.hold(w, m.Seq)
	j.heldInits[m.Key] = append(j.heldInits[m.Key], h)
	j.stats.BytesIn += uint64(len(m.Data()))
}

func (k *key) matches(str bool, name string, shape []int64) *wire.Error {
	if str != k.str || name != k.name {
		return wire.Errorf(wire.CodeShape, "key %s: id collides with another key (%q)", k.label(), name)
	}
	if !sameShape(shape, k.shape) {
		return wire.Errorf(wire.CodeShape, "key %s: shape %v, the job has %v", k.label(), shape, k.shape)
	}
	return nil
}

// createFromHeld creates key id from the first waiting init that carries a
// value (rank 0 is gone); if none does, the waiting inits are asked for
// their values (CodeNeedValue) and the first to send one creates the key.
func (j *Job) createFromHeld(id uint64) {
	var h *heldInit
	for i, x := range j.heldInits[id] {
		if x.data != nil {
			h = &j.heldInits[id][i]
			break
		}
	}
	if h == nil {
		for _, x := range j.heldInits[id] {
			j.release(x.resv)
			j.reject(x.w, x.seq, wire.Errorf(wire.CodeNeedValue, "key %d: no live worker holds rank 0: send the value", int64(id)))
		}
		delete(j.heldInits, id)
		return
	}
	if len(j.keys) >= j.cfg.MaxKeys {
		for _, x := range j.heldInits[id] {
			j.release(x.resv)
			j.reject(x.w, x.seq, wire.Errorf(wire.CodeLimit, "job %s has %d keys, the limit", short(j.cfg.Job), j.cfg.MaxKeys))
		}
		delete(j.heldInits, id)
		return
	}
	j.create(id, h.str, *h, h.data)
}

// create makes key id from value (the creator's init h), answers h and every
// init waiting for the key.
func (j *Job) create(id uint64, str bool, h heldInit, value []float32) {
	n := len(value)
	k := j.newKey()
	k.id, k.str, k.name, k.shape, k.off, k.n, k.total, k.inited, k.run = id, str, h.name, h.shape, int(h.off), n, int(h.total), map[string]bool{}, j.run
	k.whole = k.off == 0 && k.n == k.total
	// The held inits' copies go once the key exists (below); their
	// reservation pays for the key's first.
	hs := j.heldInits[id]
	for i := range hs {
		j.release(hs[i].resv)
		hs[i].resv = 0
	}
	fail := func(e *wire.Error) {
		j.reject(h.w, h.seq, e)
		for _, x := range hs {
			if x.w != h.w {
				j.reject(x.w, x.seq, e)
			}
		}
		delete(j.heldInits, id)
		j.dropKey(k)
	}
	need := keyBytes(n, j.opt, numStates(j.opt, k))
	if !j.reserve(need, false) {
		fail(j.errBudget("key "+k.label(), need))
		return
	}
	k.resv = need
	b, err := j.be.Alloc(n)
	if err == nil {
		err = j.be.Write(b, 0, value)
	}
	if err != nil {
		if b != nil {
			j.be.Free(b)
		}
		j.release(k.resv)
		fail(wire.Errorf(wire.CodeInternal, "key %s: allocating %d values: %v", k.label(), n, err))
		return
	}
	k.stored = b
	j.touch(k)
	j.setKey(k)
	j.rd.Persist = true
	j.stats.BytesIn += uint64(4 * n)
	k.inited[h.w.id] = true
	j.answer(h.w, h.seq, wire.TypeInit, wire.Header{Key: id, Round: 0})
	delete(j.heldInits, id)
	for _, x := range hs {
		if x.w == h.w {
			continue
		}
		if e := k.matches(x.str, x.name, x.shape); e != nil {
			j.reject(x.w, x.seq, e)
			continue
		}
		if int(x.off) != k.off || int(x.n) != k.n {
			j.reject(x.w, x.seq, wire.Errorf(wire.CodeShape, "key %s: init of elements [%d, +%d), this shard holds [%d, +%d) (workers disagree on the big-array bound or the number of shards)",
				k.label(), x.off, x.n, k.off, k.n))
			continue
		}
		k.inited[x.w.id] = true
		j.answer(x.w, x.seq, wire.TypeInit, wire.Header{Key: id, Round: 0})
	}
}

// keyRef is a key of byID with what a list checks of it (list.go):
// the check pass of a list reads these 16 bytes per key, in id order,
// and no line of the key itself (issue 12, many small keys).
type keyRef struct {
	k     *key
	n     uint32 // k.n
	str   bool   // k.str
	whole bool   // k.whole
}

// setKey adds k to j.keys, and to byID if its id is small. Keys are added
// only through setKey and never deleted from a live Job, so byID holds no
// stale key; a key missing from byID is found in the map. A key's n, str
// and whole are fixed before setKey and never change.
func (j *Job) setKey(k *key) {
	j.keys[k.id] = k
	// byID grows to at most about twice the keys (bounded by MaxKeys).
	if k.id < uint64(2*len(j.keys)+1024) {
		if k.id >= uint64(len(j.byID)) {
			j.byID = append(j.byID, make([]keyRef, int(k.id)+1-len(j.byID))...)
			j.byID = j.byID[:cap(j.byID)]
		}
		j.byID[k.id] = keyRef{k: k, n: uint32(k.n), str: k.str, whole: k.whole}
	}
}

// key returns key id (nil if unknown): one slice load for the small ids of
// a many-keys job instead of a map lookup that misses the cache.
func (j *Job) key(id uint64) *key {
	if id < uint64(len(j.byID)) {
		if k := j.byID[id].k; k != nil {
			return k
		}
	}
	return j.keys[id]
}

func (j *Job) lookup(w *worker, m *wire.Msg) *key {
	k := j.key(m.Key)
	if k == nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeUnknownKey, "key %s was not initialized (call Init first)", keyLabel(m)))
		return nil
	}
	if (m.Flags&wire.FlagStrKey != 0) != k.str {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeUnknownKey, "key %s: int and string keys cannot be mixed", keyLabel(m)))
		return nil
	}
	return k
}

func (j *Job) pull(w *worker, m *wire.Msg) {
	k := j.lookup(w, m)
	if k == nil {
		return
	}
	j.stats.Pulls++
	// Pulls are reads: not cached (a retry reads again).
	delete(w.held, m.Seq)
	j.sendValue(w.conn, wire.Header{Type: wire.TypeAck, Seq: m.Seq, Round: k.rounds}, k)
}

func (j *Job) push(now time.Duration, w *worker, m *wire.Msg) {
	k := j.lookup(w, m)
	if k == nil {
		return
	}
	if int(m.Count) != k.n || int(m.Offset) != k.off || int(m.Total) != k.total {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeShape, "key %s: push of elements [%d, +%d) of %d, this shard holds [%d, +%d) of %d",
			k.label(), m.Offset, m.Count, m.Total, k.off, k.n, k.total))
		return
	}
	var c compute.Compression
	switch m.DType {
	case wire.DTypeF32:
	case wire.DType2Bit, wire.DType1Bit:
		c = j.comp
		want := compute.Compress2Bit
		if m.DType == wire.DType1Bit {
			want = compute.Compress1Bit
		}
		if c.Kind != want {
			j.reject(w, m.Seq, wire.Errorf(wire.CodeBadCompression, "key %s: %v push, but the job's gradient compression is %v (send it with command 4 first)", k.label(), m.DType, c))
			return
		}
	default:
		j.badMessage(w.conn, m.Seq, wire.Errorf(wire.CodeBadFrame, "push of key %s without data", k.label()))
		return
	}
	if j.mode == wire.ModeAsync && j.opt == nil && j.cu == nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeMode, "key %s: dist_async needs an optimizer on the server: call SetOptimizer before pushing", k.label()))
		return
	}
	j.stats.Pushes++
	j.stats.BytesIn += uint64(len(m.Data()))
	pull := m.Type == wire.TypePushPull
	if j.mode == wire.ModeSync && m.Round < k.rounds {
		// Its round closed at a deadline without it: dropped.
		j.stats.LatePushes++
		h := wire.Header{Key: k.id, Round: k.rounds - 1, Flags: wire.FlagLate}
		if pull {
			j.answerValue(w, m.Seq, m.Type, h, k)
		} else {
			j.answer(w, m.Seq, m.Type, h)
		}
		return
	}
	buf, bad, err := j.decodePush(k, m, c)
	if bad >= 0 {
		j.stats.NonFinite++
		msg := nonFiniteMsg(k, m.Data(), bad, int(m.Offset))
		if !j.arriveRefused(now, k, arrival{w: w, seq: m.Seq, pull: pull, ext: &arrivalExt{bad: msg}}, true) {
			j.reject(w, m.Seq, wire.Errorf(wire.CodeBadRequest, "%s", msg))
		}
		return
	}
	if err != nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeInternal, "key %s: %v", k.label(), err))
		return
	}
	a := arrival{w: w, seq: m.Seq, pull: pull, buf: buf}
	if j.mode == wire.ModeAsync {
		err := j.update(k, buf)
		k.putFree(buf)
		j.touch(k)
		if err != nil {
			j.reject(w, m.Seq, wire.Errorf(updateCode(err), "key %s: optimizer step: %v", k.label(), err))
			return
		}
		k.rounds++
		j.stats.Updates++
		j.rd.Persist = true
		h := wire.Header{Key: k.id, Round: k.rounds - 1}
		if pull {
			j.answerValue(w, m.Seq, m.Type, h, k)
		} else {
			j.answer(w, m.Seq, m.Type, h)
		}
		return
	}
	j.arrive(now, w, m.Seq, k, &a, buf)
}

// arrive adds a dist_sync push (dense or row-sparse) to k's open round, or
// queues it for the next round when w's push of this round is in.
func (j *Job) arrive(now time.Duration, w *worker, seq uint64, k *key, a *arrival, buf compute.Buffer) {
	if a.lr == nil {
		j.hold(w, seq) // a list is held once (list.go)
	}
	j.splitKey(k)
	r := k.cur
	if r == nil {
		r = j.openRound(now, k)
	}
	if r.expects(w) {
		r.arrive(w)
		*r.add() = *a
		j.maybeClose(now, k)
		return
	}
	for _, q := range r.queued {
		if q.w == w {
			// A worker waits for its push's ack before it pushes the key
			// again, so it never has two pushes ahead of the round; one
			// that does is misbehaving (and would pin memory).
			k.putFree(buf)
			j.settle(a, wire.Errorf(wire.CodeBadRequest, "key %s: a second push while one is already queued for the next round", k.label()))
			return
		}
	}
	r.queued = append(r.queued, *a)
}

// openRound opens a round of k (which has none open) and returns it.
func (j *Job) openRound(now time.Duration, k *key) *round {
	r := j.newRound()
	k.cur = r
	if j.cfg.RoundDeadline > 0 {
		r.opened = now
		// Without a deadline nothing pops the queue: it would grow by a
		// pointer per round for the job's life.
		j.roundSeq++
		r.seq = j.roundSeq
		j.openQ = append(j.openQ, openEnt{k: k, at: now, seq: r.seq})
		if cap(j.openQ) > cap(j.openBuf) {
			j.openBuf = j.openQ[:0]
		}
	}
	// The job's members, built once per change of membership: no entry
	// per rank to write.
	m := j.mem
	if m == nil {
		m = j.members()
	}
	r.mem, r.done, r.nexp, r.waiting = m, 0, m.n, m.n
	if len(m.w) > 64 {
		n := (len(m.w) - 1) / 64 // words for ranks from 64
		if cap(r.doneHi) < n {
			r.doneHi = make([]uint64, n)
		}
		r.doneHi = r.doneHi[:n]
		clear(r.doneHi)
	}
	return r
}

// decodePush copies (and dequantizes) a push's data into a backend buffer.
// A float32 push that holds a NaN or ±Inf is refused: bad is the index of
// the first (else -1), and no buffer is returned.
func (j *Job) decodePush(k *key, m *wire.Msg, c compute.Compression) (buf compute.Buffer, bad int, err error) {
	if m.DType == wire.DTypeF32 {
		return j.writeArrival(k, m.Data())
	}
	// Dequantized values are finite. Dequantize on the host (the part may
	// start inside a word), then write the values.
	if buf, err = j.bufferOf(k); err != nil {
		return nil, -1, err
	}
	words := wire.Float32View(m.Data(), nil)
	per := m.DType.PerWord()
	skip := int(m.Offset) % per
	if need := len(words) * per; cap(k.deq) < need {
		k.deq = make([]float32, need)
	}
	deq := k.deq[:len(words)*per]
	if c.Kind == compute.Compress2Bit {
		kernels.Dequantize2Bit(deq, words, c.Threshold)
	} else {
		kernels.Dequantize1Bit(deq, words, c.Threshold)
	}
	if err := j.be.Write(buf, 0, deq[skip:skip+k.n]); err != nil {
		k.putFree(buf)
		return nil, -1, err
	}
	return buf, -1, nil
}

// writeArrival writes a float32 push's data into an arrival buffer of k
// unless it holds a NaN or ±Inf (bad: the index of the first, else -1): a
// backend that is a compute.FiniteWriter checks while it writes (one read
// of the push); others are checked first.
func (j *Job) writeArrival(k *key, data []byte) (buf compute.Buffer, bad int, err error) {
	fw := j.fw
	fused := fw != nil
	if !fused {
		if bad = kernels.FirstNonFinite(data); bad >= 0 {
			return nil, bad, nil
		}
	}
	if buf, err = j.bufferOf(k); err != nil {
		return nil, -1, err
	}
	// A view, no copy: a push's data is 4-byte aligned in every frame (the
	// header is 56 bytes, list and batch tables are padded to 4, and every
	// value is a 4-byte word); only an unaligned buffer would be decoded
	// into a new slice.
	words := wire.Float32View(data, nil)
	if fused {
		bad, err = fw.WriteFinite(buf, 0, words)
	} else {
		bad, err = -1, j.be.Write(buf, 0, words)
	}
	if err != nil || bad >= 0 {
		k.putFree(buf)
		return nil, bad, err
	}
	return buf, -1, nil
}

// bufferOf returns a free arrival buffer of k, or a new one.
func (j *Job) bufferOf(k *key) (b compute.Buffer, err error) {
	if b = k.spare; b != nil {
		k.spare = nil
		return b, nil
	}
	if l := len(k.free); l > 0 {
		b = k.free[l-1]
		k.free = k.free[:l-1]
		return b, nil
	}
	return j.be.Alloc(k.n)
}

// quorum is how many pushes a round with e expected workers needs to close
// at its deadline.
func (j *Job) quorum(e int) int {
	q := max(j.cfg.QuorumMin, int(math.Ceil(j.cfg.QuorumFrac*float64(e))), 1)
	return min(q, max(e, 1))
}

// maybeClose closes k's round when every expected worker pushed, or when
// the deadline passed with a quorum in.
func (j *Job) maybeClose(now time.Duration, k *key) {
	r := k.cur
	if r == nil || len(r.arrived) == 0 {
		return
	}
	if r.waiting == 0 {
		j.closeRound(now, k, false)
		return
	}
	if j.cfg.RoundDeadline > 0 && now-r.opened >= j.cfg.RoundDeadline && len(r.arrived) >= j.quorum(r.nexp) {
		j.closeRound(now, k, true)
	}
}

func (j *Job) closeRound(now time.Duration, k *key, deadline bool) {
	cur := k.cur
	arr := cur.arrived
	if len(arr) > 1 {
		byRank(arr)
	}
	j.settleRound(k, arr, deadline)
	q := cur.queued
	k.cur = nil
	j.freeRound(cur)
	// Pushes queued for later rounds open the next one.
	if len(q) > 0 {
		j.openQueued(now, k, q)
	}
}

// settleRound closes k's open round (k.cur, a key's own or its list's)
// with its arrivals arr, in rank order: the update, the round's number,
// and each arrival's answer; it clears arr. The caller detaches the round.
func (j *Job) settleRound(k *key, arr []arrival, deadline bool) {
	// The job's Aggregate rule, then the optimizer (aggregate_round.go).
	flags, err := j.combine(k, arr, deadline)
	var r uint64
	if err == nil {
		r = j.roundDone(k)
	} else {
		// A failed update applied nothing: the next round keeps this
		// number, so the workers, which advance on acks only, push
		// into it and not as late.
		j.touch(k)
		r = k.rounds
	}
	for i := range arr {
		a := &arr[i]
		if lr := a.lr; lr != nil && a.buf != nil && err == nil {
			// settleClosed's work for a list's key.
			k.putFree(a.buf)
			if !lr.take(int(a.li), r, flags) {
				j.listSettle(lr, int(a.li), r, flags, nil)
			}
		} else {
			j.settleClosed(k, a, r, flags, err)
		}
		*a = arrival{} // in the same pass: no second one to clear them
	}
}

// roundDone counts k's round as closed, its update applied: the closed
// round's number.
func (j *Job) roundDone(k *key) uint64 {
	j.touch(k)
	r := k.rounds
	k.rounds = r + 1
	j.stats.Rounds++
	j.stats.Updates++
	j.rd.Persist = true
	return r
}

// byRank sorts a closing round's arrivals in rank order (insertion sort:
// few workers, and no allocation).
func byRank(arr []arrival) {
	for i := 1; i < len(arr); i++ {
		for x := i; x > 0 && arr[x].w.rank < arr[x-1].w.rank; x-- {
			arr[x], arr[x-1] = arr[x-1], arr[x]
		}
	}
}

// openQueued opens k's next round with the pushes q queued for it.
func (j *Job) openQueued(now time.Duration, k *key, q []arrival) {
	r := j.openRound(now, k)
	var rest []arrival
	for _, a := range q {
		if r.expects(a.w) {
			r.arrive(a.w)
			*r.add() = a
		} else {
			rest = append(rest, a)
		}
	}
	r.queued = rest
	j.maybeClose(now, k)
}

// settleClosed answers arrival a of k's round r, which closed with flags
// (or failed with err); its buffer goes back to k's free list.
func (j *Job) settleClosed(k *key, a *arrival, r uint64, flags uint16, err error) {
	if a.buf == nil {
		j.settle(a, wire.Errorf(wire.CodeBadRequest, "%s", a.bad()))
		return
	}
	k.putFree(a.buf)
	if err != nil {
		j.settle(a, wire.Errorf(updateCode(err), "key %s: round %d: %v", k.label(), r, err))
		return
	}
	if a.lr != nil {
		j.listSettle(a.lr, int(a.li), r, flags, nil)
		return
	}
	h := wire.Header{Key: k.id, Round: r, Flags: flags}
	if a.pull {
		j.answerValue(a.w, a.seq, wire.TypePushPull, h, k)
	} else {
		j.answer(a.w, a.seq, wire.TypePush, h)
	}
}

// update runs one optimizer update of k with gradient g (the store's own
// update step: optstate.Slot).
func (j *Job) update(k *key, g compute.Buffer) error {
	if j.cu != nil {
		return j.customUpdate(k, g)
	}
	opt := j.opt
	if opt == nil {
		return j.be.Copy(k.stored, g)
	}
	k.slot.T++
	j.numUpdate = max(j.numUpdate, k.slot.T)
	// The schedule follows the key's own update count: MXNet's num_update
	// (the largest count of any key) would depend on the order in which
	// rounds of different keys close, which varies from run to run; when
	// every key is updated every step (training) both are equal, and equal
	// to a single process's.
	var p compute.StepParams
	opt.Params(k.optName(), k.slot.T, k.slot.T, &p)
	if want := opt.Kind().NumStates(&p); len(k.slot.States) != want {
		// The optimizer's states come out of the job's budget before the
		// update step allocates them.
		if need := keyBytes(k.n, opt, want); need > k.resv && !j.rebudget(k, need) {
			return j.errBudget(fmt.Sprintf("the %d optimizer states of key %s", want, k.label()), need-k.resv)
		}
	}
	return k.slot.Step(j.be, opt, k.optName(), k.n, k.slot.T, k.stored, g)
}

// ---- commands and states ----

// Command heads (MXNet's CommandType).
const (
	CmdController     = 0 // body: optimizer spec JSON
	CmdMultiPrecision = 1
	CmdStopServer     = 2
	CmdSyncMode       = 3
	CmdCompression    = 4 // body: "type,threshold"
	CmdProfiler       = 5
)

func (j *Job) command(w *worker, m *wire.Msg) {
	switch int64(m.Key) {
	case CmdController:
		// The spec must fit the optimizer-states codec (wire.DecodeStates
		// reads at most MaxString bytes of it), or states saved with it
		// could not be loaded.
		if lim := j.lim.Get().MaxString; len(m.Payload) > lim {
			j.reject(w, m.Seq, wire.Errorf(wire.CodeBadOptimizer, "optimizer spec of %d bytes exceeds the limit of %d (what saved optimizer states can carry)", len(m.Payload), lim))
			return
		}
		opt, err := optimizer.Parse(m.Payload)
		if err != nil {
			j.reject(w, m.Seq, wire.Errorf(wire.CodeBadOptimizer, "%v", err))
			return
		}
		if e := j.budgetFor(opt, nil); e != nil {
			j.reject(w, m.Seq, e)
			return
		}
		j.opt, j.optJSON, j.numUpdate = opt, append([]byte(nil), m.Payload...), 0
		j.dropCustom()
		for _, k := range j.keys {
			k.slot.Reset(j.be)
		}
		j.rd.Persist = true
	case updater.CommandHead:
		j.setCustom(w, m)
		return
	case CmdAggregate:
		j.setAggregate(w, m)
		return
	case CmdCompression:
		if len(m.Payload) > 256 {
			j.reject(w, m.Seq, wire.Errorf(wire.CodeBadCompression, "gradient compression spec of %d bytes (want \"type,threshold\")", len(m.Payload)))
			return
		}
		c, err := parseCompression(string(m.Payload))
		if err != nil {
			j.reject(w, m.Seq, wire.Errorf(wire.CodeBadCompression, "%v", err))
			return
		}
		if j.comp.Kind != compute.CompressNone && j.comp != c {
			j.reject(w, m.Seq, wire.Errorf(wire.CodeBadCompression, "gradient compression is already %v", j.comp))
			return
		}
		j.comp = c
		j.rd.Persist = true
	}
	j.answer(w, m.Seq, wire.TypeCommand, wire.Header{Key: m.Key})
}

// parseCompression reads MXNet's kSetGradientCompression body "type,threshold".
func parseCompression(s string) (compute.Compression, error) {
	typ, th, ok := strings.Cut(s, ",")
	if !ok {
		return compute.Compression{}, fmt.Errorf("gradient compression %q: want \"type,threshold\"", s)
	}
	t, err := strconv.ParseFloat(strings.TrimSpace(th), 64)
	if err != nil {
		return compute.Compression{}, fmt.Errorf("gradient compression %q: threshold: %v", s, err)
	}
	return compute.ParseCompression(strings.TrimSpace(typ), t)
}

func (j *Job) saveStates(w *worker, m *wire.Msg) {
	if j.cu != nil {
		j.saveCustomStates(w, m)
		return
	}
	if j.opt == nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeBadStates, "save optimizer states: no optimizer set"))
		return
	}
	st := wire.States{Optimizer: j.optJSON, NumUpdate: int64(j.numUpdate)}
	for _, k := range j.sortedKeys() {
		states, err := k.slot.Read(j.be, k.n)
		if err != nil {
			j.reject(w, m.Seq, wire.Errorf(wire.CodeInternal, "save optimizer states: key %s: %v", k.label(), err))
			return
		}
		st.Keys = append(st.Keys, wire.KeyStates{Key: k.id, Str: k.str, Name: k.name, T: int64(k.slot.T),
			Offset: uint32(k.off), Total: uint32(k.total), N: uint32(k.n), States: states})
	}
	start := len(j.scratch)
	j.scratch = wire.AppendStates(j.scratch, &st)
	delete(w.held, m.Seq)
	j.remember(w, m.Seq, reply{typ: wire.TypeAck, req: wire.TypeSaveStates})
	j.send(w.conn, wire.Msg{Header: wire.Header{Type: wire.TypeAck, Seq: m.Seq}, Payload: j.scratch[start:]})
}

func (j *Job) loadStates(w *worker, m *wire.Msg) {
	st, err := wire.DecodeStates(m.Payload, j.lim)
	if err != nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeBadStates, "load optimizer states: %v", err))
		return
	}
	if e := j.installStates(st); e != nil {
		j.reject(w, m.Seq, e)
		return
	}
	j.rd.Persist = true
	j.answer(w, m.Seq, wire.TypeLoadStates, wire.Header{})
}

// installStates checks all of st, then replaces the optimizer states (and,
// if st has one, the optimizer). On error nothing changed.
func (j *Job) installStates(st *wire.States) *wire.Error {
	if e, ok := j.customStates(st); ok {
		return e
	}
	opt := j.opt
	if st.Optimizer != nil {
		o, err := optimizer.Parse(st.Optimizer)
		if err != nil {
			return wire.Errorf(wire.CodeBadStates, "load optimizer states: %v", err)
		}
		opt = o
	}
	if opt == nil {
		return wire.Errorf(wire.CodeBadStates, "load optimizer states: no optimizer set and none in the file")
	}
	ls := make([]optstate.Load, 0, len(st.Keys))
	for _, ks := range st.Keys {
		k := j.keys[ks.Key]
		if k == nil || k.str != ks.Str {
			return wire.Errorf(wire.CodeUnknownKey, "load optimizer states: key %d (%q) is not on this shard", int64(ks.Key), ks.Name)
		}
		if int(ks.N) != k.n || int(ks.Offset) != k.off || int(ks.Total) != k.total {
			return wire.Errorf(wire.CodeBadStates, "load optimizer states: key %s: part [%d,+%d) of %d, stored [%d,+%d) of %d",
				k.label(), ks.Offset, ks.N, ks.Total, k.off, k.n, k.total)
		}
		ls = append(ls, optstate.Load{Slot: &k.slot, Key: k.optName(), Label: k.label(), N: k.n, T: ks.T, States: ks.States})
	}
	code := func(err error) wire.Code {
		if errors.Is(err, optstate.ErrBadStates) {
			return wire.CodeBadStates
		}
		return wire.CodeInternal
	}
	if err := optstate.Check(opt, st.NumUpdate, ls); err != nil {
		return wire.Errorf(code(err), "load optimizer states: %v", err)
	}
	oldOpt := j.opt
	if e := j.budgetFor(opt, st); e != nil {
		return e
	}
	all := make([]*optstate.Slot, 0, len(j.keys))
	for _, k := range j.keys {
		all = append(all, &k.slot)
	}
	if err := optstate.Install(j.be, opt, st.NumUpdate, ls, all); err != nil {
		j.budgetFor(oldOpt, nil) // back to what it was (it fit before)
		return wire.Errorf(code(err), "load optimizer states: %v", err)
	}
	if st.Optimizer != nil {
		j.opt, j.optJSON = opt, append([]byte(nil), st.Optimizer...)
	}
	j.numUpdate = int(st.NumUpdate)
	return nil
}
