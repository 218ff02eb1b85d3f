package psm

import (
	"time"

	"github.com/webkv/webkv/kvcore/wire"
)

// Batches (wire/batch.go). A request batch is checked whole, then each of
// its entries is handled in this one Step exactly as the single request it
// stands for (seq, answer cache, held rounds): one trip through the job for
// many small keys. A worker that sent a batch gets its replies batched too:
// at the end of every call, the replies (Ack and Error with a seq) to such
// a worker are gathered into Answers messages, in their order, each at the
// place of its first reply; other messages to it (Welcome, membership
// notices, big values) keep their place between them.

// Coalescing bounds: a reply with more payload than maxCoalesce goes alone
// (copying it into an Answers would cost more than its own header), and an
// Answers message is closed at maxAnswersBytes or maxAnswersEntries.
const (
	maxCoalesce       = 64 << 10
	maxAnswersBytes   = 4 << 20
	maxAnswersEntries = 1 << 16
)

type batchState struct {
	entries []wire.Msg               // decoded entries of the batch being handled
	out     []Envelope               // the coalesced messages' slice of the next call
	open    map[ConnID]*answersGroup // groups being gathered, by connection
	groups  []*answersGroup          // for reuse
}

type answersGroup struct {
	at    int // index in out of the group's place
	first Envelope
	n     int
	b     wire.AnswersBuilder
}

// batch handles a request batch from connection from.
func (j *Job) batch(now time.Duration, from ConnID, m *wire.Msg) {
	if m.Type == wire.TypeAnswers {
		j.badMessage(from, 0, wire.Errorf(wire.CodeBadRequest, "answers from a client"))
		return
	}
	es, err := wire.DecodeBatch(m, j.lim, j.bt.entries[:0])
	if err != nil {
		j.badMessage(from, 0, err.(*wire.Error))
		return
	}
	if w := j.conns[from]; w != nil {
		w.batches = true
	}
	for i := range es {
		j.step(now, from, &es[i])
		if j.closing(from) {
			break // a bad entry: the connection is being closed
		}
	}
	clear(es) // drop the references to the frame
	j.bt.entries = es[:0]
}

func (j *Job) closing(c ConnID) bool {
	for _, x := range j.rd.Close {
		if x == c {
			return true
		}
	}
	return false
}

// coalescible reports whether e may go into an Answers message.
func coalescible(e *Envelope) bool {
	t := e.Msg.Type
	if e.Msg.Flags&wire.FlagList != 0 && e.Msg.DType == wire.DTypeNone && len(e.Msg.Payload) > 0 {
		return false // a push list's answer table: Answers entries carry no such payload
	}
	return (t == wire.TypeAck || t == wire.TypeError) && e.Msg.Seq != 0 && len(e.Msg.Payload) <= maxCoalesce
}

// coalesce rewrites j.rd.Msgs, gathering the replies to batch-speaking
// workers into Answers messages (see the top of this file).
func (j *Job) coalesce() {
	msgs := j.rd.Msgs
	if len(msgs) < 2 {
		return
	}
	bt := &j.bt
	// Only connections with two or more coalescible replies matter.
	found := false
	for i := range msgs {
		if coalescible(&msgs[i]) {
			if w := j.conns[msgs[i].To]; w != nil && w.batches {
				found = true
				break
			}
		}
	}
	if !found {
		return
	}
	if bt.open == nil {
		bt.open = map[ConnID]*answersGroup{}
	}
	out := bt.out[:0]
	used := 0
	closeGroup := func(c ConnID) {
		g := bt.open[c]
		if g == nil {
			return
		}
		delete(bt.open, c)
		if g.n < 2 {
			return // a lone reply stays as it is
		}
		var m wire.Msg
		m, j.scratch = g.b.Append(j.scratch)
		out[g.at] = Envelope{To: c, Msg: m}
	}
	for i := range msgs {
		e := msgs[i]
		w := j.conns[e.To]
		if w == nil || !w.batches || !coalescible(&e) {
			closeGroup(e.To)
			out = append(out, e)
			continue
		}
		g := bt.open[e.To]
		if g != nil && (g.n >= maxAnswersEntries || g.b.Size()+len(e.Msg.Payload) > maxAnswersBytes) {
			closeGroup(e.To)
			g = nil
		}
		if g == nil {
			if used == len(bt.groups) {
				bt.groups = append(bt.groups, &answersGroup{})
			}
			g = bt.groups[used]
			used++
			g.at, g.first, g.n = len(out), e, 1
			g.b.Reset()
			bt.open[e.To] = g
			out = append(out, e)
			continue
		}
		if g.n == 1 {
			g.b.Add(&g.first.Msg)
		}
		g.b.Add(&e.Msg)
		g.n++
	}
	for c := range bt.open {
		closeGroup(c)
	}
	// Drop the envelopes of replies that went into Answers: out holds
	// their places only for the groups' first replies.
	for _, g := range bt.groups[:used] {
		g.first = Envelope{}
	}
	bt.out = msgs[:0]
	j.rd.Msgs = out
	// out and msgs swap roles: the next call appends to the old msgs.
	for i := range bt.out[:cap(bt.out)] {
		bt.out[:cap(bt.out)][i] = Envelope{}
	}
}
