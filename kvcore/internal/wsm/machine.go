package wsm

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// Config configures a Machine. Zero fields take the defaults named.
type Config struct {
	Shards int // parameter-server shards (>= 1)
	Mode   wire.Mode
	Join   transport.Join
	// Window bounds the requests in flight per shard (DefaultWindow); a
	// Welcome that advertises a smaller window lowers it.
	Window Window
	// BatchEntry is the most bytes (sent plus answered) a request may move
	// to travel in a batch (default 16 KiB); BatchBytes and BatchEntries
	// bound one batch (defaults 1 MiB and 4096).
	BatchEntry, BatchBytes, BatchEntries int
	// NoRoundEvents leaves out the EventRound reports (a driver that
	// nobody listens to: a list of many keys would report every key).
	NoRoundEvents bool
}

// Window bounds what is in flight on one shard.
type Window struct {
	Requests int // requests sent and not yet answered
	Bytes    int // their cost: RequestCost + data sent + data expected back
	// Messages bounds the request messages (a batch is one) with an
	// unanswered request: a server answers one message in at most one
	// message per step, so this bounds the answers it queues.
	Messages int
}

// DefaultWindow is the window used until the server advertises one. Its
// 32 messages suit a relay that queues 64 messages per connection and
// closes a connection whose queue is full.
var DefaultWindow = Window{Requests: 4096, Bytes: 16 << 20, Messages: 32}

// RequestCost is the fixed cost of a request in the byte window (its
// header, and the answer's), so that a window of bytes also bounds the
// number of tiny requests.
const RequestCost = 64

// Before a Welcome gives the server's heartbeat interval, a shard whose
// Hello went out pings this often.
const preWelcomeHeartbeat = 100 * time.Millisecond

// maxNotJoined bounds how often one request is resent after CodeNotJoined.
const maxNotJoined = 8

// Errors of a Machine.
var (
	// ErrLost is wrapped by the errors of requests on a shard whose
	// connection failed for good (Lost, a bad message, a refusal).
	ErrLost = errors.New("connection to the parameter server lost")
	// ErrClosed (the transport's: one closed error in every layer) is
	// wrapped by the errors of requests failed by Close.
	ErrClosed = transport.ErrClosed
	// ErrArg is wrapped by the errors of calls with bad arguments.
	ErrArg = errors.New("bad argument")
)

// Outgoing is one message to send: Head then Body as one message on
// shard Shard's connection of Epoch (transport.Transport.Send).
type Outgoing struct {
	Shard      int
	Epoch      transport.Epoch
	Head, Body []byte
	// Type and Entries describe it (for tests and metrics).
	Type    wire.Type
	Entries int
}

// Done reports a finished operation.
type Done struct {
	Tok any
	Err error
	// Workers is a barrier's answer: the job's live workers.
	Workers int
	// States are a SaveStates' tables, one per shard.
	States []*wire.States
}

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	EventRound   EventKind = iota + 1 // a dist_sync round of Key closed (its part on the first shard)
	EventMembers                      // the job's members changed (shard 0's notices)
	EventConn                         // a shard's connection changed state
)

// ConnState is what an EventConn reports.
type ConnState uint8

// Connection states (the transport's Watcher reports the attempts).
const (
	Connected   ConnState = iota + 1 // first Welcome on the shard
	Reconnected                      // Welcome after a reconnection
	Lost                             // the shard failed for good (Err)
)

// Event is one report of a Machine.
type Event struct {
	Kind  EventKind
	Shard int

	Key             *Key
	Round           uint64
	Late, Rescaled  bool
	Rank, Workers   int
	Members         []int // a copy
	Conn            ConnState
	Err             error
	ReconnectEpochs int // EventConn Reconnected: how many reconnections the shard had
}

