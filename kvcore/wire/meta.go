package wire

import (
	"encoding/binary"
	"math"

	"github.com/webkv/webkv/kvcore/internal/bincodec"
)

// Mode is a job's synchronization mode.
type Mode uint8

// Modes.
const (
	ModeSync  Mode = 1 // dist_sync: one update per key per round
	ModeAsync Mode = 2 // dist_async: one update per push
)

func (m Mode) String() string {
	switch m {
	case ModeSync:
		return "sync"
	case ModeAsync:
		return "async"
	}
	return "mode?"
}

// KeyDecl declares a key and its shape in a Hello.
type KeyDecl struct {
	Key   uint64 // int key bits, or StrKeyID(Name)
	Name  string // string key's name ("" for int keys)
	Shape []int64
}

// Hello opens a connection (metadata of a TypeHello message).
type Hello struct {
	Job      string // job id: one relay serves many jobs
	Role     string // "worker"
	Token    string // the job's access token
	WorkerID string // "" to join as a new worker, or the id to resume
	Mode     Mode
	Want     uint32 // the job's worker count this worker expects (0: the job's); see psm's workers.go
	// RankHint is 1 + the rank a new worker asks for (0: any). A worker of
	// a sharded job joins shard 0 first and asks the other shards for the
	// rank shard 0 gave it, so that ranks (and rank 0's init values) agree
	// across shards.
	RankHint uint32
	// Attempt numbers the Hellos of one client (1, 2, ...; 0: not
	// counted). A server may read an old connection's Hello after the new
	// one's; with Attempt it tells the stale one and ignores it.
	Attempt uint32
	Keys    []KeyDecl
	// ResumeKey is the secret the Welcome that created WorkerID carried:
	// a server resumes a worker id only for the holder of its key, so a
	// Hello that knows only the job token can never take over or lock out
	// another worker's session. Empty when joining. (Encoded after Keys,
	// optional: a Hello without it decodes with "".)
	ResumeKey string
	// Resume lets this worker's inits continue a run that the job's keys
	// hold from earlier (psm's runs.go). Encoded after ResumeKey (which
	// is then written even when empty), optional.
	Resume bool
}

// Welcome answers a Hello.
type Welcome struct {
	WorkerID   string // the worker's id (new, or the resumed one)
	Rank       uint32
	NumWorkers uint32
	Shard      uint32 // which shard answered
	Heartbeat  uint32 // milliseconds between the worker's pings
	Timeout    uint32 // milliseconds of silence after which the worker is removed
	Mode       Mode

	// The fields below are encoded after Mode and optional on the wire (a
	// Welcome without them decodes with zeros: an older server).

	// ResumeKey is the worker's secret: a Hello that resumes WorkerID
	// must carry it (Hello.ResumeKey). It is the same on every Welcome of
	// one worker, and the client keeps it for the life of the worker.
	ResumeKey string
	// Window is the flow-control window the server advertises: the most
	// requests a client should have unanswered on this connection
	// (0: not advertised).
	Window uint32
	// WindowBytes bounds the bytes in flight on this connection: the sum,
	// over the client's unanswered requests, of the request's size plus
	// the data its answer carries (a Pull or PushPull: the key part's
	// values). One request larger than WindowBytes may go when nothing
	// else is in flight (0: not advertised). A client within the window
	// never makes the server hold its requests back; a server never
	// closes a client for exceeding it either, it only stops reading the
	// client's requests until its answers drain.
	WindowBytes uint64
}

// InitMeta is the metadata of a TypeInit message.
type InitMeta struct {
	Name  string // string key's name ("" for int keys)
	Shape []int64
}

// KeyStates are the optimizer states of one key (or one part of a key on
// one shard) in a States table.
type KeyStates struct {
	Key    uint64
	Name   string // string key's name ("" for int keys)
	Str    bool
	T      int64  // updates applied to the key
	Offset uint32 // the part's element offset in the key
	Total  uint32 // elements of the whole key
	N      uint32 // elements of the part: len of every state array
	States [][]float32
}

// States is the table of SaveStates / LoadStates.
type States struct {
	Optimizer []byte // the optimizer spec (JSON), or nil
	NumUpdate int64
	Keys      []KeyStates
}

