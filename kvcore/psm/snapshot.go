package psm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/bincodec"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/wire"
)

// Snapshot format, version 3 (all numbers little-endian; uv = uvarint):
//
//	"WKPS" magic, u32 version
//	u8 mode, u8 started, uv want, uv next worker number,
//	uv run (version 3; older versions: run 0, the keys' run)
//	bytes optimizer spec (uv length + JSON), uv num_update,
//	u8 compression kind, u32 threshold bits
//	uv workers; each: str id, uv rank, uv ack mark, u8 welcomed, u32 attempt,
//	  uv answers; each: uv seq, u8 type, u8 code, u16 flags, uv round,
//	  uv count, u64 key, u8 request type, str message;
//	  str resume key, str participant (version 2; version 1 has neither:
//	  its workers cannot resume and rejoin as new ones)
//	uv keys; each: u64 id, u8 is-string, str name, uv rank, uv dims...,
//	  uv offset, uv n, uv total, uv rounds, uv t, uv run (version 3),
//	  uv inited; str worker ids..., n float32 value,
//	  uv states; n float32 each
//	the aggregation rule's section, unless it is sum (aggregate.go)
//	the custom updater's section, if one is installed (updater.go)
//	u32 CRC-32 (IEEE) of everything before it
//
// Held requests (open rounds, barriers, init waits) are not part of it: see
// the package doc.
const snapVersion = 3

var snapMagic = [4]byte{'W', 'K', 'P', 'S'}

// ErrBadSnapshot is wrapped by Restore's errors.
var ErrBadSnapshot = errors.New("psm: bad snapshot")

// senc and sdec are bincodec's encoder and decoder (shared with the wire
// metadata and the states file) with this file's short names; sdec's
// failures wrap ErrBadSnapshot.
type senc []byte

func (e senc) uv(v uint64) senc  { return senc(bincodec.Enc(e).Uvarint(v)) }
func (e senc) u8(v uint8) senc   { return senc(bincodec.Enc(e).U8(v)) }
func (e senc) u16(v uint16) senc { return senc(bincodec.Enc(e).U16(v)) }
func (e senc) u32(v uint32) senc { return senc(bincodec.Enc(e).U32(v)) }
func (e senc) u64(v uint64) senc { return senc(bincodec.Enc(e).U64(v)) }
func (e senc) str(s string) senc { return senc(bincodec.Enc(e).String(s)) }
func (e senc) bool(b bool) senc  { return senc(bincodec.Enc(e).Bool(b)) }

// AppendSnapshot appends the Job's durable state to b. It reads values and
// states from the backend, so it returns an error if the backend fails.
func (j *Job) AppendSnapshot(b []byte) ([]byte, error) {
	start := len(b)
	e := senc(append(b, snapMagic[:]...)).u32(snapVersion)
	e = e.u8(uint8(j.mode)).bool(j.started).uv(uint64(j.want)).uv(j.nextID).uv(j.run)
	e = e.str(string(j.optJSON)).uv(uint64(j.numUpdate)).u8(uint8(j.comp.Kind)).u32(math.Float32bits(j.comp.Threshold))
	ws := make([]*worker, 0, len(j.workers))
	for _, r := range j.ranks {
		if r != nil {
			ws = append(ws, r)
		}
	}
	e = e.uv(uint64(len(ws)))
	for _, w := range ws {
		e = e.str(w.id).uv(uint64(w.rank)).uv(w.mark).bool(w.welcomed).u32(w.attempt).uv(uint64(len(w.done)))
		for _, seq := range sortedSeqs(w.done) {
			r := w.done[seq]
			e = e.uv(seq).u8(uint8(r.typ)).u8(uint8(r.code)).u16(r.flags).uv(r.round).uv(uint64(r.count)).u64(r.key).u8(uint8(r.req)).str(r.msg)
		}
		e = e.str(w.key).str(w.participant)
	}
	ks := j.sortedKeys()
	e = e.uv(uint64(len(ks)))
	for _, k := range ks {
		e = e.u64(k.id).bool(k.str).str(k.name).uv(uint64(len(k.shape)))
		for _, d := range k.shape {
			e = e.uv(uint64(d))
		}
		e = e.uv(uint64(k.off)).uv(uint64(k.n)).uv(uint64(k.total)).uv(k.rounds).uv(uint64(k.slot.T)).uv(k.run)
		e = e.uv(uint64(len(k.inited)))
		for _, id := range sortedStrings(k.inited) {
			e = e.str(id)
		}
		v, err := j.hostValue(k)
		if err != nil {
			return b[:start], fmt.Errorf("psm: snapshot: key %s: %w", k.label(), err)
		}
		e = senc(wire.AppendFloat32s(e, v))
		e = e.uv(uint64(len(k.slot.States)))
		tmp := make([]float32, k.n)
		for _, s := range k.slot.States {
			if err := j.be.Read(s, 0, tmp); err != nil {
				return b[:start], fmt.Errorf("psm: snapshot: key %s: %w", k.label(), err)
			}
			e = senc(wire.AppendFloat32s(e, tmp))
		}
	}
	e = j.appendAggregate(e)
	e = j.appendCustom(e)
	e = e.u32(crc32.ChecksumIEEE(e[start:]))
	return e, nil
}

