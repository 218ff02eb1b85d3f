package wire

// Membership notices. A server tells every connected worker of a job who
// its members are whenever that changes (a worker joined, left or was
// removed after its silence timeout), and tells a worker that resumed on a
// new connection, so that clients learn of joins and departures without
// waiting for a barrier. A notice is an Ack with seq 0 and FlagMembers:
// Count is the number of members and the payload their ranks, ascending,
// as uvarints. Seq-0 Acks answer no request, so clients that predate
// notices ignore them.

// FlagMembers marks a seq-0 Ack that is a membership notice.
const FlagMembers uint16 = 1 << 4

// AppendMembers appends a whole membership notice listing ranks (ascending).
func AppendMembers(b []byte, ranks []int) []byte {
	start := len(b)
	b = AppendHeader(b, &Header{Type: TypeAck, Flags: FlagMembers, Count: uint32(len(ranks))})
	e := enc(b)
	for _, r := range ranks {
		e = e.uv(uint64(r))
	}
	return setPLen(e, start)
}

// IsMembers reports whether m is a membership notice.
func IsMembers(m *Msg) bool {
	return m.Type == TypeAck && m.Seq == 0 && m.Flags&FlagMembers != 0
}

// DecodeMembers decodes the ranks of a membership notice (IsMembers(m)):
// m.Count uvarints, strictly ascending.
func DecodeMembers(m *Msg, lim *Limits) ([]int, error) {
	d := dec{b: m.Payload, l: lim.get(), ctx: "members"}
	n := uint64(m.Count)
	if n > uint64(len(d.b)) { // a rank takes at least one byte
		return nil, errf(CodeBadFrame, "members: %d ranks cannot fit %d bytes", n, len(d.b))
	}
	ranks := make([]int, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		r := d.uv("rank")
		if d.err == nil && (r > 1<<31 || (len(ranks) > 0 && int(r) <= ranks[len(ranks)-1])) {
			d.fail(CodeBadFrame, "members: rank %d out of order or too big", r)
		}
		ranks = append(ranks, int(r))
	}
	d.done()
	if d.err != nil {
		return nil, d.err
	}
	return ranks, nil
}
