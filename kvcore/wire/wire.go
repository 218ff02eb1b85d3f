package wire

import (
	"encoding/binary"
	"fmt"
)

// Version is the protocol version this package writes and reads.
const Version = 1

// Magic opens every message ("wk" in memory).
const Magic uint16 = 0x6B77

// HeaderSize is the size of the fixed message header in bytes.
const HeaderSize = 56

// Type is a message type.
type Type uint8

// Message types. Requests go from a worker to a server; Welcome, Ack, Error
// and Pong go back.
const (
	TypeHello      Type = iota + 1 // handshake: payload Hello
	TypeWelcome                    // handshake answer: payload Welcome
	TypeInit                       // create key: metadata InitMeta, data rank 0's value (part)
	TypePush                       // data: the worker's (merged) value or compressed words
	TypePull                       // answered by Ack with the value
	TypePushPull                   // push, answered (after the round) by Ack with the new value
	TypeBarrier                    // answered when every live worker reached it
	TypeCommand                    // key: head, payload: body (SendCommandToServers)
	TypeSaveStates                 // answered by Ack with a States payload
	TypeLoadStates                 // payload States
	TypePing                       // heartbeat, answered by Pong
	TypePong                       // heartbeat answer
	TypeLeave                      // the worker leaves the job cleanly
	TypeAck                        // success reply; payload depends on the request
	TypeError                      // failure reply: code, payload the message text
	TypePushes                     // many pushes in one message (batch.go)
	TypePulls                      // many pulls in one message
	TypePushPulls                  // many pushpulls in one message
	TypeAnswers                    // many Ack and Error replies in one message
	TypeInits                      // many inits in one message
	TypeRowPush                    // row-sparse push: metadata the row ids, data their rows (rows.go)
	TypeRowPull                    // row-sparse pull: metadata the row ids; answered by Ack with their rows
	TypePushList                   // the values of many whole keys in one request: key ids, one dense value buffer (list.go)
	TypePullList                   // the values of many whole keys, answered by one Ack with one dense value buffer
	typeEnd
)

var typeNames = [...]string{"", "hello", "welcome", "init", "push", "pull", "pushpull", "barrier",
	"command", "savestates", "loadstates", "ping", "pong", "leave", "ack", "error",
	"pushes", "pulls", "pushpulls", "answers", "inits", "rowpush", "rowpull", "pushlist", "pulllist"}

