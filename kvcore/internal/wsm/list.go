package wsm

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/wire"
)

// List requests (wire/list.go): the pushes or pulls of many whole keys in
// one request with one seq, one dense value buffer and one answer. A list
// request holds every key's part as a single request holds its one (a
// later request on one of its keys waits for it), is resent whole after a
// reconnection with the same seq (the server answers a list it has seen
// from its answer cache), and completes as one operation.

// Listable reports whether k may go into a list request now: it lives
// whole on one shard, nothing is in progress on it, and its values are
// small (at most Config.BatchEntry bytes). Big keys and split keys go on
// their own. ListAdd repeats these tests inline for the keys after a
// list's first (TestListAddAgreesWithListable): a change here is a change
// there.
func (m *Machine) Listable(k *Key) bool {
	ps := &k.pst1[0] // k.pst[0] for a key of one part
	b := ps.busy     // k.holder(0), inlined
	return k.shard1 >= 0 && (b == nil || b.gen != k.bgen || b.state == rsDone) && !ps.waits() && 4*k.n <= m.cfg.BatchEntry
}

// ListShard is the shard a listable key lives on.
func (k *Key) ListShard() int { return int(k.shard1) }

// PushList sends this worker's values of keys in one request: data holds
// their values back to back (float32, each key's N). Every key must be
// Listable, on one shard, and of one kind (int or string keys), with at
// most wire.MaxListKeys keys, none twice. keys and data stay untouched
// until the operation's Done (dist_sync: once every key's round closed). The server
// may refuse some keys (a NaN, a failed optimizer step): their pushes
// were not applied, and Done's error is the first refusal.
func (m *Machine) PushList(tok any, keys []*Key, data []float32) error {
	return m.list(tok, wire.TypePushList, keys, data)
}

// PullList fills out with the servers' values of keys, back to back.
// Same conditions as PushList.
func (m *Machine) PullList(tok any, keys []*Key, out []float32) error {
	return m.list(tok, wire.TypePullList, keys, out)
}

func (m *Machine) list(tok any, typ wire.Type, keys []*Key, vals []float32) error {
	if err := m.check(); err != nil {
		return err
	}
	if len(keys) == 0 || len(keys) > wire.MaxListKeys {
		return fmt.Errorf("wsm: %v of %d keys (1 to %d): %w", typ, len(keys), wire.MaxListKeys, ErrArg)
	}
	shard, str := keys[0].ListShard(), keys[0].str
	total := 0
	for _, k := range keys {
		if !m.Listable(k) || k.ListShard() != shard || k.str != str {
			return fmt.Errorf("wsm: %v: key %d cannot join the list: %w", typ, k.id, ErrArg)
		}
		total += k.n
	}
	if len(vals) != total {
		return fmt.Errorf("wsm: %v of %d keys: %d values, the keys hold %d: %w", typ, len(keys), len(vals), total, ErrArg)
	}
	var l ListReq
	// The list's keys are keys itself: ListAdd writes each back in place.
	l.StartList(tok, typ == wire.TypePushList, len(keys), total, keys[:0])
	for _, k := range keys {
		if !m.ListAdd(&l, k) {
			// Only a key listed twice: the checks above passed.
			l.lfree(m)
			return fmt.Errorf("wsm: %v: key %d cannot join the list twice: %w", typ, k.id, ErrArg)
		}
	}
	return m.SendList(&l, vals)
}

// lfree undoes the ListAdds of l, which is not sent.
func (l *ListReq) lfree(m *Machine) {
	if l.r == nil {
		return
	}
	for _, k := range l.keys {
		k.pst1[0].busy = nil
		if l.push {
			k.pst1[0].next-- // ListAdd counted the round
		}
	}
	o := l.r.op
	m.putReq(l.r)
	m.putOp(o)
	l.r = nil
}

// ListReq is a list request built one key at a time, in the driver's own
// pass over its keys (StartList, ListAdd, SendList): PushList and PullList
// make two more passes over the keys (their check, then the table), each
// touching every key's line again.
type ListReq struct {
	tok     any
	push    bool
	r       *req // made by the first ListAdd
	shard   int32
	str     bool // the shard and kind of the first key
	lb      wire.ListBuilder
	keys    []*Key
	total   int
	maxVals int // the most values the list takes (StartList)
}

// StartList readies l for a list request of operation tok (a push list
// when push, else a pull list) of about n keys (sizes the table) and at
// most maxVals values: a key that would take the list past them (or past
// wire.MaxListKeys keys) does not join. The keys are appended to
// keys[:0]. The table's memory is l's: a ListReq that was sent is started
// again only after its list's Done.
func (l *ListReq) StartList(tok any, push bool, n, maxVals int, keys []*Key) {
	*l = ListReq{tok: tok, push: push, keys: keys[:0], lb: l.lb, maxVals: maxVals}
	l.lb.Reset(wire.TypePullList, min(n, wire.MaxListKeys))
}

// Keys is the keys added to l.
func (l *ListReq) Keys() []*Key { return l.keys }

// Total is the values of the keys added to l.
func (l *ListReq) Total() int { return l.total }

