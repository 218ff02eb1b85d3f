package wsm

import (
	"github.com/webkv/webkv/kvcore/wire"
)

// Next returns the next message to send on shard, or false if there is
// none now (the driver waits until Ready.Wake names the shard). Its bytes
// stay valid, and Next returns nothing more for the shard, until
// Written(shard). Messages of one shard must be sent in the order Next
// gives them, each with the epoch it names.
//
// Order: the Hello when due; once welcomed, the requests to resend on this
// epoch (oldest first), then new requests as the window allows; a ping when
// due (only after the Hello).
func (m *Machine) Next(shard int) (Outgoing, bool) {
	sh := m.shards[shard]
	if sh.writing || sh.st == stDead || sh.st == stIdle {
		return Outgoing{}, false
	}
	if sh.helloDue {
		return m.hello(sh), true
	}
	if sh.st == stReady {
		if out, ok := m.fromResend(sh); ok {
			return out, true
		}
		if out, ok := m.fromQueue(sh); ok {
			return out, true
		}
	}
	if sh.helloSent && sh.pingDue {
		sh.pingDue = false
		sh.head = wire.AppendHeader(sh.head[:0], &wire.Header{Type: wire.TypePing})
		return m.out(sh, wire.TypePing, 0, sh.head, nil), true
	}
	return Outgoing{}, false
}

// Written tells the Machine that the message Next gave for shard was handed
// to the transport (successfully or not: a message lost with its
// connection is resent after the reconnection).
func (m *Machine) Written(shard int) {
	sh := m.shards[shard]
	if !sh.writing {
		return
	}
	sh.writing = false
	if r := sh.writingReq; r != nil {
		sh.writingReq = nil
		if r.state == rsDone && !r.copying {
			m.finish(r, r.deferErr)
		}
	}
}

func (m *Machine) out(sh *shard, t wire.Type, entries int, head, body []byte) Outgoing {
	sh.writing, sh.sent, sh.pingDue = true, true, false
	return Outgoing{Shard: sh.idx, Epoch: sh.epoch, Head: head, Body: body, Type: t, Entries: entries}
}

func (m *Machine) hello(sh *shard) Outgoing {
	sh.helloDue, sh.helloSent, sh.helloEpoch = false, true, sh.epoch
	sh.attempt++
	j := m.cfg.Join
	sh.head = wire.AppendHello(sh.head[:0], &wire.Hello{Job: j.Job, Role: "worker", Token: j.Token,
		WorkerID: sh.workerID, Mode: m.cfg.Mode, Want: uint32(max(0, j.Workers)), RankHint: sh.rankHint, Attempt: sh.attempt,
		ResumeKey: sh.resumeKey, Resume: j.Resume})
	return m.out(sh, wire.TypeHello, 0, sh.head, nil)
}

// lowest is the lowest unanswered seq of sh (the header's ack).
func (sh *shard) lowest() uint64 {
	for sh.ohead < len(sh.order) {
		x := sh.order[sh.ohead]
		if x.pending() {
			return x.seq
		}
		sh.order[sh.ohead] = seqReq{}
		sh.ohead++
	}
	sh.order, sh.ohead = sh.order[:0], 0
	return sh.seq + 1
}

// compactOrder reuses the space of answered entries at the front.
func (sh *shard) compactOrder() {
	sh.lowest()
	if sh.ohead < 1024 || sh.ohead < len(sh.order)/2 {
		return
	}
	n := copy(sh.order, sh.order[sh.ohead:])
	clear(sh.order[n:])
	sh.order, sh.ohead = sh.order[:n], 0
}

// pending returns the unanswered request with seq, or nil.
func (sh *shard) pending(seq uint64) *req {
	if sh.ohead >= len(sh.order) {
		return nil
	}
	first := sh.order[sh.ohead].seq
	if seq < first || seq-first >= uint64(len(sh.order)-sh.ohead) {
		return nil
	}
	x := sh.order[sh.ohead+int(seq-first)]
	if x.seq != seq || !x.pending() {
		return nil
	}
	return x.r
}

// sameBatch reports whether x may join a batch that starts with r: same
// type, and same dtype (an init batch mixes inits with and without a
// value: the entry's FlagNoValue says).
func sameBatch(r, x *req) bool {
	return x.typ == r.typ && (x.dt == r.dt || r.typ == wire.TypeInit)
}

// batchable reports whether r may travel in a batch.
func (m *Machine) batchable(r *req) bool {
	return wire.BatchFor(r.typ) != 0 && r.cost-RequestCost <= m.cfg.BatchEntry
}

// admit reports whether the window lets r go now, in a new message
// (first) or in the message being built.
func (sh *shard) admit(r *req, first bool) bool {
	if !r.counted || sh.inReqs == 0 {
		return true
	}
	if first && sh.inMsgs+1 > sh.win.Messages {
		return false
	}
	return sh.inReqs+1 <= sh.win.Requests && sh.inBytes+r.cost <= sh.win.Bytes
}

// flight counts the unanswered counted requests a message carried.
type flight struct{ left int }

func (m *Machine) newFlight() *flight {
	if n := len(m.flights); n > 0 {
		f := m.flights[n-1]
		m.flights = m.flights[:n-1]
		return f
	}
	return new(flight)
}

// launch assigns r its seq (first send, in the message of fl) and marks it
// sent on this epoch.
func (m *Machine) launch(sh *shard, r *req, fl *flight) {
	if r.seq == 0 {
		sh.seq++
		r.seq = sh.seq
		sh.order = append(sh.order, seqReq{r.seq, r, r.gen})
		if r.counted {
			sh.inReqs++
			sh.inBytes += r.cost
			if fl.left == 0 {
				sh.inMsgs++
			}
			fl.left++
			r.fl = fl
		}
	}
	r.state = rsPending
	r.sentEpoch = sh.epoch
}

