package wire

import "encoding/binary"

// Batches carry many small keys in one message, as ps-lite's KVPairs do: a
// worker sends the pushes, pulls or pushpulls of many keys to a shard in one
// request batch, and the server sends the replies of one step to a worker
// in one Answers message. Each entry is still a request of its own (its own
// seq, answered, cached and retried on its own); the batch only saves the
// per-message costs (a 56-byte header, a websocket frame, a read, a trip
// through the job loop) that dominate small keys.
//
// A request batch (TypePushes, TypePulls, TypePushPulls) has a
// header with the batch type, the DType of every entry's data (DTypeNone
// for pulls), the sender's Ack, Count = the number of entries, and PLen;
// its Seq, Key, Round, Offset and Total are 0. The payload is the entry
// table, zero bytes up to a multiple of 4 (so that every entry's data is
// 4-byte aligned in the frame), then the entries' data in entry order, each
// as many bytes as a single message's (Header.DataBytes). An entry is seven
// uvarints: seq, flags, key, round, count, offset, total. A TypeInits
// batch (many inits) adds an eighth, the length of the entry's InitMeta:
// its data section holds each entry's metadata followed by its values
// (none with FlagNoValue), as the payload of a single Init does.
//
// An Answers message (TypeAnswers) has DType DTypeNone and Count entries;
// an entry is: uvarint seq, type (1 byte: Ack or Error), code (1 byte),
// uvarints flags, key, round, count, offset, total, dtype (1 byte), and for
// an Error its text (uvarint length, bytes). After the padded table come
// the data of the entries that have a dtype, in entry order.
//
// A server answers in Answers only workers that have sent a batch (so a
// client that predates batches never gets one).

// IsBatch reports whether t is a batch type (request batch or Answers).
func (t Type) IsBatch() bool {
	return t >= TypePushes && t <= TypeAnswers || t == TypeInits
}

// BatchOf is the request type of the entries of batch type t (0 for
// TypeAnswers and non-batch types).
func BatchOf(t Type) Type {
	switch t {
	case TypePushes:
		return TypePush
	case TypePulls:
		return TypePull
	case TypePushPulls:
		return TypePushPull
	case TypeInits:
		return TypeInit
	}
	return 0
}

// BatchFor is the batch type whose entries are requests of type t (0 if t
// cannot be batched).
func BatchFor(t Type) Type {
	switch t {
	case TypePush:
		return TypePushes
	case TypePull:
		return TypePulls
	case TypePushPull:
		return TypePushPulls
	case TypeInit:
		return TypeInits
	}
	return 0
}

// Smallest encodings, for the bounds checked before allocating.
const (
	minRequestEntry = 7
	minAnswerEntry  = 10
)

// checkBatchHeader checks what a batch's header says (DecodeHeader).
func checkBatchHeader(h *Header, l *Limits) error {
	if h.Seq != 0 || h.Key != 0 || h.Round != 0 || h.Offset != 0 || h.Total != 0 {
		return errf(CodeBadFrame, "%v: seq, key, round, offset and total must be 0 in a batch header", h.Type)
	}
	if uint64(h.Count) > uint64(l.MaxKeys) {
		return errf(CodeLimit, "%v of %d entries exceeds the limit of %d", h.Type, h.Count, l.MaxKeys)
	}
	min := uint64(minRequestEntry)
	switch h.Type {
	case TypeInits:
		if h.DType != DTypeF32 {
			return errf(CodeBadFrame, "%v with dtype %v (want float32)", h.Type, h.DType)
		}
	case TypePulls, TypeAnswers:
		if h.DType != DTypeNone {
			return errf(CodeBadFrame, "%v with dtype %v", h.Type, h.DType)
		}
		if h.Type == TypeAnswers {
			min = minAnswerEntry
		}
	default:
		if h.DType == DTypeNone {
			return errf(CodeBadFrame, "%v without a dtype", h.Type)
		}
	}
	if uint64(h.Count)*min > uint64(h.PLen) {
		return errf(CodeBadFrame, "%v: %d entries cannot fit %d bytes", h.Type, h.Count, h.PLen)
	}
	return nil
}

func pad4(n int) int { return (4 - n%4) % 4 }

// BatchBuilder builds a request batch; its table and the data travel as
// the head and body of one message (transport Send), so the data, gathered
// by the caller, is not copied again.
type BatchBuilder struct {
	typ   Type
	dt    DType
	n     int
	table []byte // header space + entries
}