// Ready is what a Machine asks its driver to do; see Machine.Ready.
type Ready struct {
	Done   []Done
	Events []Event
	// Wake lists shards whose Next may now return a message.
	Wake []int
	// Joined is set by the call after which every shard has welcomed
	// this worker for the first time; JoinErr if joining failed.
	Joined  bool
	JoinErr error
	// Next is when Tick should run next (0: no timer needed).
	Next time.Duration
	// Copies are big answers' values for the driver to copy into their
	// operations' outputs, so that copying needs no lock shared by every
	// shard: Src aliases the frame given to Recv; once they are copied
	// (before the shard's next Recv) the driver calls Copied(shard), and
	// only then do their requests complete.
	Copies []Copy
}

// Copy is a value to decode (wire.DecodeFloat32s) from Src into Dst.
type Copy struct {
	Dst []float32
	Src []byte
}

// bigCopy is the value size (elements) from which Recv leaves the copy to
// the driver (Ready.Copies).
const bigCopy = 1 << 16

type shardState uint8

const (
	stIdle    shardState = iota // not started (waits for shard 0's rank)
	stJoining                   // Hello due or sent, no Welcome on this epoch yet
	stReady                     // welcomed on this epoch
	stDead                      // failed for good
)

type shard struct {
	idx        int
	epoch      transport.Epoch
	st         shardState
	helloDue   bool
	helloSent  bool // on this epoch
	helloEpoch transport.Epoch
	welcomed   bool // ever
	reconnects int  // epochs after the first
	rejoined   int  // reconnects already reported by a Welcome
	workerID   string
	resumeKey  string // the worker's secret (its Welcome's), sent in every resuming Hello
	rankHint   uint32
	attempt    uint32
	rank, nw   int
	hb         time.Duration
	win        Window
	dead       error

	seq uint64
	// order holds every seq from the lowest unanswered one on, in order
	// (seqs are dense), with its request: answered ones are stale
	// entries, recognized by the request's own seq and state. It is the
	// pending table: a seq's entry is found by its distance to the first.
	order   []seqReq
	ohead   int
	queue   []qent // released, not yet sent: queue[qhead:]
	qhead   int
	resend  []seqReq // to resend on this epoch, in seq order: resend[rhead:]
	rhead   int
	inReqs  int
	inBytes int
	inMsgs  int // messages with counted requests in flight

	writing    bool
	writingReq *req   // the single request whose body is being written
	copying    []*req // answered, values being copied by the driver (Copied)
	pingDue    bool
	sent       bool // something went out since the last Tick looked
	lastActive time.Duration

	head  []byte // header (+ meta) scratch of the message being written
	bb    wire.BatchBuilder
	bdata []byte
	ents  []*req // requests of the batch being built
}

type qent struct {
	r   *req
	gen uint64
}

func (e qent) live() bool { return e.r.gen == e.gen && e.r.state == rsQueued }

type seqReq struct {
	seq uint64
	r   *req
	gen uint64 // r's generation when it took seq (requests are pooled)
}

// pending reports whether x's request is still unanswered with that seq.
func (x seqReq) pending() bool {
	return x.r != nil && x.r.gen == x.gen && x.r.seq == x.seq && x.r.state == rsPending
}

// Machine is the worker side of the dist protocol; see the package
// documentation.
type Machine struct {
	cfg    Config
	bound  int
	shards []*shard
	keys   map[keyRef]*Key
	// keyChunk is where newKey takes the next Key from.
	keyChunk []Key
	rank     int
	nw       int
	joined   bool
	closed   error

	members []int
	now     time.Duration
	rd      Ready
	gen     uint64
	woken   []bool
	free    []*req
	flights []*flight
	ops     map[any]*op // cancellable operations by token
	opFree  []*op
	msg     wire.Msg
	ents    []wire.Msg
	lrs     []wire.ListResult // a push list's answer, decoded (list.go)
}

