package wsm

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// Recv handles frame, one message that arrived on shard's connection of
// epoch (a message of an older epoch is ignored). A message the Machine
// cannot take (malformed, or not something a server sends) fails the shard
// for good. frame may be reused once Recv returns.
func (m *Machine) Recv(shard int, epoch transport.Epoch, frame []byte) {
	sh := m.shards[shard]
	if sh.st == stDead || epoch != sh.epoch {
		return
	}
	msg := &m.msg
	if err := wire.Decode(frame, nil, msg); err != nil {
		m.kill(sh, fmt.Errorf("shard %d sent a bad message: %w: %w", sh.idx, ErrLost, err))
		return
	}
	switch msg.Type {
	case wire.TypeWelcome:
		m.welcome(sh, msg)
	case wire.TypePong:
	case wire.TypeAck, wire.TypeError:
		m.reply(sh, msg)
	case wire.TypeAnswers:
		es, err := wire.DecodeBatch(msg, nil, m.ents[:0])
		if err != nil {
			m.kill(sh, fmt.Errorf("shard %d sent bad answers: %w: %w", sh.idx, ErrLost, err))
			return
		}
		for i := range es {
			if sh.st == stDead {
				break
			}
			m.reply(sh, &es[i])
		}
		clear(es)
		m.ents = es[:0]
	default:
		m.kill(sh, fmt.Errorf("shard %d sent an unexpected %v: %w", sh.idx, msg.Type, ErrLost))
	}
	*msg = wire.Msg{}
}

func (m *Machine) welcome(sh *shard, msg *wire.Msg) {
	w, err := wire.DecodeWelcome(msg.Payload, nil)
	if err != nil {
		m.kill(sh, fmt.Errorf("shard %d: bad welcome: %w: %w", sh.idx, ErrLost, err))
		return
	}
	if sh.st == stIdle || sh.helloEpoch != sh.epoch {
		m.kill(sh, fmt.Errorf("shard %d sent a welcome before any hello: %w", sh.idx, ErrLost))
		return
	}
	first := !sh.welcomed
	sh.workerID, sh.rank, sh.nw = w.WorkerID, int(w.Rank), int(w.NumWorkers)
	if w.ResumeKey != "" {
		sh.resumeKey = w.ResumeKey // every resuming Hello must carry it
	}
	sh.hb = preWelcomeHeartbeat
	if w.Heartbeat > 0 {
		sh.hb = time.Duration(w.Heartbeat) * time.Millisecond
	}
	sh.win = m.cfg.Window
	if adv, ok := advertised(w); ok {
		// A server that advertises its window holds answers by bytes,
		// not by message count.
		sh.win = Window{Requests: min(sh.win.Requests, adv.Requests), Bytes: min(sh.win.Bytes, adv.Bytes), Messages: adv.Requests}
	}
	sh.welcomed, sh.st = true, stReady
	if sh.idx == 0 {
		m.rank, m.nw = sh.rank, sh.nw
	}
	switch {
	case first:
		m.event(Event{Kind: EventConn, Shard: sh.idx, Conn: Connected, Rank: sh.rank, Workers: sh.nw})
		if sh.idx == 0 {
			// The other shards are asked for the rank shard 0 gave.
			for _, o := range m.shards[1:] {
				if o.st == stIdle {
					o.rankHint = uint32(sh.rank + 1)
					o.st, o.helloDue = stJoining, true
					m.wake(o)
				}
			}
		}
	case sh.reconnects > sh.rejoined:
		sh.rejoined = sh.reconnects
		m.event(Event{Kind: EventConn, Shard: sh.idx, Conn: Reconnected, Rank: sh.rank, Workers: sh.nw, ReconnectEpochs: sh.reconnects})
	}
	// Resend what this epoch has not carried yet, oldest first.
	sh.resend, sh.rhead = sh.resend[:0], 0
	for _, x := range sh.order[sh.ohead:] {
		if x.pending() && x.r.sentEpoch != sh.epoch {
			sh.resend = append(sh.resend, x)
		}
	}
	m.wake(sh)
	if !m.joined {
		for _, o := range m.shards {
			if !o.welcomed {
				return
			}
		}
		m.joined = true
		m.rd.Joined = true
	}
}

// advertised is the flow-control window a Welcome advertises, if any: the
// requests and the bytes (request sizes plus the data their answers carry)
// this worker may have unanswered on the connection.
func advertised(w *wire.Welcome) (Window, bool) {
	if w.Window == 0 && w.WindowBytes == 0 {
		return Window{}, false
	}
	win := Window{Requests: int(w.Window), Bytes: int(min(w.WindowBytes, math.MaxInt32))}
	if win.Requests == 0 {
		win.Requests = math.MaxInt32
	}
	if win.Bytes == 0 {
		win.Bytes = math.MaxInt32
	}
	return win, true
}