// Reset starts a batch of type typ (a batch type) whose entries' data are
// in dt.
func (b *BatchBuilder) Reset(typ Type, dt DType) {
	b.typ, b.dt, b.n = typ, dt, 0
	b.table = append(b.table[:0], make([]byte, HeaderSize)...)
}

// Add appends an entry: the fields of the single request it stands for
// (h.Type and h.DType are the batch's).
func (b *BatchBuilder) Add(h *Header) {
	t := b.table
	t = binary.AppendUvarint(t, h.Seq)
	t = binary.AppendUvarint(t, uint64(h.Flags))
	t = binary.AppendUvarint(t, h.Key)
	t = binary.AppendUvarint(t, h.Round)
	t = binary.AppendUvarint(t, uint64(h.Count))
	t = binary.AppendUvarint(t, uint64(h.Offset))
	t = binary.AppendUvarint(t, uint64(h.Total))
	b.table = t
	b.n++
}

// AddInit appends an entry of a TypeInits batch: h's fields and the length
// of its metadata (which goes, followed by its values, into the data).
func (b *BatchBuilder) AddInit(h *Header, metaLen int) {
	b.Add(h)
	b.table = binary.AppendUvarint(b.table, uint64(metaLen))
}

// Len is the number of entries added.
func (b *BatchBuilder) Len() int { return b.n }

// TableBytes is the size of the table so far (header included).
func (b *BatchBuilder) TableBytes() int { return len(b.table) }

// Head finishes the batch: it returns the header and the padded table, to
// be sent followed by dataLen bytes of data (the entries' data in order).
// The slice is valid until the next Reset.
func (b *BatchBuilder) Head(ack uint64, dataLen int) []byte {
	b.table = append(b.table, make([]byte, pad4(len(b.table)-HeaderSize))...)
	h := Header{Type: b.typ, DType: b.dt, Ack: ack, Count: uint32(b.n), PLen: uint32(len(b.table) - HeaderSize + dataLen)}
	AppendHeader(b.table[:0], &h) // over the space Reset left
	return b.table
}

// AnswersBuilder builds an Answers message.
type AnswersBuilder struct {
	n     int
	table []byte
	data  []byte
}

// Reset empties the builder.
func (b *AnswersBuilder) Reset() { b.n, b.table, b.data = 0, b.table[:0], b.data[:0] }

// Add appends the reply m (an Ack or an Error with a seq): its header
// fields, and its data (an Ack's, copied) or text (an Error's payload).
func (b *AnswersBuilder) Add(m *Msg) {
	t := b.table
	t = binary.AppendUvarint(t, m.Seq)
	t = append(t, byte(m.Type), byte(m.Code))
	t = binary.AppendUvarint(t, uint64(m.Flags))
	t = binary.AppendUvarint(t, m.Key)
	t = binary.AppendUvarint(t, m.Round)
	t = binary.AppendUvarint(t, uint64(m.Count))
	t = binary.AppendUvarint(t, uint64(m.Offset))
	t = binary.AppendUvarint(t, uint64(m.Total))
	dt := m.DType
	if m.Type == TypeError {
		dt = DTypeNone
	}
	t = append(t, byte(dt))
	if m.Type == TypeError {
		t = enc(t).bytes(m.Payload)
	} else if dt != DTypeNone {
		b.data = append(b.data, m.Data()...)
	}
	b.table = t
	b.n++
}

// Len is the number of replies added.
func (b *AnswersBuilder) Len() int { return b.n }

// Size is the payload size so far.
func (b *AnswersBuilder) Size() int { return len(b.table) + 3 + len(b.data) }

// Append appends the Answers payload to dst and returns the message (its
// Payload aliases the appended bytes) and the grown dst.
func (b *AnswersBuilder) Append(dst []byte) (Msg, []byte) {
	start := len(dst)
	dst = append(dst, b.table...)
	dst = append(dst, make([]byte, pad4(len(b.table)))...)
	dst = append(dst, b.data...)
	p := dst[start:]
	return Msg{Header: Header{Type: TypeAnswers, Count: uint32(b.n), PLen: uint32(len(p))}, Payload: p}, dst
}

