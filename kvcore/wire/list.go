package wire

import (
	"encoding/binary"
	"slices"
)

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
	if h.Flags&^FlagStrKey != 0 {
		return errf(CodeBadFrame, "%v with flags %#x (only the string-key flag is allowed)", h.Type, h.Flags)
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
	min := uint64(h.Count) // one byte per entry at least
	switch h.Type {
	case TypePushList:
		if h.DType != DTypeF32 {
			return errf(CodeBadFrame, "%v with dtype %v (want float32)", h.Type, h.DType)
		}
		min = 2*uint64(h.Count) + 4*uint64(h.Total)
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
// the values (a single request's metadata).
type ListBuilder struct {
	typ   Type
	n     int
	table []byte
}

// Reset starts a list of type typ (TypePushList or TypePullList) of
// about n keys (room for the table is made at once).
func (b *ListBuilder) Reset(typ Type, n int) {
	b.typ, b.n, b.table = typ, 0, b.table[:0]
	if need := 4*n + 3; cap(b.table) < need {
		b.table = make([]byte, 0, need)
	}
}

// Add appends key id (and, in a push list, the round its push is for).
func (b *ListBuilder) Add(id, round uint64) {
	b.table = binary.AppendUvarint(b.table, id)
	if b.typ == TypePushList {
		b.table = binary.AppendUvarint(b.table, round)
	}
	b.n++
}

// Len is the number of keys added.
func (b *ListBuilder) Len() int { return b.n }

// Table returns the padded table; valid until the next Reset.
func (b *ListBuilder) Table() []byte {
	return append(b.table, make([]byte, pad4(len(b.table)))...)
}

// ListHeader is the header of a list request of typ with the keys of b's
// table and total elements (PLen: the table and, for a push, the values).
func (b *ListBuilder) ListHeader(seq, ack uint64, flags uint16, total int) Header {
	h := Header{Type: b.typ, Flags: flags, Seq: seq, Ack: ack, Count: uint32(b.n), Total: uint32(total)}
	h.PLen = uint32(len(b.table) + pad4(len(b.table)))
	if b.typ == TypePushList {
		h.DType = DTypeF32
		h.PLen += uint32(4 * total)
	}
	return h
}

// DecodeList checks a whole list request m (as Decode returned it) and
// appends its key ids to keys and, for a push list, their rounds to
// rounds; data is the values (nil for a pull list), aliasing m's payload.
// Nothing is appended if the list is bad.
func DecodeList(m *Msg, lim *Limits, keys, rounds []uint64) ([]uint64, []uint64, []byte, error) {
	if !m.Type.IsList() {
		return keys, rounds, nil, errf(CodeBadFrame, "%v is not a list", m.Type)
	}
	l := lim.get()
	if err := checkListHeader(&m.Header, &l); err != nil {
		return keys, rounds, nil, err
	}
	k0, r0 := len(keys), len(rounds)
	push := m.Type == TypePushList
	// The table in one tight loop (a list is thousands of small keys):
	// uvarints read in place; a malformed one is read again by dec, which
	// names the failure.
	n := int(m.Count)
	keys = slices.Grow(keys, n)
	if push {
		rounds = slices.Grow(rounds, n)
	}
	// Written by index into the room grown above; uvarints of up to
	// three bytes are read inline (listUvarint's cases), longer ones by
	// listUvarint.
	ks, rs, per := keys[k0:k0+n], rounds[r0:r0], 1
	if push {
		rs, per = rounds[r0:r0+n], 2
	}
	b, at := m.Payload, 0
	got := 0
	for ; got < per*n; got++ {
		var v uint64
		next := at
		if at+2 < len(b) {
			c0, c1, c2 := b[at], b[at+1], b[at+2]
			switch {
			case c0 < 0x80:
				v, next = uint64(c0), at+1
			case c1 < 0x80:
				v, next = uint64(c0&0x7f)|uint64(c1)<<7, at+2
			case c2 < 0x80:
				v, next = uint64(c0&0x7f)|uint64(c1&0x7f)<<7|uint64(c2)<<14, at+3
			default:
				v, next = listUvarint(b, at)
			}
		} else {
			v, next = listUvarint(b, at)
		}
		if next <= at {
			break
		}
		at = next
		if push {
			if got&1 == 0 {
				ks[got>>1] = v
			} else {
				rs[got>>1] = v
			}
		} else {
			ks[got] = v
		}
	}
	if got == per*n {
		keys = keys[:k0+n]
		if push {
			rounds = rounds[:r0+n]
		}
	}
	if len(keys)-k0 < n || (push && len(rounds)-r0 < n) {
		d := dec{b: b, l: l, ctx: m.Type.String()}
		for i := 0; i < n && d.err == nil; i++ {
			d.uv("key")
			if push {
				d.uv("round")
			}
		}
		if d.err == nil { // both read binary.Uvarint: not reached
			d.err = errf(CodeBadFrame, "%v: malformed key table", m.Type)
		}
		return keys[:k0], rounds[:r0], nil, d.err
	}
	rest := b[at:]
	p := pad4(at)
	var want uint64
	if push {
		want = 4 * uint64(m.Total)
	}
	if uint64(len(rest)) != uint64(p)+want {
		return keys[:k0], rounds[:r0], nil, errf(CodeBadFrame, "%v: %d bytes after the table of %d keys, want %d padding + %d bytes of values", m.Type, len(rest), m.Count, p, want)
	}
	for _, c := range rest[:p] {
		if c != 0 {
			return keys[:k0], rounds[:r0], nil, errf(CodeBadFrame, "%v: non-zero padding", m.Type)
		}
	}
	if !push {
		return keys, rounds, nil, nil
	}
	return keys, rounds, rest[p:], nil
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