func sortedSeqs(m map[uint64]reply) []uint64 {
	s := make([]uint64, 0, len(m))
	for k := range m {
		s = append(s, k)
	}
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

func sortedStrings(m map[string]bool) []string {
	s := make([]string, 0, len(m))
	for k := range m {
		s = append(s, k)
	}
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

type sdec struct {
	c   bincodec.Dec
	err error
}

func newSdec(b []byte) *sdec { return &sdec{c: bincodec.NewDec(b)} }

func (d *sdec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrBadSnapshot}, args...)...)
		d.c.Failf(bincodec.Malformed, "stopped") // later reads return zero values
	}
}

// check turns the codec's failure into d.err.
func (d *sdec) check() {
	if e := d.c.Err; e != nil && d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", ErrBadSnapshot, e.Off+4, e.Msg)
	}
}

func (d *sdec) left() int { return d.c.Left() }

func (d *sdec) uv() uint64 {
	v := d.c.Uvarint("number")
	d.check()
	return v
}

// count reads a count of items that each take at least per bytes.
func (d *sdec) count(per int) int {
	v := d.c.Count("items", per, math.MaxInt32)
	d.check()
	return v
}

func (d *sdec) u8() uint8 {
	v := d.c.U8("byte")
	d.check()
	return v
}

func (d *sdec) u16() uint16 {
	v := d.c.U16("uint16")
	d.check()
	return v
}

func (d *sdec) u32() uint32 {
	v := d.c.U32("uint32")
	d.check()
	return v
}

func (d *sdec) u64() uint64 {
	v := d.c.U64("uint64")
	d.check()
	return v
}

func (d *sdec) str() string {
	v := d.c.String("string", math.MaxInt32)
	d.check()
	return v
}

func (d *sdec) floats(n int) []float32 {
	v := d.c.Float32s("values", n, nil)
	d.check()
	return v
}