// DecodeBatch checks a whole batch m (a request batch or Answers, as
// Decode returned it) and appends its entries to dst as messages of their
// own: the request (or reply) headers with their data (or error text) as
// Payload, aliasing m's payload. Nothing is appended if any entry is bad.
func DecodeBatch(m *Msg, lim *Limits, dst []Msg) ([]Msg, error) {
	if !m.Type.IsBatch() {
		return dst, errf(CodeBadFrame, "%v is not a batch", m.Type)
	}
	l := lim.get()
	if err := checkBatchHeader(&m.Header, &l); err != nil {
		return dst, err
	}
	start := len(dst)
	d := dec{b: m.Payload, l: l, ctx: m.Type.String()}
	answers := m.Type == TypeAnswers
	base := BatchOf(m.Type)
	var dataBytes uint64
	for i := uint32(0); i < m.Count; i++ {
		var e Msg
		e.Seq = d.uv("seq")
		if answers {
			e.Type, e.Code = Type(d.u8("type")), Code(d.u8("code"))
		} else {
			e.Type, e.DType, e.Ack = base, m.DType, m.Ack
		}
		flags := d.uv("flags")
		e.Key = d.uv("key")
		e.Round = d.uv("round")
		count, off, total := d.uv("count"), d.uv("offset"), d.uv("total")
		if answers {
			e.DType = DType(d.u8("dtype"))
		}
		var metaLen uint64
		if m.Type == TypeInits {
			metaLen = d.uv("metadata length")
			if d.err == nil && metaLen > uint64(d.l.MaxString)+16*uint64(d.l.MaxDims)+32 {
				d.fail(CodeLimit, "%v entry %d: %d bytes of metadata", m.Type, i, metaLen)
			}
		}
		if d.err != nil {
			return dst[:start], d.err
		}
		if flags > 0xFFFF || count > 0xFFFFFFFF || off > 0xFFFFFFFF || total > 0xFFFFFFFF {
			return dst[:start], errf(CodeBadFrame, "%v entry %d: field out of range", m.Type, i)
		}
		e.Flags, e.Count, e.Offset, e.Total = uint16(flags), uint32(count), uint32(off), uint32(total)
		if m.Type == TypeInits && e.Flags&FlagNoValue != 0 {
			e.DType = DTypeNone // key and shape only
		}
		if e.Seq == 0 {
			return dst[:start], errf(CodeBadFrame, "%v entry %d has seq 0", m.Type, i)
		}
		if answers {
			if e.Type != TypeAck && e.Type != TypeError {
				return dst[:start], errf(CodeBadFrame, "answers entry %d is a %v", i, e.Type)
			}
			if e.Code >= codeEnd || (e.Type == TypeError) != (e.Code != CodeOK) {
				return dst[:start], errf(CodeBadFrame, "answers entry %d: %v with code %d", i, e.Type, e.Code)
			}
			if e.DType >= dtypeEnd || (e.Type == TypeError && e.DType != DTypeNone) {
				return dst[:start], errf(CodeBadFrame, "answers entry %d: dtype %d", i, e.DType)
			}
			if e.Type == TypeError {
				n := d.uv("error text length")
				if d.err == nil && n > 1024 {
					d.fail(CodeLimit, "answers entry %d: error text of %d bytes", i, n)
				}
				e.Payload = d.take(n, "error text")
				if d.err != nil {
					return dst[:start], d.err
				}
			}
		}
		e.PLen = uint32(metaLen) // for now: this entry's metadata bytes
		dataBytes += metaLen
		if e.DType != DTypeNone || m.Type == TypeInits {
			if e.Offset > e.Total || e.Total-e.Offset < e.Count {
				return dst[:start], errf(CodeBadFrame, "%v entry %d: part [%d, +%d) outside the key's %d elements", m.Type, i, e.Offset, e.Count, e.Total)
			}
			dataBytes += uint64(e.DataBytes())
		} else if e.Offset > e.Total && !(answers && e.Type == TypeError) {
			return dst[:start], errf(CodeBadFrame, "%v entry %d: offset %d beyond the key's %d elements", m.Type, i, e.Offset, e.Total)
		}
		dst = append(dst, e)
	}
	if d.err != nil {
		return dst[:start], d.err
	}
	table := len(m.Payload) - len(d.b)
	p := pad4(table)
	if uint64(len(d.b)) != uint64(p)+dataBytes {
		return dst[:start], errf(CodeBadFrame, "%v: %d bytes after the table, entries need %d padding + %d data", m.Type, len(d.b), p, dataBytes)
	}
	for _, c := range d.b[:p] {
		if c != 0 {
			return dst[:start], errf(CodeBadFrame, "%v: non-zero padding", m.Type)
		}
	}
	data := d.b[p:]
	for i := start; i < len(dst); i++ {
		e := &dst[i]
		if e.DType == DTypeNone && m.Type != TypeInits {
			e.PLen = uint32(len(e.Payload))
			continue
		}
		n := int(e.PLen) + e.DataBytes()
		e.Payload, data = data[:n:n], data[n:]
		e.PLen = uint32(n)
	}
	return dst, nil
}
