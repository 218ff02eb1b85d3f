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
// their own.
func (m *Machine) Listable(k *Key) bool {
	ps := &k.pst1[0] // k.pst[0] for a key of one part
	return k.shard1 >= 0 && ps.busy == nil && !ps.waits() && 4*k.n <= m.cfg.BatchEntry
}

// ListShard is the shard a listable key lives on.
func (k *Key) ListShard() int { return int(k.shard1) }

// PushList sends this worker's values of keys in one request: data holds
// their values back to back (float32, each key's N). Every key must be
// Listable, on one shard, and of one kind (int or string keys), with at
// most wire.MaxListKeys keys. keys and data stay untouched until the
// operation's Done (dist_sync: once every key's round closed). The server
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
	kind := opPush
	if typ == wire.TypePullList {
		kind = opPull
	}
	o := m.newOp(tok, kind, 1)
	r := m.newReq(o, typ, m.shards[shard])
	r.lkeys = keys
	var lb wire.ListBuilder
	lb.Reset(typ, len(keys))
	for _, k := range keys {
		lb.Add(k.id, k.pst1[0].next)
		k.pst1[0].busy = r
	}
	r.meta = lb.Table()
	r.count, r.total = uint32(len(keys)), uint32(total)
	if str {
		r.flags |= wire.FlagStrKey
	}
	if typ == wire.TypePushList {
		r.dt, r.data = wire.DTypeF32, f32Bytes(vals)
	} else {
		r.out = vals
	}
	m.submit(r)
	return nil
}

// listDone frees the key parts of list request r.
func (m *Machine) listDone(r *req) {
	if r.lfreed {
		return
	}
	for _, k := range r.lkeys {
		m.freeState(&k.pst1[0], r) // k.pst[0]: a listed key has one part
	}
}

// applyList takes the Ack of push list r: every key's round. It frees
// each key's part as it goes (listDone's work, in the same pass over the
// keys: complete follows at once): a later request waiting on a key
// starts from the round set here, as it would after listDone.
func (m *Machine) applyList(sh *shard, r *req, msg *wire.Msg) error {
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
			m.freeState(ps, r)
			continue
		}
		round := uint64(int64(ps.next) + x.Delta)
		ps.next = round + 1
		if m.cfg.Mode == wire.ModeSync && !m.cfg.NoRoundEvents {
			m.event(Event{Kind: EventRound, Shard: sh.idx, Key: k, Round: round,
				Late: x.Flags&wire.FlagLate != 0, Rescaled: x.Flags&wire.FlagRescaled != 0})
		}
		m.freeState(ps, r)
	}
	r.lfreed = true
	return first
}
