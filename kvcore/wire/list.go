package wire

import "encoding/binary"

// Lists carry many whole keys in ONE request, as ps-lite's KVPairs do: one
// seq, one answer, one entry in the server's answer cache, and the values
// of every key in one dense buffer (each key's length is known to both
// sides from its init). A batch (batch.go) only shares a message between
// requests that stay requests of their own; a list is one request.
//
// A TypePushList has DType DTypeF32, Count = the number of keys, Total =
// the number of elements of all of them, Flags FlagStrKey when every key
// is a string key's id (0: every key is an int key), and Seq and Ack as
// any request; Key, Round and Offset are 0. Its payload is the key table,
// one entry per key (uvarint key id, uvarint the dist_sync round this push
// is for), zero bytes up to a multiple of 4, then 4*Total bytes: the
// keys' values back to back, in table order. A TypePullList is the same
// with DType DTypeNone, entries of one uvarint (the key id) and no values
// after the padding; Total is the number of elements it expects back.
//
// With FlagRuns (what ListBuilder writes) the key table is runs instead:
// one entry per run of keys with consecutive ids (and, in a push list,
// one round), uvarint the first id, uvarint the run's key count minus 1
// and, in a push list, uvarint the round; the runs' key counts sum to
// Count, and no run passes the largest id. A list's keys are nearly always
// a few such runs (int keys initialized in order, all pushed each step),
// so the table is a few bytes whatever the keys, and each run is checked
// once; keys in no order cost one byte more each than one entry per key.
// Without FlagRuns (an older client) the table is one entry per key as
// above; a server older than FlagRuns refuses a list with it (its flags
// check), it does not misread the table.
//
// Both are answered by an Ack with FlagList set (or by one Error for the
// whole list, which then changed nothing). The Ack of a pull list has
// DType DTypeF32, Count = Total = the elements, Offset 0, and the keys'
// values back to back as data. The Ack of a push list has Count = the
// number of keys; an empty payload says that every key was answered as a
// single push's Ack with the round the list named for it and the Ack's
// Flags. Otherwise the payload has one entry per key: varint (zigzag) the
// round answered minus the round named, 1 byte flags (FlagLate,
// FlagRescaled), 1 byte code (CodeOK: the push was taken; else it was
// refused, as a single push would have been with an Error of that code),
// followed, when some code is not CodeOK, by the first refusal's text
// (uvarint length, bytes).

// FlagList marks the Ack of a list request (see list.go).
const FlagList uint16 = 1 << 6

// FlagRuns marks a list request whose key table is runs of keys with
// consecutive ids (see list.go).
const FlagRuns uint16 = 1 << 7

// MaxListKeys bounds the keys of one list request, whatever the Limits: a
// push list's answer (at most about 12 bytes a key) must fit a worker's
// answer cache on the server.
const MaxListKeys = 1 << 14

// IsList reports whether t is a list request type.
func (t Type) IsList() bool { return t == TypePushList || t == TypePullList }

// checkListHeader checks what a list request's header says (DecodeHeader).
func checkListHeader(h *Header, l *Limits) error {
	if h.Key != 0 || h.Round != 0 || h.Offset != 0 {
		return errf(CodeBadFrame, "%v: key, round and offset must be 0 in a list header", h.Type)
	}
	if h.Flags&^(FlagStrKey|FlagRuns) != 0 {
		return errf(CodeBadFrame, "%v with flags %#x (only the string-key and runs flags are allowed)", h.Type, h.Flags)
	}
	if h.Count == 0 {
		return errf(CodeBadFrame, "%v of no keys", h.Type)
	}
	if uint64(h.Count) > uint64(min(l.MaxKeys, MaxListKeys)) {
		return errf(CodeLimit, "%v of %d keys exceeds the limit of %d", h.Type, h.Count, min(l.MaxKeys, MaxListKeys))
	}
	if 4*uint64(h.Total) > uint64(l.MaxPayload) {
		return errf(CodeLimit, "%v of %d elements: their %d bytes exceed the payload limit of %d", h.Type, h.Total, 4*uint64(h.Total), l.MaxPayload)
	}
	if uint64(h.Total) < uint64(h.Count) {
		return errf(CodeBadFrame, "%v of %d keys with %d elements (a key has at least one)", h.Type, h.Count, h.Total)
	}
	// One byte per number of an entry at least: one entry per key, or
	// (runs) at least one entry.
	entries, per := uint64(h.Count), uint64(1)
	if h.Flags&FlagRuns != 0 {
		entries, per = 1, 2
	}
	min := entries * per
	switch h.Type {
	case TypePushList:
		if h.DType != DTypeF32 {
			return errf(CodeBadFrame, "%v with dtype %v (want float32)", h.Type, h.DType)
		}
		min = entries*(per+1) + 4*uint64(h.Total)
	case TypePullList:
		if h.DType != DTypeNone {
			return errf(CodeBadFrame, "%v with dtype %v", h.Type, h.DType)
		}
	}
	if min > uint64(h.PLen) {
		return errf(CodeBadFrame, "%v: %d keys of %d elements cannot fit %d bytes", h.Type, h.Count, h.Total, h.PLen)
	}
	return nil
}