func (t Type) String() string {
	if t > 0 && t < typeEnd {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// IsRequest reports whether t is a request a worker sends after the
// handshake (and gets an Ack or Error for).
func (t Type) IsRequest() bool {
	switch t {
	case TypeInit, TypePush, TypePull, TypePushPull, TypeBarrier, TypeCommand,
		TypeSaveStates, TypeLoadStates, TypeLeave, TypeRowPush, TypeRowPull, TypePushList, TypePullList:
		return true
	}
	return false
}

// DType says how the data at the end of a payload is encoded.
type DType uint8

// Data encodings.
const (
	DTypeNone DType = iota // no data
	DTypeF32               // float32, little-endian
	DType2Bit              // packed 2bit codes: ceil(count/16) 32-bit words
	DType1Bit              // packed 1bit codes: ceil(count/32) 32-bit words
	dtypeEnd
)

func (d DType) String() string {
	switch d {
	case DTypeNone:
		return "none"
	case DTypeF32:
		return "float32"
	case DType2Bit:
		return "2bit"
	case DType1Bit:
		return "1bit"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Words is the number of 32-bit words count elements take in d.
func (d DType) Words(count int) int {
	switch d {
	case DTypeF32:
		return count
	case DType2Bit:
		return (count + 15) / 16
	case DType1Bit:
		return (count + 31) / 32
	}
	return 0
}

// Bytes is the number of data bytes count elements take in d.
func (d DType) Bytes(count int) int { return 4 * d.Words(count) }

// PerWord is the number of elements one 32-bit word holds in d.
func (d DType) PerWord() int {
	switch d {
	case DType2Bit:
		return 16
	case DType1Bit:
		return 32
	}
	return 1
}

// PackedSpan returns the words [first, first+n) of a whole key's packed
// gradient that hold elements [offset, offset+count): a part of a split key
// starts at the word holding its first element, and its reader skips the
// offset%PerWord elements before it. For DTypeF32 it is (offset, count).
func PackedSpan(d DType, offset, count int) (first, n int) {
	per := d.PerWord()
	skip := offset % per
	return offset / per, (skip + count + per - 1) / per
}

// DataBytes is the number of data bytes at the end of the payload of a
// message with this header: the words PackedSpan gives for its part.
func (h *Header) DataBytes() int {
	if h.DType == DTypeNone || h.DType >= dtypeEnd || h.Type.IsBatch() {
		return 0
	}
	if h.Type.IsList() {
		return 4 * int(h.Total)
	}
	_, n := PackedSpan(h.DType, int(h.Offset), int(h.Count))
	return 4 * n
}

// Flag bits of the header.
const (
	FlagStrKey   uint16 = 1 << iota // key is the StrKeyID of a string key
	FlagLate                        // Ack of a push that came after its round closed: not applied
	FlagDup                         // Ack of a request seen before: answered, not applied again
	FlagRescaled                    // Ack of a push whose round closed at a deadline, sum rescaled
)

// FlagNoValue marks an Init that carries the key and its shape but no value
// (its sender is not rank 0, whose value wins): Count is the part's element
// count and DType is DTypeNone. A server that must create the key from such
// an init (no live worker holds rank 0) answers CodeNeedValue.
const FlagNoValue uint16 = 1 << 5

// Header is the fixed part of a message.
type Header struct {
	Type   Type
	Flags  uint16
	DType  DType
	Code   Code
	Seq    uint64
	Ack    uint64
	Key    uint64
	Round  uint64
	Count  uint32
	Offset uint32
	Total  uint32
	PLen   uint32
}

// Msg is a decoded message. Payload aliases the frame it was decoded from.
type Msg struct {
	Header
	Payload []byte
}

// Data returns the data bytes at the end of the payload (nil for DTypeNone).
// Decode has checked that they are there.
func (m *Msg) Data() []byte {
	n := m.DataBytes()
	if m.DType == DTypeNone || n > len(m.Payload) {
		return nil
	}
	return m.Payload[len(m.Payload)-n:]
}

// Meta returns the payload bytes before the data.
func (m *Msg) Meta() []byte {
	n := m.DataBytes()
	if n > len(m.Payload) {
		return nil
	}
	return m.Payload[:len(m.Payload)-n]
}

// Limits bound what a decoder accepts; they are checked before allocating.
// Zero fields take the DefaultLimits value.
type Limits struct {
	MaxPayload int // bytes of one message's payload
	MaxKeys    int // keys declared in a Hello or listed in a States table
	MaxDims    int // rank of a shape
	MaxString  int // bytes of a string (job, token, key name, error text)
	MaxStates  int // state arrays per key in a States table
}

// DefaultLimits: 1 GiB payloads (256M float32), 1M keys, 32 dims, 64 KiB
// strings, 8 state arrays per key.
var DefaultLimits = Limits{MaxPayload: 1 << 30, MaxKeys: 1 << 20, MaxDims: 32, MaxString: 64 << 10, MaxStates: 8}

// Get returns the limits in effect: l with zero fields set to their
// DefaultLimits values (nil l: DefaultLimits).
func (l *Limits) Get() Limits { return l.get() }

func (l *Limits) get() Limits {
	d := DefaultLimits
	if l == nil {
		return d
	}
	r := *l
	if r.MaxPayload <= 0 {
		r.MaxPayload = d.MaxPayload
	}
	if r.MaxKeys <= 0 {
		r.MaxKeys = d.MaxKeys
	}
	if r.MaxDims <= 0 {
		r.MaxDims = d.MaxDims
	}
	if r.MaxString <= 0 {
		r.MaxString = d.MaxString
	}
	if r.MaxStates <= 0 {
		r.MaxStates = d.MaxStates
	}
	return r
}

// AppendHeader appends the encoded header h to b. PLen is written as given:
// the caller appends exactly that many payload bytes.
func AppendHeader(b []byte, h *Header) []byte {
	var x [HeaderSize]byte
	binary.LittleEndian.PutUint16(x[0:], Magic)
	x[2] = Version
	x[3] = byte(h.Type)
	binary.LittleEndian.PutUint16(x[4:], h.Flags)
	x[6] = byte(h.DType)
	x[7] = byte(h.Code)
	binary.LittleEndian.PutUint64(x[8:], h.Seq)
	binary.LittleEndian.PutUint64(x[16:], h.Ack)
	binary.LittleEndian.PutUint64(x[24:], h.Key)
	binary.LittleEndian.PutUint64(x[32:], h.Round)
	binary.LittleEndian.PutUint32(x[40:], h.Count)
	binary.LittleEndian.PutUint32(x[44:], h.Offset)
	binary.LittleEndian.PutUint32(x[48:], h.Total)
	binary.LittleEndian.PutUint32(x[52:], h.PLen)
	return append(b, x[:]...)
}

// Append appends the whole message m (header with PLen set from the
// payload, then the payload) to b.
func Append(b []byte, m *Msg) []byte {
	h := m.Header
	h.PLen = uint32(len(m.Payload))
	b = AppendHeader(b, &h)
	return append(b, m.Payload...)
}

// DecodeHeader reads and checks a header from the first HeaderSize bytes of
// frame: magic, version, type, dtype, and that the data fits the payload.
// It does not look at the payload.
func DecodeHeader(frame []byte, lim *Limits, h *Header) error {
	if len(frame) < HeaderSize {
		return errf(CodeBadFrame, "message of %d bytes is shorter than the %d-byte header", len(frame), HeaderSize)
	}
	if m := binary.LittleEndian.Uint16(frame[0:]); m != Magic {
		return errf(CodeBadFrame, "bad magic %#04x (not a webkv message)", m)
	}
	if v := frame[2]; v != Version {
		return errf(CodeVersion, "protocol version %d, this side speaks %d", v, Version)
	}
	*h = Header{
		Type:   Type(frame[3]),
		Flags:  binary.LittleEndian.Uint16(frame[4:]),
		DType:  DType(frame[6]),
		Code:   Code(frame[7]),
		Seq:    binary.LittleEndian.Uint64(frame[8:]),
		Ack:    binary.LittleEndian.Uint64(frame[16:]),
		Key:    binary.LittleEndian.Uint64(frame[24:]),
		Round:  binary.LittleEndian.Uint64(frame[32:]),
		Count:  binary.LittleEndian.Uint32(frame[40:]),
		Offset: binary.LittleEndian.Uint32(frame[44:]),
		Total:  binary.LittleEndian.Uint32(frame[48:]),
		PLen:   binary.LittleEndian.Uint32(frame[52:]),
	}
	if h.Type == 0 || h.Type >= typeEnd {
		return errf(CodeBadFrame, "unknown message type %d", uint8(h.Type))
	}
	if h.DType >= dtypeEnd {
		return errf(CodeBadFrame, "%v: unknown dtype %d", h.Type, uint8(h.DType))
	}
	l := lim.get()
	if uint64(h.PLen) > uint64(l.MaxPayload) {
		return errf(CodeLimit, "%v: payload of %d bytes exceeds the limit of %d", h.Type, h.PLen, l.MaxPayload)
	}
	if h.Type.IsBatch() {
		return checkBatchHeader(h, &l)
	}
	if h.Type.IsList() {
		return checkListHeader(h, &l)
	}
	if h.Type == TypeInit && h.Flags&FlagNoValue != 0 {
		if h.DType != DTypeNone {
			return errf(CodeBadFrame, "init without a value has dtype %v", h.DType)
		}
		if h.Count == 0 || uint64(h.Offset)+uint64(h.Count) > uint64(h.Total) {
			return errf(CodeBadFrame, "init: part [%d, +%d) of a key of %d elements", h.Offset, h.Count, h.Total)
		}
		return nil
	}
	if h.DType != DTypeNone {
		if need := uint64(h.DataBytes()); need > uint64(h.PLen) {
			return errf(CodeBadFrame, "%v: %d %v elements need %d data bytes, payload has %d", h.Type, h.Count, h.DType, need, h.PLen)
		}
	} else if h.Count != 0 && (h.Type == TypePush || h.Type == TypePushPull || h.Type == TypeInit) {
		return errf(CodeBadFrame, "%v: %d elements without a dtype", h.Type, h.Count)
	}
	if uint64(h.Offset)+uint64(h.Count) > uint64(h.Total) && h.DType != DTypeNone {
		return errf(CodeBadFrame, "%v: part [%d, %d) lies outside the key's %d elements", h.Type, h.Offset, uint64(h.Offset)+uint64(h.Count), h.Total)
	}
	return nil
}

// Decode decodes frame into m without copying: m.Payload aliases frame.
// The frame must be exactly one message.
func Decode(frame []byte, lim *Limits, m *Msg) error {
	if err := DecodeHeader(frame, lim, &m.Header); err != nil {
		return err
	}
	if want := HeaderSize + int(m.PLen); len(frame) != want {
		if len(frame) < want {
			return errf(CodeBadFrame, "%v: truncated: %d bytes, header says %d", m.Type, len(frame), want)
		}
		return errf(CodeBadFrame, "%v: %d trailing bytes after the payload", m.Type, len(frame)-want)
	}
	m.Payload = frame[HeaderSize:]
	return nil
}

// Code classifies an Error reply.
type Code uint8

// Error codes.
const (
	CodeOK             Code = iota
	CodeBadFrame            // malformed message
	CodeVersion             // protocol version not spoken
	CodeLimit               // a size limit was exceeded
	CodeAuth                // bad or missing token
	CodeNotJoined           // request before the handshake (resend after Welcome)
	CodeRemoved             // the worker id was removed (silence timeout or leave)
	CodeBadRequest          // a request that is well-formed but wrong (unknown type here, bad role)
	CodeUnknownKey          // key not initialized
	CodeReinit              // this worker initialized the key before
	CodeShape               // shape or size does not match the key
	CodeMode                // sync/async mismatch, or async push without an optimizer
	CodeBadOptimizer        // optimizer spec rejected
	CodeBadCompression      // compression spec rejected, or compressed push without one
	CodeBadStates           // optimizer states rejected
	CodeInternal            // server failure (backend error)
	CodeClosed              // the job or server is shutting down
	CodeNeedValue           // an init without a value must create the key: resend it with the value
	CodeUpdater             // the job's custom updater module refused or failed the update
	CodeOrigin              // a browser's Origin is not allowed (the relay's -origins)
	CodeEarlierRun          // an init of a key the job holds from an earlier run, without resume
	CodeWorkerCount         // a Hello asks for another worker count than the job's
	codeEnd
)

var codeNames = [...]string{"ok", "bad frame", "version", "limit", "auth", "not joined", "removed",
	"bad request", "unknown key", "reinit", "shape", "mode", "bad optimizer", "bad compression",
	"bad states", "internal", "closed", "need value", "updater", "origin", "earlier run", "worker count"}

func (c Code) String() string {
	if c < codeEnd {
		return codeNames[c]
	}
	return fmt.Sprintf("Code(%d)", uint8(c))
}

// Error is a protocol error: what Decode returns, and what an Error reply
// carries.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return "wire: " + e.Code.String() + ": " + e.Msg }

// Is makes errors.Is(err, &Error{Code: c}) match any *Error with code c.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Msg == ""
}

func errf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Msg: fmt.Sprintf(format, args...)}
}

// Errorf returns an *Error with code c.
func Errorf(c Code, format string, args ...any) *Error { return errf(c, format, args...) }

// AppendError appends an Error reply to request seq (0: not tied to a
// request) with code c and text msg (cut to 1 KiB).
func AppendError(b []byte, seq uint64, c Code, msg string) []byte {
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	h := Header{Type: TypeError, Code: c, Seq: seq, PLen: uint32(len(msg))}
	b = AppendHeader(b, &h)
	return append(b, msg...)
}

// ErrorOf returns the error an Error reply m carries.
func ErrorOf(m *Msg) *Error {
	c := m.Code
	if c == CodeOK {
		c = CodeInternal
	}
	return &Error{Code: c, Msg: string(m.Payload)}
}