// New returns a Machine; call Start to begin joining.
func New(cfg Config) (*Machine, error) {
	if cfg.Shards < 1 {
		return nil, fmt.Errorf("wsm: %d shards: %w", cfg.Shards, ErrArg)
	}
	if cfg.Mode != wire.ModeSync && cfg.Mode != wire.ModeAsync {
		return nil, fmt.Errorf("wsm: mode %v: %w", cfg.Mode, ErrArg)
	}
	if cfg.Window.Requests <= 0 {
		cfg.Window.Requests = DefaultWindow.Requests
	}
	if cfg.Window.Bytes <= 0 {
		cfg.Window.Bytes = DefaultWindow.Bytes
	}
	if cfg.Window.Messages <= 0 {
		cfg.Window.Messages = DefaultWindow.Messages
	}
	if cfg.BatchEntry <= 0 {
		cfg.BatchEntry = 16 << 10
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = 1 << 20
	}
	if cfg.BatchEntries <= 0 {
		cfg.BatchEntries = 4096
	}
	m := &Machine{cfg: cfg, bound: cfg.Join.BigArrayBound, keys: map[keyRef]*Key{}, ops: map[any]*op{},
		woken: make([]bool, cfg.Shards)}
	if m.bound <= 0 {
		m.bound = wire.DefaultBigArrayBound
	}
	for i := range cfg.Shards {
		m.shards = append(m.shards, &shard{idx: i, epoch: transport.FirstEpoch,
			win: cfg.Window, hb: preWelcomeHeartbeat})
	}
	return m, nil
}

// Shards is the number of shards.
func (m *Machine) Shards() int { return len(m.shards) }

// Rank is this worker's rank (shard 0's), valid once joined.
func (m *Machine) Rank() int { return m.rank }

// NumWorkers is the job's number of workers as last reported.
func (m *Machine) NumWorkers() int { return m.nw }

// Joined reports whether every shard has welcomed this worker.
func (m *Machine) Joined() bool { return m.joined }

// Epoch is shard's current epoch.
func (m *Machine) Epoch(shard int) transport.Epoch { return m.shards[shard].epoch }

// Reconnects is how many times shard's connection was replaced.
func (m *Machine) Reconnects(shard int) int { return m.shards[shard].reconnects }

// InFlight is what shard has in flight against its window.
func (m *Machine) InFlight(shard int) Window {
	sh := m.shards[shard]
	return Window{Requests: sh.inReqs, Bytes: sh.inBytes, Messages: sh.inMsgs}
}

// Window is shard's window.
func (m *Machine) Window(shard int) Window { return m.shards[shard].win }

// Start makes shard 0's Hello due.
func (m *Machine) Start() {
	sh := m.shards[0]
	if sh.st == stIdle {
		sh.st, sh.helloDue = stJoining, true
		m.wake(sh)
	}
}

// Ready returns what the calls since the last Ready asked for. Its slices
// are reused by the next Ready.
func (m *Machine) Ready() *Ready {
	rd := &m.rd
	rd.Next = m.nextTick()
	return rd
}

// Clear empties Ready (the driver calls it after carrying Ready out).
func (m *Machine) Clear() {
	rd := &m.rd
	clear(rd.Done)
	clear(rd.Events)
	clear(rd.Copies)
	rd.Done, rd.Events, rd.Wake, rd.Copies = rd.Done[:0], rd.Events[:0], rd.Wake[:0], rd.Copies[:0]
	rd.Joined, rd.JoinErr = false, nil
	clear(m.woken)
}

func (m *Machine) wake(sh *shard) {
	if !m.woken[sh.idx] {
		m.woken[sh.idx] = true
		m.rd.Wake = append(m.rd.Wake, sh.idx)
	}
}

func (m *Machine) event(e Event) { m.rd.Events = append(m.rd.Events, e) }

func (m *Machine) nextTick() time.Duration {
	var hb time.Duration
	for _, sh := range m.shards {
		if sh.st == stJoining && sh.helloSent || sh.st == stReady {
			if hb == 0 || sh.hb < hb {
				hb = sh.hb
			}
		}
	}
	if hb == 0 {
		return 0
	}
	return m.now + max(hb/2, time.Millisecond)
}