// ListBuilder builds the key table of a list request: the payload before
// the values (a single request's metadata). Its table is runs (FlagRuns):
// a key whose id follows the previous key's (and, in a push list, whose
// round is the same) only lengthens the open run.
type ListBuilder struct {
	typ   Type
	n     int // keys of the runs in table
	table []byte
	// The open run, not yet in table: ids first, first+1, ..., next-1
	// (modulo 2**64: flush splits a run that passes the largest id) with
	// round; first == next: none. mask is 0 in a pull list (any round
	// joins a run; round is 0), else all ones.
	first, next, round, mask uint64
}

// Reset starts a list of type typ (TypePushList or TypePullList) of
// about n keys (room for the table is made at once).
func (b *ListBuilder) Reset(typ Type, n int) {
	b.typ, b.n, b.table = typ, 0, b.table[:0]
	b.first, b.next, b.round, b.mask = 0, 0, 0, 0
	if typ == TypePushList {
		b.mask = ^uint64(0)
	}
	if need := 4*n + 3; cap(b.table) < need {
		b.table = make([]byte, 0, need)
	}
}

// Add appends key id (and, in a push list, the round its push is for).
// A key that follows the open run's last (no run open: an empty one at
// 0) with its round lengthens it, inline (a list is thousands of keys).
func (b *ListBuilder) Add(id, round uint64) {
	if id == b.next && round&b.mask == b.round {
		b.next = id + 1
	} else {
		b.start(id, round)
	}
}

// start ends the open run and opens one at id (not inlined: Add is).
//
//go:noinline
func (b *ListBuilder) start(id, round uint64) {
	b.flush()
	b.first, b.next, b.round = id, id+1, round&b.mask
}

// flush appends the open run to the table.
func (b *ListBuilder) flush() {
	first, count := b.first, b.next-b.first
	if count == 0 {
		return
	}
	b.n += int(count)
	if first+count < first && first+count != 0 { // it passes the largest id
		c := -first // first .. the largest id
		b.table = b.appendRun(b.table, first, c, b.round)
		first, count = 0, count-c
	}
	b.table = b.appendRun(b.table, first, count, b.round)
	b.first = b.next
}

func (b *ListBuilder) appendRun(t []byte, first, count, round uint64) []byte {
	t = binary.AppendUvarint(t, first)
	t = binary.AppendUvarint(t, count-1)
	if b.mask != 0 {
		t = binary.AppendUvarint(t, round)
	}
	return t
}

// Len is the number of keys added.
func (b *ListBuilder) Len() int { return b.n + int(b.next-b.first) }

// Flags is the header flag the table needs (FlagRuns): a sender that
// writes the header itself sets it.
func (b *ListBuilder) Flags() uint16 { return FlagRuns }

// Table returns the padded table; valid until the next Add or Reset.
func (b *ListBuilder) Table() []byte {
	b.flush()
	return append(b.table, make([]byte, pad4(len(b.table)))...)
}

// ListHeader is the header of a list request of typ with the keys of b's
// table and total elements (PLen: the table and, for a push, the values);
// flags gets FlagRuns.
func (b *ListBuilder) ListHeader(seq, ack uint64, flags uint16, total int) Header {
	b.flush()
	h := Header{Type: b.typ, Flags: flags | FlagRuns, Seq: seq, Ack: ack, Count: uint32(b.Len()), Total: uint32(total)}
	h.PLen = uint32(len(b.table) + pad4(len(b.table)))
	if b.typ == TypePushList {
		h.DType = DTypeF32
		h.PLen += uint32(4 * total)
	}
	return h
}

// ListRun is Count keys of a list with consecutive ids First, First+1,
// ..., First+Count-1 (and, in a push list, one round): DecodeListRuns's
// form of a key table.
type ListRun struct {
	First, Count, Round uint64
}