// Restore rebuilds a Job from a snapshot written by AppendSnapshot, with
// configuration cfg (which may differ from the one that wrote it: timeouts,
// limits, backend). Every worker is disconnected and counts as seen at now:
// each has cfg.Timeout to resume. The snapshot is checked (checksum, sizes)
// before anything is allocated on the backend.
func Restore(cfg Config, snap []byte, now time.Duration) (*Job, error) {
	j, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if len(snap) < 12 || [4]byte(snap[:4]) != snapMagic {
		return nil, fmt.Errorf("%w: not a psm snapshot", ErrBadSnapshot)
	}
	body := snap[:len(snap)-4]
	if crc := binary.LittleEndian.Uint32(snap[len(snap)-4:]); crc != crc32.ChecksumIEEE(body) {
		return nil, fmt.Errorf("%w: checksum mismatch (truncated or corrupt)", ErrBadSnapshot)
	}
	d := newSdec(body[4:])
	version := d.u32()
	if version < 1 || version > snapVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads 1 to %d", ErrBadSnapshot, version, snapVersion)
	}
	j.mode = wire.Mode(d.u8())
	j.started = d.u8() == 1
	j.want = int(d.uv())
	j.nextID = d.uv()
	if version >= 3 {
		j.run = d.uv()
	}
	j.restored = true
	if !j.started && (j.want > j.cfg.MaxWorkers || j.want < 0) {
		// A start barrier no job can meet (an older relay checkpointed
		// whatever a Hello asked for): back to the configured one.
		j.want = j.cfg.MinWorkers
	}
	if js := d.str(); js != "" {
		opt, err := optimizer.Parse([]byte(js))
		if err != nil && d.err == nil {
			return nil, fmt.Errorf("%w: optimizer: %v", ErrBadSnapshot, err)
		}
		j.opt, j.optJSON = opt, []byte(js)
	}
	j.numUpdate = int(d.uv())
	j.comp = compute.Compression{Kind: compute.CompressionKind(d.u8()), Threshold: math.Float32frombits(d.u32())}
	if err := j.comp.Validate(); err != nil && d.err == nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	nw := d.count(4)
	for range nw {
		w := &worker{id: d.str(), rank: int(d.uv()), mark: d.uv(), welcomed: d.u8() == 1, attempt: d.u32(), lastSeen: now}
		nd := d.count(8)
		if nd > 0 {
			w.done = make(map[uint64]reply, nd)
		}
		for range nd {
			seq := d.uv()
			w.done[seq] = reply{typ: wire.Type(d.u8()), code: wire.Code(d.u8()), flags: d.u16(), round: d.uv(),
				count: uint32(d.uv()), key: d.u64(), req: wire.Type(d.u8()), msg: d.str()}
		}
		if version >= 2 {
			w.key, w.participant = d.str(), d.str()
		}
		if d.err != nil {
			break
		}
		w.rebuildCache()
		if w.rank > j.cfg.MaxWorkers || j.workers[w.id] != nil {
			d.fail("worker %q: rank %d or duplicate id", w.id, w.rank)
			break
		}
		for len(j.ranks) <= w.rank {
			j.ranks = append(j.ranks, nil)
		}
		if j.ranks[w.rank] != nil {
			d.fail("rank %d held twice", w.rank)
			break
		}
		j.ranks[w.rank] = w
		j.membersChanged()
		j.workers[w.id] = w
	}
	type pending struct {
		k      *key
		value  []float32
		states [][]float32
	}
	var ps []pending
	nk := d.count(20)
	for range nk {
		k := j.newKey()
		k.id, k.str, k.name, k.inited = d.u64(), d.u8() == 1, d.str(), map[string]bool{}
		nd := d.count(1)
		if d.err == nil && nd > 64 { // rank 0: a scalar
			d.fail("key %d: rank %d", k.id, nd)
		}
		k.shape = make([]int64, nd)
		for i := range k.shape {
			k.shape[i] = int64(d.uv())
		}
		k.off, k.n, k.total = int(d.uv()), int(d.uv()), int(d.uv())
		k.whole = k.off == 0 && k.n == k.total
		k.rounds, k.slot.T = d.uv(), int(d.uv())
		if version >= 3 {
			k.run = d.uv()
		}
		ni := d.count(1)
		for range ni {
			k.inited[d.str()] = true
		}
		if d.err == nil && (k.n < 1 || uint64(k.n)*4 > uint64(d.left()) || k.off+k.n > k.total) {
			d.fail("key %d: part [%d,+%d) of %d", k.id, k.off, k.n, k.total)
		}
		if d.err != nil {
			break
		}
		p := pending{k: k, value: d.floats(k.n)}
		ns := d.count(4 * k.n)
		for range ns {
			p.states = append(p.states, d.floats(k.n))
		}
		if d.err != nil {
			break
		}
		if j.keys[k.id] != nil {
			d.fail("key %d twice", k.id)
			break
		}
		j.setKey(k)
		ps = append(ps, p)
	}
	j.restoreAggregate(d)
	j.restoreCustom(d)
	if d.err == nil && d.left() != 0 {
		d.fail("%d trailing bytes", d.left())
	}
	if d.err != nil {
		return nil, d.err
	}
	for _, p := range ps {
		k := p.k
		b, err := j.be.Alloc(k.n)
		if err == nil {
			err = j.be.Write(b, 0, p.value)
		}
		if err != nil {
			j.Close()
			return nil, fmt.Errorf("psm: restore key %s: %w", k.label(), err)
		}
		k.stored = b
		j.touch(k)
		k.resv = keyBytes(k.n, j.opt, len(p.states))
		if ns := numStates(j.opt, k); ns > len(p.states) {
			k.resv = keyBytes(k.n, j.opt, ns)
		}
		j.reserve(k.resv, true) // the data exists: over the budget, new keys are refused
		for _, s := range p.states {
			sb, err := j.be.Alloc(k.n)
			if err == nil {
				err = j.be.Write(sb, 0, s)
			}
			if err != nil {
				j.Close()
				return nil, fmt.Errorf("psm: restore key %s: %w", k.label(), err)
			}
			k.slot.States = append(k.slot.States, sb)
		}
	}
	j.reloadCustom()
	j.markIdle(now)
	return j, nil
}