// enc is an append-only encoder: bincodec.Enc (the encoding helper the
// wire metadata shares with the psm snapshot and the states file) with the
// short names this package's codecs use.
type enc []byte

func (e enc) uv(v uint64) enc    { return enc(bincodec.Enc(e).Uvarint(v)) }
func (e enc) str(s string) enc   { return enc(bincodec.Enc(e).String(s)) }
func (e enc) bytes(s []byte) enc { return enc(bincodec.Enc(e).Bytes(s)) }
func (e enc) u8(v uint8) enc     { return enc(bincodec.Enc(e).U8(v)) }
func (e enc) u32(v uint32) enc   { return enc(bincodec.Enc(e).U32(v)) }
func (e enc) u64(v uint64) enc   { return enc(bincodec.Enc(e).U64(v)) }

// dec is a bounds-checked decoder of b; the first error sticks. Its reads
// are bincodec.Dec's, their failures turned into *Error: a truncated or
// malformed field is CodeBadFrame, a length over a limit CodeLimit.
type dec struct {
	b   []byte
	err *Error
	l   Limits
	ctx string
}

func (d *dec) fail(c Code, format string, args ...any) {
	if d.err == nil {
		d.err = errf(c, d.ctx+": "+format, args...)
	}
}

// codec returns a bincodec decoder of what is left; done takes its result
// back.
func (d *dec) codec() bincodec.Dec { return bincodec.NewDec(d.b) }

func (d *dec) done1(c *bincodec.Dec) {
	d.b = d.b[len(d.b)-c.Left():]
	if e := c.Err; e != nil && d.err == nil {
		code := CodeBadFrame
		if e.Kind == bincodec.Limit {
			code = CodeLimit
		}
		d.err = errf(code, "%s: %s", d.ctx, e.Msg)
	}
}

func (d *dec) uv(what string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) > 0 && d.b[0] < 0x80 {
		// One byte, the common case of a batch entry's fields.
		v := uint64(d.b[0])
		d.b = d.b[1:]
		return v
	}
	if v, n := binary.Uvarint(d.b); n > 0 {
		d.b = d.b[n:]
		return v
	}
	// Truncated or overlong: the codec names the failure.
	c := d.codec()
	v := c.Uvarint(what)
	d.done1(&c)
	return v
}

func (d *dec) take(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	c := d.codec()
	b := c.Take(n, what)
	d.done1(&c)
	return b
}

func (d *dec) str(what string) string {
	if d.err != nil {
		return ""
	}
	c := d.codec()
	v := c.String(what, uint64(d.l.MaxString))
	d.done1(&c)
	return v
}

func (d *dec) bytes(what string, max uint64) []byte {
	if d.err != nil {
		return nil
	}
	c := d.codec()
	v := c.Bytes(what, max)
	d.done1(&c)
	return v
}

func (d *dec) u8(what string) uint8 {
	if d.err != nil {
		return 0
	}
	if len(d.b) > 0 {
		v := d.b[0]
		d.b = d.b[1:]
		return v
	}
	c := d.codec()
	v := c.U8(what)
	d.done1(&c)
	return v
}

func (d *dec) u32(what string) uint32 {
	if d.err != nil {
		return 0
	}
	c := d.codec()
	v := c.U32(what)
	d.done1(&c)
	return v
}

func (d *dec) u64(what string) uint64 {
	if d.err != nil {
		return 0
	}
	c := d.codec()
	v := c.U64(what)
	d.done1(&c)
	return v
}

func (d *dec) shape(what string) []int64 {
	n := d.uv(what + " rank")
	if d.err != nil {
		return nil
	}
	if n > uint64(d.l.MaxDims) { // rank 0: a scalar, MXNet's shape ()
		d.fail(CodeLimit, "%s has rank %d (want 0 to %d)", what, n, d.l.MaxDims)
		return nil
	}
	if n > uint64(len(d.b)) { // every dim takes at least one byte
		d.fail(CodeBadFrame, "%s of rank %d is truncated", what, n)
		return nil
	}
	s := make([]int64, n)
	total := uint64(1)
	for i := range s {
		v := d.uv(what + " dimension")
		if d.err != nil {
			return nil
		}
		if v == 0 || v > math.MaxUint32 {
			d.fail(CodeShape, "%s dimension %d is %d", what, i, v)
			return nil
		}
		total *= v
		if total > math.MaxUint32 {
			d.fail(CodeLimit, "%s has more than 2^32 elements", what)
			return nil
		}
		s[i] = int64(v)
	}
	return s
}