// DecodeListRuns checks a whole list request m (as Decode returned it)
// and appends its keys to runs, in table order: runs of consecutive ids
// (and one round, in a push list) with at least one key each, ids that do
// not wrap, and counts that sum to m.Count. A table of runs (FlagRuns)
// gives its runs; a table of one entry per key (a sender older than
// FlagRuns) gives its keys joined into runs the same way. data is the
// values (nil for a pull list), aliasing m's payload. Nothing is
// appended if the list is bad; at most m.Count runs are appended.
func DecodeListRuns(m *Msg, lim *Limits, runs []ListRun) ([]ListRun, []byte, error) {
	if !m.Type.IsList() {
		return runs, nil, errf(CodeBadFrame, "%v is not a list", m.Type)
	}
	l := lim.get()
	if err := checkListHeader(&m.Header, &l); err != nil {
		return runs, nil, err
	}
	r0 := len(runs)
	push, isRuns := m.Type == TypePushList, m.Flags&FlagRuns != 0
	// The table is the payload before the values (checkListHeader: the
	// payload holds them): it is read up to there, not into them.
	var want uint64
	if push {
		want = 4 * uint64(m.Total)
	}
	if uint64(len(m.Payload)) < want { // Decode checked PLen; a Msg made by hand may differ
		return runs, nil, errf(CodeBadFrame, "%v: a payload of %d bytes cannot hold %d bytes of values", m.Type, len(m.Payload), want)
	}
	b, at := m.Payload[:uint64(len(m.Payload))-want], 0
	n := uint64(m.Count) // keys left
	for i := 0; n > 0; i++ {
		// The id's uvarint of up to three bytes read inline (an older
		// client's table is one per key), the rest by listUvarint.
		var first uint64
		next := at
		if at+2 < len(b) {
			c0, c1, c2 := b[at], b[at+1], b[at+2]
			switch {
			case c0 < 0x80:
				first, next = uint64(c0), at+1
			case c1 < 0x80:
				first, next = uint64(c0&0x7f)|uint64(c1)<<7, at+2
			case c2 < 0x80:
				first, next = uint64(c0&0x7f)|uint64(c1&0x7f)<<7|uint64(c2)<<14, at+3
			default:
				first, next = listUvarint(b, at)
			}
		} else {
			first, next = listUvarint(b, at)
		}
		if next <= at {
			return runs[:r0], nil, badEntry(m, b[at:], i, "key id", n)
		}
		at = next
		c := uint64(1)
		if isRuns {
			c1, next := listUvarint(b, at)
			if next <= at {
				return runs[:r0], nil, badEntry(m, b[at:], i, "run length", n)
			}
			at = next
			if c1 >= n {
				return runs[:r0], nil, errf(CodeBadFrame, "%v: key table entry %d: a run of %d+1 keys exceeds the %d keys left of %d", m.Type, i, c1, n, m.Count)
			}
			if first > ^uint64(0)-c1 {
				return runs[:r0], nil, errf(CodeBadFrame, "%v: key table entry %d: a run of %d keys from id %d passes the largest id", m.Type, i, c1+1, first)
			}
			c = c1 + 1
		}
		var round uint64
		if push {
			// A round of up to two bytes inline.
			if at+1 < len(b) && b[at] < 0x80 {
				round, next = uint64(b[at]), at+1
			} else if at+1 < len(b) && b[at+1] < 0x80 {
				round, next = uint64(b[at]&0x7f)|uint64(b[at+1])<<7, at+2
			} else {
				round, next = listUvarint(b, at)
			}
			if next <= at {
				return runs[:r0], nil, badEntry(m, b[at:], i, "round", n)
			}
			at = next
		}
		n -= c
		// A run that continues the last one (always, in a table of one
		// key per entry whose ids follow) lengthens it.
		if k := len(runs) - 1; k >= r0 {
			if p := &runs[k]; first == p.First+p.Count && first != 0 && round == p.Round {
				p.Count += c
				continue
			}
		}
		runs = append(runs, ListRun{First: first, Count: c, Round: round})
	}
	rest := b[at:]
	p := pad4(at)
	if len(rest) != p {
		return runs[:r0], nil, errf(CodeBadFrame, "%v: %d bytes after the table of %d keys, want %d padding + %d bytes of values", m.Type, uint64(len(rest))+want, m.Count, p, want)
	}
	for _, c := range rest {
		if c != 0 {
			return runs[:r0], nil, errf(CodeBadFrame, "%v: non-zero padding", m.Type)
		}
	}
	if !push {
		return runs, nil, nil
	}
	return runs, m.Payload[len(b):], nil
}