func (m *Machine) reply(sh *shard, msg *wire.Msg) {
	if wire.IsMembers(msg) {
		if sh.idx == 0 { // one shard's membership is the job's
			m.membership(msg)
		}
		return
	}
	if msg.Seq == 0 {
		if msg.Type == wire.TypeError && msg.Code != wire.CodeClosed {
			// CodeClosed: the server hangs up this connection (it shuts
			// down, or this worker resumed elsewhere); a reconnecting
			// transport carries on, another one reports its end.
			m.kill(sh, fmt.Errorf("shard %d closed the connection: %w: %w", sh.idx, ErrLost, wire.ErrorOf(msg)))
		}
		return
	}
	r := sh.pending(msg.Seq)
	if r == nil {
		return // a duplicate answer, or one nobody waits for
	}
	if msg.Type == wire.TypeError {
		switch msg.Code {
		case wire.CodeNotJoined:
			// The server does not know this worker on this connection:
			// say Hello again; the request is resent after the Welcome.
			r.notJoined++
			if r.notJoined <= maxNotJoined {
				r.sentEpoch = 0
				if sh.st == stReady {
					sh.st, sh.helloDue, sh.helloSent = stJoining, true, false
					m.wake(sh)
				}
				return
			}
		case wire.CodeNeedValue:
			if r.typ == wire.TypeInit && r.flags&wire.FlagNoValue != 0 {
				m.withValue(sh, r)
				return
			}
		}
		m.complete(r, wire.ErrorOf(msg))
		return
	}
	m.complete(r, m.apply(sh, r, msg))
}

// Copied tells the Machine that the driver copied the values of shard's
// Ready.Copies: their requests complete (or wait for Written as well).
func (m *Machine) Copied(shard int) {
	sh := m.shards[shard]
	for i, r := range sh.copying {
		sh.copying[i] = nil
		r.copying = false
		if r.state == rsDone && sh.writingReq != r {
			m.finish(r, r.deferErr)
		}
	}
	sh.copying = sh.copying[:0]
}

// withValue sends init r again, with its value, as a new request.
func (m *Machine) withValue(sh *shard, r *req) {
	m.uncount(sh, r)
	r.state = rsQueued // no longer pending: its old seq is stale
	r.seq, r.sentEpoch = 0, 0
	r.flags &^= wire.FlagNoValue
	r.dt, r.data = wire.DTypeF32, f32Bytes(r.value)
	r.cost = RequestCost + len(r.meta) + len(r.data)
	m.release(r)
}

// apply takes an Ack to r: rounds, values, states.
func (m *Machine) apply(sh *shard, r *req, msg *wire.Msg) error {
	o := r.op
	switch r.typ {
	case wire.TypeInit:
		r.k.pst[r.part].next = msg.Round
	case wire.TypePushList:
		return m.applyList(sh, r, msg)
	case wire.TypePush, wire.TypePushPull, wire.TypeRowPush:
		r.k.pst[r.part].next = msg.Round + 1
		if r.part == 0 && m.cfg.Mode == wire.ModeSync && !m.cfg.NoRoundEvents {
			m.event(Event{Kind: EventRound, Shard: sh.idx, Key: r.k, Round: msg.Round,
				Late: msg.Flags&wire.FlagLate != 0, Rescaled: msg.Flags&wire.FlagRescaled != 0})
		}
	case wire.TypeBarrier:
		o.workers = int(msg.Count)
		m.nw = int(msg.Count)
	case wire.TypeSaveStates:
		st, err := wire.DecodeStates(msg.Payload, nil)
		if err != nil {
			return fmt.Errorf("shard %d: bad states answer: %w", sh.idx, err)
		}
		o.states[sh.idx] = st
	}
	if r.out != nil {
		if msg.DType != wire.DTypeF32 || int(msg.Count) != len(r.out) || len(msg.Data()) != 4*len(r.out) {
			return fmt.Errorf("shard %d answered key %d with %d %v values, want %d float32: %w",
				sh.idx, int64(r.key), msg.Count, msg.DType, len(r.out), wire.Errorf(wire.CodeInternal, "bad answer"))
		}
		if len(r.out) >= bigCopy {
			m.rd.Copies = append(m.rd.Copies, Copy{Dst: r.out, Src: msg.Data()})
			r.copying = true
			sh.copying = append(sh.copying, r)
		} else {
			wire.DecodeFloat32s(msg.Data(), r.out)
		}
	}
	return nil
}

// membership takes a membership notice from shard 0.
func (m *Machine) membership(msg *wire.Msg) {
	ranks, err := wire.DecodeMembers(msg, nil)
	if err != nil {
		// A bad notice is no reason to drop the link: membership only
		// informs; the next notice or barrier corrects it.
		return
	}
	m.nw = len(ranks)
	if slices.Equal(ranks, m.members) {
		return
	}
	m.members = ranks
	m.event(Event{Kind: EventMembers, Shard: 0, Rank: m.rank, Workers: len(ranks), Members: slices.Clone(ranks)})
}