func (d *dec) done() {
	if d.err != nil {
		return
	}
	c := d.codec()
	c.Done()
	d.done1(&c)
}

func (e enc) shape(s []int64) enc {
	e = e.uv(uint64(len(s)))
	for _, v := range s {
		e = e.uv(uint64(v))
	}
	return e
}

// AppendHello appends a whole TypeHello message carrying h to b.
func AppendHello(b []byte, h *Hello) []byte {
	start := len(b)
	b = AppendHeader(b, &Header{Type: TypeHello})
	e := enc(b).str(h.Job).str(h.Role).str(h.Token).str(h.WorkerID).u8(uint8(h.Mode)).u32(h.Want).u32(h.RankHint).u32(h.Attempt)
	e = e.uv(uint64(len(h.Keys)))
	for _, k := range h.Keys {
		e = e.u64(k.Key).str(k.Name).shape(k.Shape)
	}
	if h.ResumeKey != "" || h.Resume {
		e = e.str(h.ResumeKey)
	}
	if h.Resume {
		e = e.u8(1)
	}
	return setPLen(e, start)
}

func setPLen(b []byte, start int) []byte {
	binary.LittleEndian.PutUint32(b[start+52:], uint32(len(b)-start-HeaderSize))
	return b
}

// DecodeHello decodes the payload of a TypeHello message.
func DecodeHello(p []byte, lim *Limits) (*Hello, error) {
	d := dec{b: p, l: lim.get(), ctx: "hello"}
	h := &Hello{Job: d.str("job"), Role: d.str("role"), Token: d.str("token"), WorkerID: d.str("worker id")}
	h.Mode = Mode(d.u8("mode"))
	h.Want = d.u32("want")
	h.RankHint = d.u32("rank hint")
	h.Attempt = d.u32("attempt")
	n := d.uv("key count")
	if d.err == nil && n > uint64(d.l.MaxKeys) {
		d.fail(CodeLimit, "%d declared keys exceed the limit of %d", n, d.l.MaxKeys)
	}
	if d.err == nil && n > uint64(len(d.b))/10 { // a declaration takes >= 10 bytes
		d.fail(CodeBadFrame, "%d declared keys cannot fit %d bytes", n, len(d.b))
	}
	if d.err == nil && n > 0 {
		h.Keys = make([]KeyDecl, n)
		for i := range h.Keys {
			h.Keys[i] = KeyDecl{Key: d.u64("key"), Name: d.str("key name"), Shape: d.shape("key shape")}
		}
	}
	if d.err == nil && len(d.b) > 0 {
		h.ResumeKey = d.str("resume key")
	}
	if d.err == nil && len(d.b) > 0 {
		h.Resume = d.u8("resume") == 1
	}
	d.done()
	if d.err != nil {
		return nil, d.err
	}
	if h.Mode != ModeSync && h.Mode != ModeAsync {
		return nil, errf(CodeBadFrame, "hello: unknown mode %d", h.Mode)
	}
	return h, nil
}

// AppendWelcome appends a whole TypeWelcome message answering request seq.
func AppendWelcome(b []byte, w *Welcome) []byte {
	start := len(b)
	b = AppendHeader(b, &Header{Type: TypeWelcome})
	e := enc(b).str(w.WorkerID).u32(w.Rank).u32(w.NumWorkers).u32(w.Shard).u32(w.Heartbeat).u32(w.Timeout).u8(uint8(w.Mode))
	if w.ResumeKey != "" || w.Window != 0 || w.WindowBytes != 0 {
		e = e.str(w.ResumeKey).u32(w.Window).u64(w.WindowBytes)
	}
	return setPLen(e, start)
}