// badEntry is the error of a list's key table whose entry i has no whole
// uvarint what at the start of rest, with n of its keys left.
func badEntry(m *Msg, rest []byte, i int, what string, n uint64) error {
	if _, k := binary.Uvarint(rest); k == 0 {
		return errf(CodeBadFrame, "%v: the key table ends in entry %d (%s), after %d of %d keys", m.Type, i, what, uint64(m.Count)-n, m.Count)
	}
	return errf(CodeBadFrame, "%v: key table entry %d: malformed %s", m.Type, i, what)
}

// ListResult is what the Ack of a push list says about one of its keys.
type ListResult struct {
	Delta int64  // the round answered minus the round the list named
	Flags uint16 // FlagLate, FlagRescaled
	Code  Code   // CodeOK, or why this key's push was refused
}

// AppendListAnswer appends the payload of a push list's Ack to b: rs, and
// text (the first refusal's, cut to 1 KiB) when some code is not CodeOK.
// A list whose every result is {0, flags, CodeOK} with one flags needs no
// payload: see UniformList.
func AppendListAnswer(b []byte, rs []ListResult, text string) []byte {
	bad := false
	for _, r := range rs {
		b = binary.AppendVarint(b, r.Delta)
		b = append(b, byte(r.Flags), byte(r.Code))
		bad = bad || r.Code != CodeOK
	}
	if bad {
		if len(text) > 1024 {
			text = text[:1024]
		}
		b = binary.AppendUvarint(b, uint64(len(text)))
		b = append(b, text...)
	}
	return b
}

// UniformList reports whether rs can be answered with an empty payload
// and flags in the Ack's header.
func UniformList(rs []ListResult) (flags uint16, ok bool) {
	if len(rs) == 0 {
		return 0, true
	}
	flags = rs[0].Flags
	for _, r := range rs {
		if r.Delta != 0 || r.Code != CodeOK || r.Flags != flags {
			return 0, false
		}
	}
	return flags, true
}

// DecodeListAnswer reads the payload of the Ack m of a push list of n keys
// into rs (appended); text is the first refusal's text. An empty payload
// gives n results {0, m.Flags&^(FlagList|FlagDup), CodeOK}.
func DecodeListAnswer(m *Msg, n int, rs []ListResult) ([]ListResult, string, error) {
	if m.Type != TypeAck || m.Flags&FlagList == 0 || m.DType != DTypeNone || int(m.Count) != n {
		return rs, "", errf(CodeBadFrame, "answer to a push list of %d keys: %v with flags %#x, dtype %v, count %d", n, m.Type, m.Flags, m.DType, m.Count)
	}
	if len(m.Payload) == 0 {
		f := m.Flags &^ (FlagList | FlagDup)
		for range n {
			rs = append(rs, ListResult{Flags: f})
		}
		return rs, "", nil
	}
	r0 := len(rs)
	b := m.Payload
	bad := false
	for i := 0; i < n; i++ {
		v, k := binary.Varint(b)
		if k <= 0 || len(b) < k+2 {
			return rs[:r0], "", errf(CodeBadFrame, "answer to a push list: entry %d truncated", i)
		}
		c := Code(b[k+1])
		if c >= codeEnd {
			return rs[:r0], "", errf(CodeBadFrame, "answer to a push list: entry %d has code %d", i, c)
		}
		rs = append(rs, ListResult{Delta: v, Flags: uint16(b[k]), Code: c})
		bad = bad || c != CodeOK
		b = b[k+2:]
	}
	var text string
	if bad {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > 1024 || uint64(len(b)-k) < l {
			return rs[:r0], "", errf(CodeBadFrame, "answer to a push list: bad error text")
		}
		text, b = string(b[k:k+int(l)]), b[k+int(l):]
	}
	if len(b) != 0 {
		return rs[:r0], "", errf(CodeBadFrame, "answer to a push list: %d trailing bytes", len(b))
	}
	return rs, text, nil
}

// listUvarint is binary.Uvarint of b[at:], returning the value and the
// index after it (<= at when malformed), with the cases of up to three
// bytes unrolled (a list's key ids and rounds are mostly below 1<<21).
func listUvarint(b []byte, at int) (uint64, int) {
	if at+2 < len(b) {
		c0, c1, c2 := b[at], b[at+1], b[at+2]
		switch {
		case c0 < 0x80:
			return uint64(c0), at + 1
		case c1 < 0x80:
			return uint64(c0&0x7f) | uint64(c1)<<7, at + 2
		case c2 < 0x80:
			return uint64(c0&0x7f) | uint64(c1&0x7f)<<7 | uint64(c2)<<14, at + 3
		}
	}
	if at >= len(b) {
		return 0, at
	}
	v, w := binary.Uvarint(b[at:])
	return v, at + w
}
