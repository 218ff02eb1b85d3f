package wsm

import (
	"fmt"
	"math"

	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// KeySpec describes a key to initialize.
type KeySpec struct {
	ID    uint64 // wire key id (wire.IntKeyID, wire.StrKeyID)
	Str   bool   // a string key (Name is its name)
	Name  string
	Shape []int64
	N     int // elements
}

type keyRef struct {
	id  uint64
	str bool
}

// Key is a key the Machine knows (InitKey).
//
// What a list call reads and writes per key is the Key itself, 64 bytes,
// one cache line (TestKeyLayout); the rest is in keyCold, reached through
// an embedded pointer. The Machine allocates Keys in chunks (newKey), so
// keys initialized one after another are neighbours in memory and a list
// of many keys reads them as one sequential stream, which the hardware
// prefetches, instead of one line in three (a Key was 192 bytes). A key of
// one part keeps its part's state in the Key (pst1) and its shard in
// shard1.
type Key struct {
	pst1   [1]partState // pst of a key of one part
	id     uint64
	n      int
	shard1 int32 // the shard of a key of one part; -1: a split key
	str    bool
	*keyCold
	// bgen is the gen of the request pst1[0].busy names, when it was set:
	// a list request leaves its keys' busy behind when it ends (see
	// holder).
	bgen uint64
}

// keyCold is what only a key's init, its single requests and errors read.
type keyCold struct {
	name  string
	meta  []byte // init metadata
	parts []wire.Part
	pst   []partState
	// Ref is the driver's (the Machine never looks at it).
	Ref any
}

// keyChunkMax is the most Keys newKey allocates at once (64 KiB).
const keyChunkMax = 1024

// newKey returns a zeroed Key with its keyCold: the next of m's current
// chunk of Keys, a new chunk (twice the last, up to keyChunkMax) when it
// is used up. A forgotten key's slot stays unused until its chunk goes.
func (m *Machine) newKey() *Key {
	if len(m.keyChunk) == cap(m.keyChunk) {
		m.keyChunk = make([]Key, 0, min(max(2*cap(m.keyChunk), 8), keyChunkMax))
	}
	m.keyChunk = m.keyChunk[:len(m.keyChunk)+1]
	k := &m.keyChunk[len(m.keyChunk)-1]
	k.keyCold = new(keyCold)
	return k
}

// ID, Str and Name identify k.
func (k *Key) ID() uint64   { return k.id }
func (k *Key) Str() bool    { return k.str }
func (k *Key) Name() string { return k.name }

// N is k's number of elements.
func (k *Key) N() int { return k.n }

// Parts is where k lives.
func (k *Key) Parts() []wire.Part { return k.parts }

type partState struct {
	next uint64  // the dist_sync round of the part's next push
	busy *req    // the request in progress on the part (but see holder)
	wait *[]*req // requests behind it, in issue order (made for the first)
}

// holder is the request in progress on part i of k, or nil. A request of
// its own clears its part's busy when it ends; a list request (list.go)
// does not, unless a request waits behind one of its keys: clearing
// 100,000 keys' busy would be a pass over their lines when the answer
// comes. A key of one part (every listed key is one) whose busy names a
// request that ended (rsDone) or was recycled since (its gen is not the
// key's bgen) is free.
func (k *Key) holder(i int) *req {
	b := k.pst[i].busy
	if b != nil && k.shard1 >= 0 && (b.gen != k.bgen || b.state == rsDone) {
		return nil
	}
	return b
}

// hold makes r the request in progress on part i of k.
func (k *Key) hold(i int, r *req) {
	k.pst[i].busy = r
	k.bgen = r.gen // read for a key of one part only
}

// waits reports whether requests wait behind ps.busy.
func (ps *partState) waits() bool { return ps.wait != nil && len(*ps.wait) > 0 }

// waiting is the requests behind ps.busy.
func (ps *partState) waiting() []*req {
	if ps.wait == nil {
		return nil
	}
	return *ps.wait
}

type opKind uint8

const (
	opInit opKind = iota + 1
	opPush
	opPull
	opPushPull
	opBarrier
	opCommand
	opSave
	opLoad
	opLeave
)

type op struct {
	tok     any
	kind    opKind
	left    int
	err     error
	k       *Key
	workers int
	states  []*wire.States
	reqs    []*req // of cancellable operations
	cancel  bool
}

type reqState uint8

const (
	rsFree    reqState = iota
	rsWaiting          // behind an earlier request on its key part
	rsQueued           // released to the shard's queue
	rsPending          // sent (seq assigned), not answered
	rsDone             // answered, completion deferred (its body is being written)
)

type req struct {
	gen   uint64 // tells a queue entry of a recycled request from a live one
	op    *op
	typ   wire.Type
	sh    *shard
	k     *Key
	part  int
	state reqState

	seq       uint64
	sentEpoch transport.Epoch
	flags     uint16
	dt        wire.DType
	count     uint32
	offset    uint32
	total     uint32
	key       uint64 // wire key id, or a command head
	meta      []byte
	data      []byte    // the body: a view of the caller's values
	out       []float32 // where a value answer goes
	value     []float32 // an init's value (sent on CodeNeedValue)
	cost      int
	counted   bool
	fl        *flight // the message that first carried it (counted requests)
	notJoined int
	deferErr  error
	copying   bool   // its answer's values are being copied (Ready.Copies)
	lkeys     []*Key // a list request's keys (list.go)
	lfreed    bool   // applyList already freed lkeys (listDone has nothing to do)
	lwait     bool   // a request waits behind one of lkeys (listDone frees them)
}

func (m *Machine) newReq(o *op, typ wire.Type, sh *shard) *req {
	var r *req
	if n := len(m.free); n > 0 {
		r = m.free[n-1]
		m.free = m.free[:n-1]
	} else {
		r = new(req)
	}
	m.gen++
	r.gen, r.op, r.typ, r.sh, r.part = m.gen, o, typ, sh, -1
	return r
}

func (m *Machine) putReq(r *req) {
	*r = req{}
	m.free = append(m.free, r)
}

func (m *Machine) newOp(tok any, kind opKind, left int) *op {
	var o *op
	if n := len(m.opFree); n > 0 {
		o = m.opFree[n-1]
		m.opFree = m.opFree[:n-1]
	} else {
		o = new(op)
	}
	o.tok, o.kind, o.left = tok, kind, left
	return o
}

func (m *Machine) putOp(o *op) {
	reqs := o.reqs[:0]
	*o = op{reqs: reqs}
	m.opFree = append(m.opFree, o)
}

// check returns an error if the Machine cannot take calls.
func (m *Machine) check() error {
	if m.closed != nil {
		return fmt.Errorf("wsm: %w", m.closed)
	}
	if !m.joined {
		return fmt.Errorf("wsm: not joined yet: %w", ErrArg)
	}
	return nil
}

// Key returns the key with wire id and kind, or nil.
func (m *Machine) Key(id uint64, str bool) *Key { return m.keys[keyRef{id, str}] }

// InitKey registers the key spec describes and initializes it on the
// servers with value (its spec.N elements; only rank 0 uploads it). The
// operation completes once the key exists on every shard for every worker
// (its Done is reported with tok). A failed init forgets the key, unless
// the error is the server's CodeReinit. value must stay untouched until
// then.
func (m *Machine) InitKey(tok any, spec KeySpec, value []float32) (*Key, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if spec.N < 1 || len(value) != spec.N {
		return nil, fmt.Errorf("wsm: init key %d: %d values for %d elements: %w", spec.ID, len(value), spec.N, ErrArg)
	}
	if uint64(spec.N) > math.MaxUint32 {
		return nil, fmt.Errorf("wsm: init key %d: %d values exceed the wire's 2^32-1: %w", spec.ID, spec.N, ErrArg)
	}
	ref := keyRef{spec.ID, spec.Str}
	if m.keys[ref] != nil {
		return nil, fmt.Errorf("wsm: init key %d: already initialized: %w", spec.ID, ErrArg)
	}
	parts, err := wire.Place(nil, spec.ID, spec.N, len(m.shards), m.bound)
	if err != nil {
		return nil, fmt.Errorf("wsm: %w: %w", err, ErrArg)
	}
	for _, p := range parts {
		if 4*uint64(p.Len)+1<<16 > math.MaxUint32 {
			return nil, fmt.Errorf("wsm: init key %d: a part of %d values does not fit one wire message (4 GiB): use more shards: %w", spec.ID, p.Len, ErrArg)
		}
	}
	k := m.newKey()
	k.id, k.str, k.name, k.n, k.parts, k.shard1 = spec.ID, spec.Str, spec.Name, spec.N, parts, -1
	if len(parts) == 1 {
		k.pst, k.shard1 = k.pst1[:], int32(parts[0].Shard)
	} else {
		k.pst = make([]partState, len(parts))
	}
	k.meta = wire.AppendInitMeta(nil, &wire.InitMeta{Name: spec.Name, Shape: spec.Shape})
	m.keys[ref] = k
	o := m.newOp(tok, opInit, len(parts))
	o.k = k
	m.ops[tok] = o
	for i, p := range parts {
		r := m.newReq(o, wire.TypeInit, m.shards[p.Shard])
		m.keyReq(r, k, i)
		r.count, r.meta = uint32(p.Len), k.meta
		r.value = value[p.Offset : p.Offset+p.Len]
		if m.rank == 0 {
			r.dt, r.data = wire.DTypeF32, f32Bytes(r.value)
		} else {
			r.flags |= wire.FlagNoValue
		}
		o.reqs = append(o.reqs, r)
		m.submit(r)
	}
	return k, nil
}

// ForgetKey drops k (after its init failed, or for a retry).
func (m *Machine) ForgetKey(k *Key) {
	if m.keys[keyRef{k.id, k.str}] == k {
		delete(m.keys, keyRef{k.id, k.str})
	}
}

func (m *Machine) keyReq(r *req, k *Key, i int) {
	p := k.parts[i]
	r.k, r.part = k, i
	r.key = k.id
	if k.str {
		r.flags |= wire.FlagStrKey
	}
	r.offset, r.total = uint32(p.Offset), uint32(k.n)
}

// f32Bytes is the wire bytes of f: a view where the byte order allows.
func f32Bytes(f []float32) []byte {
	if b, ok := wire.Float32Bytes(f); ok {
		return b
	}
	return wire.AppendFloat32s(nil, f)
}

// Push sends this worker's value of k: n values in data (dt DTypeF32), or
// the packed 2bit/1bit words of n values. data stays untouched until the
// operation's Done (dist_sync: once the round closed).
func (m *Machine) Push(tok any, k *Key, dt wire.DType, data []float32, n int) error {
	return m.pushPull(tok, k, dt, data, n, nil)
}

// PushPull is Push, then the new value into out, in one round trip.
func (m *Machine) PushPull(tok any, k *Key, dt wire.DType, data []float32, n int, out []float32) error {
	if len(out) != k.n {
		return fmt.Errorf("wsm: pushpull key %d: output of %d values, key has %d: %w", k.id, len(out), k.n, ErrArg)
	}
	return m.pushPull(tok, k, dt, data, n, out)
}

func (m *Machine) pushPull(tok any, k *Key, dt wire.DType, data []float32, n int, out []float32) error {
	if err := m.check(); err != nil {
		return err
	}
	if n != k.n {
		return fmt.Errorf("wsm: push of %d values to key %d of %d: %w", n, k.id, k.n, ErrArg)
	}
	if dt != wire.DTypeF32 && dt != wire.DType2Bit && dt != wire.DType1Bit || len(data) != dt.Words(n) {
		return fmt.Errorf("wsm: push key %d: %d words of %v for %d values: %w", k.id, len(data), dt, n, ErrArg)
	}
	typ, kind := wire.TypePush, opPush
	if out != nil {
		typ, kind = wire.TypePushPull, opPushPull
	}
	o := m.newOp(tok, kind, len(k.parts))
	for i, p := range k.parts {
		r := m.newReq(o, typ, m.shards[p.Shard])
		m.keyReq(r, k, i)
		r.dt, r.count = dt, uint32(p.Len)
		w0, nw := wire.PackedSpan(dt, p.Offset, p.Len)
		r.data = f32Bytes(data[w0 : w0+nw])
		if out != nil {
			r.out = out[p.Offset : p.Offset+p.Len]
		}
		m.submit(r)
	}
	return nil
}

// Pull fills out (k's N values) with the servers' value of k.
func (m *Machine) Pull(tok any, k *Key, out []float32) error {
	if err := m.check(); err != nil {
		return err
	}
	if len(out) != k.n {
		return fmt.Errorf("wsm: pull key %d into %d values, key has %d: %w", k.id, len(out), k.n, ErrArg)
	}
	o := m.newOp(tok, opPull, len(k.parts))
	for i, p := range k.parts {
		r := m.newReq(o, wire.TypePull, m.shards[p.Shard])
		m.keyReq(r, k, i)
		r.out = out[p.Offset : p.Offset+p.Len]
		m.submit(r)
	}
	return nil
}

// Barrier enters a barrier (on shard 0: every worker talks to every shard,
// so one shard's membership is the job's); Done.Workers is the job's size.
func (m *Machine) Barrier(tok any) error {
	if err := m.check(); err != nil {
		return err
	}
	o := m.newOp(tok, opBarrier, 1)
	m.ops[tok] = o
	r := m.newReq(o, wire.TypeBarrier, m.shards[0])
	o.reqs = append(o.reqs, r)
	m.submit(r)
	return nil
}

// Command sends command head with body to every shard (MXNet's
// SendCommandToServers: optimizer specs, gradient compression).
func (m *Machine) Command(tok any, head int, body []byte) error {
	return m.all(tok, opCommand, func(r *req, _ int) {
		r.typ, r.key, r.meta = wire.TypeCommand, wire.IntKeyID(head), body
	})
}

// SaveStates asks every shard for its optimizer states; Done.States has
// their tables, by shard.
func (m *Machine) SaveStates(tok any) error {
	return m.all(tok, opSave, func(r *req, _ int) { r.typ = wire.TypeSaveStates })
}

// LoadStates sends tables[shard] (wire.AppendStates) to every shard.
func (m *Machine) LoadStates(tok any, tables [][]byte) error {
	if len(tables) != len(m.shards) {
		return fmt.Errorf("wsm: load states: %d tables for %d shards: %w", len(tables), len(m.shards), ErrArg)
	}
	return m.all(tok, opLoad, func(r *req, s int) { r.typ, r.meta = wire.TypeLoadStates, tables[s] })
}

// Leave leaves the job on every shard (so others' rounds stop waiting for
// this worker).
func (m *Machine) Leave(tok any) error {
	return m.all(tok, opLeave, func(r *req, _ int) { r.typ = wire.TypeLeave })
}

func (m *Machine) all(tok any, kind opKind, mk func(r *req, shard int)) error {
	if err := m.check(); err != nil {
		return err
	}
	o := m.newOp(tok, kind, len(m.shards))
	if kind == opSave {
		o.states = make([]*wire.States, len(m.shards))
	}
	m.ops[tok] = o
	for i, sh := range m.shards {
		r := m.newReq(o, 0, sh)
		mk(r, i)
		o.reqs = append(o.reqs, r)
		m.submit(r)
	}
	return nil
}

// Cancel abandons the operation tok (its caller stopped waiting): requests
// not sent yet are dropped, answers to the others are ignored, and no Done
// is reported. Only InitKey, Barrier, Command, SaveStates, LoadStates and
// Leave can be cancelled.
func (m *Machine) Cancel(tok any) {
	o := m.ops[tok]
	if o == nil {
		return
	}
	delete(m.ops, tok)
	o.cancel = true
	for _, r := range o.reqs {
		if r.op != o {
			continue // finished and reused
		}
		switch r.state {
		case rsWaiting, rsQueued, rsPending:
			m.complete(r, ErrClosed)
		}
	}
}

// submit hands a new request to its shard: it waits behind an earlier
// request on the same key part, or is released to the shard's queue.
func (m *Machine) submit(r *req) {
	sh := r.sh
	if sh.st == stDead {
		r.state = rsQueued // complete expects a live state
		m.complete(r, sh.dead)
		return
	}
	r.cost = RequestCost + len(r.meta) + len(r.data)
	if r.out != nil {
		r.cost += 4 * len(r.out)
	}
	// dist_sync pushes are outside the window (see the package doc).
	r.counted = !(m.cfg.Mode == wire.ModeSync && (r.typ == wire.TypePush || r.typ == wire.TypePushPull || r.typ == wire.TypeRowPush || r.typ == wire.TypePushList))
	if r.k != nil {
		ps := &r.k.pst[r.part]
		if b := r.k.holder(r.part); b != nil {
			if b.lkeys != nil {
				b.lwait = true
			}
			r.state = rsWaiting
			if ps.wait == nil {
				ps.wait = new([]*req)
			}
			*ps.wait = append(*ps.wait, r)
			return
		}
		r.k.hold(r.part, r)
	}
	m.release(r)
}

func (m *Machine) release(r *req) {
	r.state = rsQueued
	sh := r.sh
	sh.queue = append(sh.queue, qent{r, r.gen})
	m.wake(sh)
}

// complete finishes request r with err: it leaves the window, its key part
// moves on, and its operation finishes with its last request.
func (m *Machine) complete(r *req, err error) {
	sh := r.sh
	if r.state == rsPending {
		m.uncount(sh, r)
	}
	if r.k != nil {
		ps := &r.k.pst[r.part]
		if r.state == rsWaiting {
			w := ps.waiting()
			for i, x := range w {
				if x == r {
					copy(w[i:], w[i+1:])
					w[len(w)-1] = nil
					*ps.wait = w[:len(w)-1]
					break
				}
			}
		} else {
			m.freePart(r.k, r.part, r)
		}
	} else if r.lkeys != nil {
		m.listDone(r)
	}
	r.state = rsDone
	if sh.writingReq == r || r.copying {
		// Its body is being written, or its answer copied: the caller
		// gets its data back at Written, or its values at Copied.
		r.deferErr = err
		return
	}
	m.finish(r, err)
}

// freePart ends r's hold on part i of k: the next request waiting on it
// is released.
func (m *Machine) freePart(k *Key, i int, r *req) {
	m.freeState(&k.pst[i], r)
}

// freeState is freePart on the part's state ps.
func (m *Machine) freeState(ps *partState, r *req) {
	if ps.busy != r {
		return
	}
	ps.busy = nil
	if ps.waits() {
		w := *ps.wait
		next := w[0]
		copy(w, w[1:])
		w[len(w)-1] = nil
		*ps.wait = w[:len(w)-1]
		next.k.hold(next.part, next)
		if next.sh.st == stDead {
			next.state = rsQueued
			m.complete(next, next.sh.dead)
		} else {
			m.release(next)
		}
	}
}

// finish counts r in its operation and recycles it.
func (m *Machine) finish(r *req, err error) {
	o := r.op
	m.putReq(r)
	if err != nil && o.err == nil {
		o.err = err
	}
	o.left--
	if o.left > 0 {
		return
	}
	if o.cancel {
		m.putOp(o)
		return
	}
	if m.ops[o.tok] == o {
		delete(m.ops, o.tok)
	}
	if o.kind == opInit && o.err != nil && !isReinit(o.err) {
		m.ForgetKey(o.k)
	}
	m.rd.Done = append(m.rd.Done, Done{Tok: o.tok, Err: o.err, Workers: o.workers, States: o.states})
	m.putOp(o)
}

func isReinit(err error) bool {
	we, ok := err.(*wire.Error)
	return ok && we.Code == wire.CodeReinit
}