// DecodeWelcome decodes the payload of a TypeWelcome message.
func DecodeWelcome(p []byte, lim *Limits) (*Welcome, error) {
	d := dec{b: p, l: lim.get(), ctx: "welcome"}
	w := &Welcome{WorkerID: d.str("worker id"), Rank: d.u32("rank"), NumWorkers: d.u32("workers"),
		Shard: d.u32("shard"), Heartbeat: d.u32("heartbeat"), Timeout: d.u32("timeout"), Mode: Mode(d.u8("mode"))}
	if d.err == nil && len(d.b) > 0 {
		w.ResumeKey = d.str("resume key")
		w.Window = d.u32("window")
		w.WindowBytes = d.u64("window bytes")
	}

	d.done()
	if d.err != nil {
		return nil, d.err
	}
	return w, nil
}

// AppendInitMeta appends the metadata of a TypeInit message (the data, the
// part's float32 values, follows it).
func AppendInitMeta(b []byte, m *InitMeta) []byte {
	return enc(b).str(m.Name).shape(m.Shape)
}

// DecodeInitMeta decodes Msg.Meta() of a TypeInit message.
func DecodeInitMeta(p []byte, lim *Limits) (*InitMeta, error) {
	d := dec{b: p, l: lim.get(), ctx: "init"}
	m := &InitMeta{Name: d.str("key name"), Shape: d.shape("shape")}
	d.done()
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

// AppendStates appends the encoding of s (the payload of a SaveStates Ack or
// a LoadStates request).
func AppendStates(b []byte, s *States) []byte {
	e := enc(b).bytes(s.Optimizer).u64(uint64(s.NumUpdate)).uv(uint64(len(s.Keys)))
	for i := range s.Keys {
		k := &s.Keys[i]
		str := uint8(0)
		if k.Str {
			str = 1
		}
		e = e.u64(k.Key).u8(str).str(k.Name).u64(uint64(k.T)).u32(k.Offset).u32(k.Total).u32(k.N).uv(uint64(len(k.States)))
		for _, st := range k.States {
			e = AppendFloat32s(e, st)
		}
	}
	return e
}

// DecodeStates decodes a States table. Sizes are checked against the bytes
// left before anything is allocated.
func DecodeStates(p []byte, lim *Limits) (*States, error) {
	d := dec{b: p, l: lim.get(), ctx: "states"}
	s := &States{Optimizer: d.bytes("optimizer spec", uint64(d.l.MaxString))}
	if len(s.Optimizer) == 0 {
		s.Optimizer = nil
	}
	s.NumUpdate = int64(d.u64("num update"))
	n := d.uv("key count")
	if d.err == nil && n > uint64(d.l.MaxKeys) {
		d.fail(CodeLimit, "%d keys exceed the limit of %d", n, d.l.MaxKeys)
	}
	if d.err == nil && n > uint64(len(d.b))/30 { // a key entry takes >= 30 bytes
		d.fail(CodeBadFrame, "%d keys cannot fit %d bytes", n, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	s.Keys = make([]KeyStates, n)
	for i := range s.Keys {
		k := &s.Keys[i]
		k.Key = d.u64("key")
		switch d.u8("key kind") {
		case 0:
		case 1:
			k.Str = true
		default:
			d.fail(CodeBadFrame, "key %d: bad key kind", i)
		}
		k.Name = d.str("key name")
		k.T = int64(d.u64("update count"))
		k.Offset, k.Total, k.N = d.u32("offset"), d.u32("total"), d.u32("count")
		ns := d.uv("state count")
		if d.err != nil {
			return nil, d.err
		}
		if ns > uint64(d.l.MaxStates) {
			d.fail(CodeLimit, "key %d: %d state arrays exceed the limit of %d", k.Key, ns, d.l.MaxStates)
			return nil, d.err
		}
		if uint64(k.Offset)+uint64(k.N) > uint64(k.Total) {
			d.fail(CodeBadFrame, "key %d: part [%d, +%d) outside %d elements", k.Key, k.Offset, k.N, k.Total)
			return nil, d.err
		}
		if ns*uint64(k.N)*4 > uint64(len(d.b)) {
			d.fail(CodeBadFrame, "key %d: %d states of %d values need %d bytes, %d left", k.Key, ns, k.N, ns*uint64(k.N)*4, len(d.b))
			return nil, d.err
		}
		k.States = make([][]float32, ns)
		for j := range k.States {
			raw := d.take(uint64(k.N)*4, "state")
			k.States[j] = DecodeFloat32s(raw, make([]float32, k.N))
		}
	}
	d.done()
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}