// uncount takes a pending r out of the window.
func (m *Machine) uncount(sh *shard, r *req) {
	if !r.counted {
		return
	}
	sh.inReqs--
	sh.inBytes -= r.cost
	if f := r.fl; f != nil {
		r.fl = nil
		if f.left--; f.left == 0 {
			sh.inMsgs--
			m.flights = append(m.flights, f)
		}
	}
	if sh.qhead < len(sh.queue) {
		m.wake(sh) // the window may admit the next
	}
}

// fromResend sends the next request(s) to resend on this epoch.
func (m *Machine) fromResend(sh *shard) (Outgoing, bool) {
	live := func(x seqReq) bool {
		return x.pending() && x.r.sentEpoch != sh.epoch
	}
	for sh.rhead < len(sh.resend) && !live(sh.resend[sh.rhead]) {
		sh.rhead++
	}
	if sh.rhead == len(sh.resend) {
		clear(sh.resend)
		sh.resend, sh.rhead = sh.resend[:0], 0
		return Outgoing{}, false
	}
	r := sh.resend[sh.rhead].r
	sh.rhead++
	m.launch(sh, r, nil) // sent on this epoch now; already in the window
	if !m.batchable(r) {
		return m.single(sh, r), true
	}
	sh.ents = append(sh.ents[:0], r)
	size := r.cost
	for sh.rhead < len(sh.resend) && len(sh.ents) < m.cfg.BatchEntries {
		e := sh.resend[sh.rhead]
		if !live(e) {
			sh.rhead++
			continue
		}
		x := e.r
		if !sameBatch(r, x) || !m.batchable(x) || size+x.cost > m.cfg.BatchBytes {
			break
		}
		m.launch(sh, x, nil)
		sh.ents = append(sh.ents, x)
		size += x.cost
		sh.rhead++
	}
	return m.batch(sh), true
}

// fromQueue sends the next new request(s) the window admits.
func (m *Machine) fromQueue(sh *shard) (Outgoing, bool) {
	for sh.qhead < len(sh.queue) && !sh.queue[sh.qhead].live() {
		sh.queue[sh.qhead] = qent{}
		sh.qhead++
	}
	if sh.qhead == len(sh.queue) {
		sh.queue, sh.qhead = sh.queue[:0], 0
		return Outgoing{}, false
	}
	r := sh.queue[sh.qhead].r
	if !sh.admit(r, true) {
		return Outgoing{}, false
	}
	sh.queue[sh.qhead] = qent{}
	sh.qhead++
	sh.compactOrder()
	fl := m.newFlight()
	defer func() {
		if fl.left == 0 {
			m.flights = append(m.flights, fl)
		}
	}()
	if !m.batchable(r) {
		m.launch(sh, r, fl)
		return m.single(sh, r), true
	}
	m.launch(sh, r, fl)
	sh.ents = append(sh.ents[:0], r)
	size := r.cost
	for sh.qhead < len(sh.queue) && len(sh.ents) < m.cfg.BatchEntries {
		e := sh.queue[sh.qhead]
		if !e.live() {
			sh.queue[sh.qhead] = qent{}
			sh.qhead++
			continue
		}
		x := e.r
		if !sameBatch(r, x) || !m.batchable(x) || size+x.cost > m.cfg.BatchBytes || !sh.admit(x, false) {
			break
		}
		m.launch(sh, x, fl)
		sh.ents = append(sh.ents, x)
		size += x.cost
		sh.queue[sh.qhead] = qent{}
		sh.qhead++
	}
	return m.batch(sh), true
}

// header is r's request header (without PLen).
func (m *Machine) header(sh *shard, r *req) wire.Header {
	h := wire.Header{Type: r.typ, Flags: r.flags, DType: r.dt, Seq: r.seq, Key: r.key,
		Count: r.count, Offset: r.offset, Total: r.total}
	if r.typ == wire.TypePush || r.typ == wire.TypePushPull || r.typ == wire.TypeRowPush {
		h.Round = r.k.pst[r.part].next
	}
	return h
}

// single builds a message of one request (r launched).
func (m *Machine) single(sh *shard, r *req) Outgoing {
	h := m.header(sh, r)
	h.Ack = sh.lowest()
	h.PLen = uint32(len(r.meta) + len(r.data))
	sh.head = wire.AppendHeader(sh.head[:0], &h)
	sh.head = append(sh.head, r.meta...)
	if len(r.data) > 0 {
		sh.writingReq = r
	}
	return m.out(sh, r.typ, 1, sh.head, r.data)
}

// batch builds a request batch of sh.ents (launched): the table as head,
// the entries' data, copied together, as body.
func (m *Machine) batch(sh *shard) Outgoing {
	if len(sh.ents) == 1 {
		return m.single(sh, sh.ents[0])
	}
	first := sh.ents[0]
	bt, dt := wire.BatchFor(first.typ), first.dt
	if bt == wire.TypeInits {
		dt = wire.DTypeF32 // entries without a value say so in their flags
	}
	sh.bb.Reset(bt, dt)
	sh.bdata = sh.bdata[:0]
	for _, r := range sh.ents {
		h := m.header(sh, r)
		if bt == wire.TypeInits {
			sh.bb.AddInit(&h, len(r.meta))
			sh.bdata = append(sh.bdata, r.meta...)
		} else {
			sh.bb.Add(&h)
		}
		sh.bdata = append(sh.bdata, r.data...)
	}
	n := len(sh.ents)
	clear(sh.ents)
	head := sh.bb.Head(sh.lowest(), len(sh.bdata))
	return m.out(sh, bt, n, head, sh.bdata)
}