// ListAdd adds k to list l and reports whether it did: k must be Listable,
// and on the shard and of the kind of l's first key, and l must have room
// (StartList's maxVals, wire.MaxListKeys keys). These are ListAdd's
// own checks: a driver needs none of its own before it (a key refused
// here is either not Listable, and goes on its own, or for another
// list). An added key is held by the list (as by a request of its own:
// later requests on it wait) until the list's Done; SendList must follow.
// A push list counts the key's round at once (the round after the one the
// list names): taken, it stays (applyList corrects it by what the answer
// says); refused or failed, it goes back.
func (m *Machine) ListAdd(l *ListReq, k *Key) bool {
	// Every check in one condition, the first key's set-up out of line:
	// ListAdd runs once per key of a list call, in the engine worker's
	// pass that sends it (RATIONALE: "Why does ListAdd alone check a key
	// that joins a list, and list's loop for one group's keys run on its
	// own?").
	ps := &k.pst1[0]
	if b := ps.busy; l.r == nil || k.shard1 != l.shard || k.str != l.str || len(l.keys) == wire.MaxListKeys ||
		l.total+k.n > l.maxVals || b != nil && b.gen == k.bgen && b.state != rsDone || ps.wait != nil && len(*ps.wait) > 0 ||
		4*k.n > m.cfg.BatchEntry {
		if l.r != nil || !m.Listable(k) || k.n > l.maxVals {
			return false
		}
		m.listOpen(l, k)
	}
	l.lb.Add(k.id, ps.next)
	if l.push {
		ps.next++
	}
	ps.busy, k.bgen = l.r, l.r.gen // k.hold(0, l.r)
	l.keys = append(l.keys, k)
	l.total += k.n
	return true
}

// listOpen makes the request of list l, whose first key is k.
func (m *Machine) listOpen(l *ListReq, k *Key) {
	typ, kind := wire.TypePullList, opPull
	if l.push {
		typ, kind = wire.TypePushList, opPush
	}
	l.r = m.newReq(m.newOp(l.tok, kind, 1), typ, m.shards[k.shard1])
	l.shard, l.str = k.shard1, k.str
	if k.str {
		l.r.flags |= wire.FlagStrKey
	}
	l.lb.Reset(typ, 0) // keeps the table StartList sized
}

// SendList sends list l with vals: for a push list the keys' values back
// to back, for a pull list where their values go (as PushList and
// PullList). A list without keys is an error (nothing is sent, no Done
// follows); any other failure is the operation's Done (the keys are
// freed), as for a request whose shard is dead.
func (m *Machine) SendList(l *ListReq, vals []float32) error {
	r := l.r
	if r == nil {
		return fmt.Errorf("wsm: a list of no keys: %w", ErrArg)
	}
	l.r, l.tok = nil, nil
	r.lkeys = l.keys
	r.meta = l.lb.Table() // l's memory (see StartList)
	r.flags |= l.lb.Flags()
	r.count, r.total = uint32(len(l.keys)), uint32(l.total)
	if r.typ == wire.TypePushList {
		r.dt, r.data = wire.DTypeF32, f32Bytes(vals)
	} else {
		r.out = vals
	}
	err := m.check()
	if err == nil && len(vals) != l.total {
		err = fmt.Errorf("wsm: %v of %d keys: %d values, the keys hold %d: %w", r.typ, len(l.keys), len(vals), l.total, ErrArg)
	}
	if err != nil {
		r.state = rsQueued // complete expects a live state
		m.complete(r, err)
		return nil
	}
	m.submit(r)
	return nil
}

// listDone frees the key parts of list request r, which ends. Its keys
// are free once it ended (Key.holder): only those a request waits behind
// are freed here, and the rounds of a push list that applyList did not
// take go back (ListAdd counted them).
func (m *Machine) listDone(r *req) {
	undo := r.typ == wire.TypePushList
	if r.lfreed || !undo && !r.lwait {
		return
	}
	for _, k := range r.lkeys {
		ps := &k.pst1[0] // k.pst[0]: a listed key has one part
		if undo {
			ps.next--
		}
		m.freeState(ps, r)
	}
}

// applyList takes the Ack of push list r: every key's round (ListAdd
// counted the round after the one named: an answer that every push was
// taken as named, without round events, needs no pass over the keys).
// When it passes over them it frees each key's part as it goes
// (listDone's work: complete follows at once): a later request waiting
// on a key starts from the round set here, as it would after listDone.
func (m *Machine) applyList(sh *shard, r *req, msg *wire.Msg) error {
	if len(msg.Payload) == 0 && (m.cfg.Mode != wire.ModeSync || m.cfg.NoRoundEvents) &&
		msg.Type == wire.TypeAck && msg.Flags&wire.FlagList != 0 && msg.DType == wire.DTypeNone && int(msg.Count) == len(r.lkeys) {
		// Every key's push was taken for the round the list named (an
		// empty answer: DecodeListAnswer's table would be all zero
		// deltas), and no round events are wanted: the keys are at the
		// round ListAdd counted, and free once r ends (unless a request
		// waits behind one).
		if r.lwait {
			for _, k := range r.lkeys {
				m.freeState(&k.pst1[0], r)
			}
		}
		r.lfreed = true
		return nil
	}
	rs, text, err := wire.DecodeListAnswer(msg, len(r.lkeys), m.lrs[:0])
	m.lrs = rs[:0]
	if err != nil {
		return fmt.Errorf("shard %d: bad answer to a push list: %w", sh.idx, err)
	}
	var first error
	for i, k := range r.lkeys {
		x := rs[i]
		ps := &k.pst1[0]
		if x.Code != wire.CodeOK {
			if first == nil {
				first = &wire.Error{Code: x.Code, Msg: text}
			}
			ps.next-- // not taken: ListAdd counted it
			m.freeState(ps, r)
			continue
		}
		// ListAdd counted the round named: the key's next round is the
		// one after the round answered.
		ps.next = uint64(int64(ps.next) + x.Delta)
		round := ps.next - 1
		if m.cfg.Mode == wire.ModeSync && !m.cfg.NoRoundEvents {
			m.event(Event{Kind: EventRound, Shard: sh.idx, Key: k, Round: round,
				Late: x.Flags&wire.FlagLate != 0, Rescaled: x.Flags&wire.FlagRescaled != 0})
		}
		m.freeState(ps, r)
	}
	r.lfreed = true
	return first
}