// Tick tells the Machine the time: a shard whose Hello went out and that
// sent nothing for its heartbeat interval gets a ping.
func (m *Machine) Tick(now time.Duration) {
	m.now = now
	for _, sh := range m.shards {
		if !(sh.st == stJoining && sh.helloSent || sh.st == stReady) {
			sh.lastActive = now
			continue
		}
		if sh.sent {
			sh.sent, sh.lastActive = false, now
			continue
		}
		if now-sh.lastActive >= sh.hb && !sh.pingDue {
			sh.pingDue = true
			m.wake(sh)
		}
	}
}

// Reconnected tells the Machine that shard's transport replaced its
// connection: epoch is the new one. The shard's next message is its Hello;
// requests wait for the Welcome and are then resent.
func (m *Machine) Reconnected(shard int, epoch transport.Epoch) {
	sh := m.shards[shard]
	if epoch <= sh.epoch {
		return
	}
	sh.epoch = epoch
	sh.reconnects++
	if sh.st == stDead || sh.st == stIdle {
		return
	}
	sh.st, sh.helloDue, sh.helloSent, sh.pingDue = stJoining, true, false, false
	sh.resend, sh.rhead = sh.resend[:0], 0
	m.wake(sh)
}

// Lost tells the Machine that shard's transport failed for good: what waits
// on it fails with an error wrapping ErrLost and err.
func (m *Machine) Lost(shard int, err error) {
	m.kill(m.shards[shard], fmt.Errorf("shard %d: %w: %w", shard, ErrLost, err))
}

// Close fails every operation still waiting (ErrClosed) and every later
// call.
func (m *Machine) Close() {
	if m.closed != nil {
		return
	}
	m.closed = ErrClosed
	for _, sh := range m.shards {
		if sh.st != stDead {
			m.failShard(sh, fmt.Errorf("shard %d: %w", sh.idx, ErrClosed))
		}
	}
}

// kill marks sh dead and fails what waits on it.
func (m *Machine) kill(sh *shard, err error) {
	if sh.st == stDead {
		return
	}
	m.failShard(sh, err)
	if !m.joined && m.rd.JoinErr == nil {
		m.rd.JoinErr = err
	}
	m.event(Event{Kind: EventConn, Shard: sh.idx, Conn: Lost, Err: err})
}

func (m *Machine) failShard(sh *shard, err error) {
	sh.st, sh.dead = stDead, err
	sh.helloDue, sh.pingDue = false, false
	// Everything on the shard: pending (in seq order), queued, waiting.
	// Completing one can release (and fail) the next on its key part, or
	// recycle a request listed later: each is checked when its turn comes.
	var all []qent
	for _, x := range sh.order[sh.ohead:] {
		if x.pending() {
			all = append(all, qent{x.r, x.r.gen})
		}
	}
	for _, e := range sh.queue[sh.qhead:] {
		if e.live() {
			all = append(all, e)
		}
	}
	for _, k := range m.sortedKeys() {
		for i, p := range k.parts {
			if p.Shard == sh.idx {
				for _, r := range k.pst[i].waiting() {
					all = append(all, qent{r, r.gen})
				}
			}
		}
	}
	for _, e := range all {
		if e.r.gen == e.gen && (e.r.state == rsPending || e.r.state == rsQueued || e.r.state == rsWaiting) {
			m.complete(e.r, err)
		}
	}
	sh.queue, sh.qhead = sh.queue[:0], 0
	sh.resend, sh.rhead = sh.resend[:0], 0
}

func (m *Machine) sortedKeys() []*Key {
	ks := make([]*Key, 0, len(m.keys))
	for _, k := range m.keys {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b *Key) int {
		if a.id != b.id {
			if a.id < b.id {
				return -1
			}
			return 1
		}
		if a.str == b.str {
			return 0
		}
		if !a.str {
			return -1
		}
		return 1
	})
	return ks
}
